/* The server object: configuration, listeners (opened in worker order on the caller's
 * thread so an ephemeral port is shared), the ring threads, and start/stop/wait. */
#include <arpa/inet.h>
#include <errno.h>
#include <mimalloc.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/internal.h"

void rh_config_init(rh_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->max_body = 1u << 20;
    cfg->max_header_size = 8192;
    cfg->max_uri = 4096;
    cfg->max_headers = 64;
    cfg->max_conns = 16384;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->write_timeout_ms = 30000;
    cfg->handler_timeout_ms = 60000;
    cfg->drain_timeout_ms = 10000;
    cfg->pool_group_share = 50;
    cfg->pool_shed_target_ms = 100;
    cfg->pool_shed_interval_ms = 500;
    cfg->pool_spin_us = 10;
    cfg->ring_entries = 1024;
    cfg->recv_buffers = 1024;
    cfg->recv_buffer_size = 4096;
}

static int check_config(rh_config *cfg)
{
    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 0 ? (unsigned)n : 1;
    }
    if (cfg->max_headers > RH_MAX_HEADERS_CAP)
        cfg->max_headers = RH_MAX_HEADERS_CAP;
    /* The head must fit the input block together with one recv's worth of data. */
    if (cfg->max_header_size + cfg->recv_buffer_size > RH_IN_BLOCK ||
        cfg->max_uri > cfg->max_header_size)
        return -EINVAL;
    if (cfg->recv_buffers == 0 || (cfg->recv_buffers & (cfg->recv_buffers - 1)) ||
        cfg->recv_buffers > 32768 || cfg->max_conns == 0 || cfg->ring_entries == 0)
        return -EINVAL;
    return 0;
}

int rh_server_new(const rh_config *cfg, rh_server **out)
{
    rh_server *srv = mi_zalloc(sizeof(*srv)); /* owner: the caller, until rh_server_free */
    if (!srv)
        return -ENOMEM;
    srv->cfg = *cfg;
    int ret = check_config(&srv->cfg);
    if (ret < 0) {
        mi_free(srv);
        return ret;
    }
    srv->cfg.host = mi_strdup(cfg->host ? cfg->host : "127.0.0.1");
    srv->log_path = cfg->access_log ? mi_strdup(cfg->access_log) : NULL;
    srv->log_fd = -1;
    srv->routes = router_new();
    pthread_mutex_init(&srv->start_lock, NULL);
    pthread_cond_init(&srv->start_cond, NULL);
    *out = srv;
    return 0;
}

int rh_route(rh_server *srv, const char *method, const char *pattern, rh_handler_fn fn,
             void *udata)
{
    if (srv->threads_live)
        return -EBUSY;
    return router_add(srv->routes, method, pattern, fn, udata, false);
}

/* ---- listeners ---- */

static int open_listener(const rh_config *cfg, uint16_t port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    if (getaddrinfo(cfg->host, portstr, &hints, &res) != 0)
        return -EADDRNOTAVAIL;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ret = fd < 0 ? -errno : 0;
    int one = 1;
    if (ret == 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* inherited by accept */
        /* Accept once the request's first bytes are in: the recv armed on the new
         * connection then completes at once instead of costing another wake-up. A client
         * that connects and says nothing is still accepted after a few seconds. */
        int defer_s = 1;
        if (!cfg->no_defer_accept)
            setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0)
            ret = -errno;
    }
    freeaddrinfo(res);
    if (ret < 0) {
        if (fd >= 0)
            close(fd);
        return ret;
    }
    return fd;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- workers ---- */

static int worker_alloc(struct rh_worker *w)
{
    const rh_config *cfg = &w->srv->cfg;
    size_t bytes = (size_t)cfg->max_conns * sizeof(struct rh_conn);
    /* mmap: untouched slots cost no memory, so max_conns can be generous. */
    w->conns = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->conns == MAP_FAILED) {
        w->conns = NULL;
        return -ENOMEM;
    }
    w->free_idx = mi_malloc(sizeof(uint32_t) * cfg->max_conns);
    w->held_next = mi_malloc(sizeof(uint16_t) * cfg->recv_buffers);
    w->held_len = mi_malloc(sizeof(uint32_t) * cfg->recv_buffers);
    if (!w->free_idx || !w->held_next || !w->held_len)
        return -ENOMEM;
    for (uint32_t i = 0; i < cfg->max_conns; i++)
        w->free_idx[i] = cfg->max_conns - 1 - i; /* lowest slots first: fewer pages touched */
    w->free_top = cfg->max_conns;
    return 0;
}

/* A free list of buffer blocks, linked through their first word. */
static void free_blocks(char **head)
{
    while (*head) {
        char *b = *head;
        *head = *(char **)b;
        mi_free(b);
    }
}

static void worker_free_mem(struct rh_worker *w)
{
    if (w->conns)
        munmap(w->conns, (size_t)w->srv->cfg.max_conns * sizeof(struct rh_conn));
    mi_free(w->free_idx);
    mi_free(w->held_next);
    mi_free(w->held_len);
    while (w->free_reqs) {
        struct rh_req *r = w->free_reqs;
        w->free_reqs = r->next_free;
        mi_free(r);
    }
    free_blocks(&w->free_in);
    free_blocks(&w->free_out);
}

static void signal_started(struct rh_worker *w, int error)
{
    rh_server *srv = w->srv;
    pthread_mutex_lock(&srv->start_lock);
    w->error = error;
    srv->started++;
    pthread_cond_broadcast(&srv->start_cond);
    pthread_mutex_unlock(&srv->start_lock);
}

static void begin_drain(struct rh_worker *w)
{
    w->draining = true;
    w->drain_deadline_ms = w->loop.now_ms + w->srv->cfg.drain_timeout_ms;
    if (w->listen_fd >= 0) { /* stop accepting: the other listeners take no more either */
        struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
        io_uring_prep_cancel64(sqe, rh_ud_make(RH_OP_ACCEPT, 0, 0), 0);
        io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
        w->loop.inflight++;
        /* Closed now, not at exit: new clients are refused at once (and may retry
         * elsewhere) instead of waiting in the backlog to be reset when the ring ends.
         * The accept op holds its own reference until the cancel lands. */
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    worker_close_all(w, true);
}

static void worker_loop(struct rh_worker *w)
{
    for (;;) {
        if (rh_loop_run_once(&w->loop) < 0)
            break;
        if (rh_loop_stop_requested(&w->loop) && !w->draining)
            begin_drain(w);
        if (w->draining) {
            worker_close_all(w, true); /* connections that became idle since */
            if (w->open_conns == 0 || w->loop.now_ms >= w->drain_deadline_ms)
                break;
            if (!w->loop.timer_armed && !w->loop.wheel.count) /* wake to check the deadline */
                rh_loop_timer_arm(&w->loop, &w->accept_timer, RH_WHEEL_TICK_MS);
        }
    }
    worker_close_all(w, false);
    access_log_flush(w);
    for (unsigned spins = 0; w->log && w->log->inflight && spins < 100; spins++)
        rh_loop_run_once(&w->loop); /* let the log write land before cancelling */
    w->loop.finishing = true;
    struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY); /* the wake read, accept, timer */
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
    w->loop.inflight++;
    rh_loop_drain(&w->loop, 2000);
    access_log_worker_stop(w);
    worker_abandon_requests(w);
}

static void noop_timer(struct rh_timer *t) { (void)t; }

static void *worker_main(void *arg)
{
    struct rh_worker *w = arg;
    rh_server *srv = w->srv;
    struct rh_loop_config lc = {.sq_entries = srv->cfg.ring_entries,
                                .buf_count = srv->cfg.recv_buffers,
                                .buf_size = srv->cfg.recv_buffer_size,
                                .iowq_workers = 4,
                                .batch_wait_us = srv->cfg.batch_wait_us};
    int ret = worker_alloc(w);
    if (ret == 0)
        ret = rh_loop_init(&w->loop, &lc, w); /* here: the ring's only submitter */
    if (ret < 0) {
        signal_started(w, ret);
        return NULL;
    }
    conn_register_ops(&w->loop);
    static_worker_start(w); /* static files: the ring's open-file cache (static.c) */
    access_log_worker_start(w);
    w->accept_timer.fn = noop_timer;
    worker_refresh_date(w);
    conn_arm_accept(w);
    signal_started(w, 0);
    worker_loop(w);
    static_worker_stop(w); /* cached fds and pipes; the ring is drained (static.c) */
    rh_loop_fini(&w->loop);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    w->listen_fd = -1;
    return NULL;
}

static int open_listeners(rh_server *srv)
{
    uint16_t port = srv->cfg.port;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        int fd = open_listener(&srv->cfg, port);
        if (fd < 0)
            return fd;
        srv->workers[i].listen_fd = fd;
        if (i == 0)
            port = bound_port(fd); /* the others share the first one's (maybe ephemeral) port */
    }
    srv->bound_port = port;
    return 0;
}

static void close_listeners(rh_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].listen_fd >= 0) {
            close(srv->workers[i].listen_fd);
            srv->workers[i].listen_fd = -1;
        }
}

static int first_worker_error(rh_server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].error)
            return srv->workers[i].error;
    return 0;
}

static int spawn_workers(rh_server *srv)
{
    unsigned spawned = 0;
    for (; spawned < srv->nworkers; spawned++) {
        struct rh_worker *w = &srv->workers[spawned];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            break;
    }
    pthread_mutex_lock(&srv->start_lock);
    while (srv->started < spawned)
        pthread_cond_wait(&srv->start_cond, &srv->start_lock);
    pthread_mutex_unlock(&srv->start_lock);
    srv->threads_live = spawned > 0;
    for (unsigned i = spawned; i < srv->nworkers; i++)
        srv->workers[i].thread = 0;
    int err = first_worker_error(srv);
    return err ? err : (spawned < srv->nworkers ? -EAGAIN : 0);
}

int rh_server_start(rh_server *srv)
{
    if (srv->workers)
        return -EALREADY;
    srv->nworkers = srv->cfg.threads;
    srv->workers = mi_zalloc(sizeof(struct rh_worker) * srv->nworkers); /* owner: srv */
    if (!srv->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].id = i;
        srv->workers[i].listen_fd = -1;
        srv->workers[i].loop.wake_fd = -1; /* a worker that never starts owns no eventfd */
    }
    int ret = access_log_open(srv);
    if (ret == 0)
        ret = offload_start(srv);
    if (ret == 0)
        ret = open_listeners(srv);
    if (ret == 0)
        ret = spawn_workers(srv);
    if (ret < 0) {
        rh_server_stop(srv);
        rh_server_wait(srv);
        close_listeners(srv);
    }
    return ret;
}

void rh_server_stop(rh_server *srv)
{
    atomic_store(&srv->stopping, true);
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
        if (srv->workers[i].thread && !srv->workers[i].error)
            rh_loop_request_stop(&srv->workers[i].loop);
}

int rh_server_wait(rh_server *srv)
{
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++) {
        struct rh_worker *w = &srv->workers[i];
        if (w->thread) {
            pthread_join(w->thread, NULL);
            w->thread = 0;
        }
    }
    srv->threads_live = false;
    offload_stop(srv); /* after the rings: runs what is queued, ends those requests */
    return srv->workers ? first_worker_error(srv) : 0;
}

int rh_server_run(rh_server *srv)
{
    int ret = rh_server_start(srv);
    return ret < 0 ? ret : rh_server_wait(srv);
}

uint16_t rh_server_port(const rh_server *srv) { return srv->bound_port; }

unsigned rh_server_threads(const rh_server *srv) { return srv->nworkers; }

void rh_server_free(rh_server *srv)
{
    if (!srv)
        return;
    rh_server_stop(srv);
    rh_server_wait(srv);
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++) {
        rh_loop_release(&srv->workers[i].loop);
        offload_worker_free(&srv->workers[i]);
        worker_free_mem(&srv->workers[i]);
    }
    offload_free(srv);
    static_free(srv); /* the mounts' directory fds (static.c) */
    close_listeners(srv);
    mi_free(srv->workers);
    router_free(srv->routes);
    pthread_cond_destroy(&srv->start_cond);
    pthread_mutex_destroy(&srv->start_lock);
    mi_free((char *)srv->cfg.host);
    if (srv->log_fd >= 0)
        close(srv->log_fd);
    mi_free(srv->log_path);
    mi_free(srv);
}
