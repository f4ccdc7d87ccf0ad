/* The server object: configuration, the ring threads, and start/stop/wait. The listeners
 * are in listeners.c, the stop's grace in drain.c, the pid file and upgrade in upgrade.c. */
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

#include "base/freelist.h"
#include "server/srv.h"
#include "conn/conn.h"
#include "http1/http1.h"
#include "obs/obs.h"
#include "static/static.h"
#include "app/app.h" /* the toolkit's hooks */

void rh_config_init(rh_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->max_body = 1u << 20;
    cfg->max_header_size = 12288; /* an 8 KiB target and a few KiB of fields; fits RH_IN_BLOCK */
    cfg->max_uri = 8192;          /* as nginx (large_client_header_buffers 8k) */
    cfg->max_headers = 100;       /* the common limit (nginx has none but the head size) */
    cfg->max_conns = 16384;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->min_body_rate = 500; /* as Apache mod_reqtimeout's default MinRate */
    cfg->body_rate_window_ms = 10000;
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
    if (cfg->max_header_size + cfg->recv_buffer_size > RH_IN_BLOCK)
        return -EINVAL;
    if (cfg->max_uri > cfg->max_header_size) /* the target is part of the head */
        cfg->max_uri = cfg->max_header_size;
    if (cfg->listen_fds_count > RH_MAX_LISTEN_FDS || (cfg->listen_fds_count && !cfg->listen_fds))
        return -EINVAL;
    if (cfg->recv_buffers == 0 || (cfg->recv_buffers & (cfg->recv_buffers - 1)) ||
        cfg->recv_buffers > 32768 || cfg->max_conns == 0 || cfg->ring_entries == 0 ||
        (cfg->min_body_rate && cfg->body_rate_window_ms == 0))
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
    srv->cfg.pid_file = cfg->pid_file ? mi_strdup(cfg->pid_file) : NULL;
    srv->cfg.listen_fds = srv->listen_fds; /* copied, and ours from here on (listeners.c) */
    srv->nlisten = srv->cfg.listen_fds_count;
    if (srv->nlisten)
        memcpy(srv->listen_fds, cfg->listen_fds, sizeof(int) * srv->nlisten);
    srv->ready_fd = srv_upgrade_take_ready_fd(&srv->cfg);
    srv->log_fd = -1;
    srv->routes = app_router_new();
    srv_wire(srv);
    pthread_mutex_init(&srv->start_lock, NULL);
    pthread_cond_init(&srv->start_cond, NULL);
    *out = srv;
    return 0;
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
    struct rh_req *r;
    while ((r = RH_FREELIST_POP(w->free_reqs, next_free)))
        mi_free(r);
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
    srv_listeners_worker_stop(w); /* stop accepting (listeners.c) */
    conn_close_all(w, true);
}

static void cancel_op(struct rh_worker *w, uint64_t user_data, unsigned flags)
{
    struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
    io_uring_prep_cancel64(sqe, user_data, (int)flags);
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
    w->loop.inflight++;
}

static void worker_loop(struct rh_worker *w)
{
    for (;;) {
        if (rh_loop_run_once(&w->loop) < 0)
            break;
        if (rh_loop_stop_requested(&w->loop) && !w->draining && srv_drain_grace_over(w))
            begin_drain(w); /* after the grace, if any (drain.c) */
        if (w->draining) {
            conn_close_all(w, true); /* connections that became idle since */
            /* accept_armed: an accept's cancel still out may yet bring a connection */
            if ((w->open_conns == 0 && !w->accept_armed) ||
                w->loop.now_ms >= w->drain_deadline_ms)
                break;
            if (!w->loop.timer_armed && !w->loop.wheel.count) /* wake to check the deadline */
                rh_loop_timer_arm(&w->loop, &w->accept_timer, RH_WHEEL_TICK_MS);
        }
    }
    conn_close_all(w, false);
    obs_access_log_flush(w);
    for (unsigned spins = 0; w->log && w->log->inflight && spins < 100; spins++)
        rh_loop_run_once(&w->loop); /* let the log write land before cancelling */
    w->loop.finishing = true;
    /* The wake read and the accept by user_data first: CANCEL_ANY walks every armed poll
     * once per request it cancels, and the connections' recvs (ended by their close's
     * shutdown, see conn.c) may not have completed yet: 16k of them took seconds. */
    cancel_op(w, rh_ud_make(RH_OP_WAKE, 0, 0), 0);
    for (unsigned i = 0; i < w->naccept; i++)
        if (w->accept_armed & (1u << i))
            cancel_op(w, rh_ud_make(CONN_OP_ACCEPT, i, 0), 0);
    rh_loop_drain(&w->loop, 500);
    if (w->loop.inflight) { /* anything else still out */
        cancel_op(w, 0, IORING_ASYNC_CANCEL_ANY);
        rh_loop_drain(&w->loop, 2000);
    }
    obs_access_log_worker_stop(w);
    static_worker_abandon(w); /* first: a transfer's request is ended once, by it */
    conn_abandon_requests(w);
}

static void noop_timer(struct rh_timer *t) { (void)t; }

/* The completions one iteration may have to hold: per connection a multishot recv's final
 * completion, a send, and a close wave's cancel and close; the recv completions that carry
 * data are bounded by the provided buffers; plus one SQ's worth of anything else. Past
 * this the kernel's overflow list takes the rest (counted in /metrics). */
static unsigned cq_entries_for(const rh_config *cfg)
{
    uint64_t n = (uint64_t)cfg->max_conns * 3 + cfg->recv_buffers + cfg->ring_entries;
    return n > (1u << 20) ? 1u << 20 : (unsigned)n;
}

static void *worker_main(void *arg)
{
    struct rh_worker *w = arg;
    rh_server *srv = w->srv;
    struct rh_loop_config lc = {.sq_entries = srv->cfg.ring_entries,
                                .cq_entries = cq_entries_for(&srv->cfg),
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
    obs_access_log_worker_start(w);
    w->accept_timer.fn = noop_timer;
    h1_refresh_date(w);
    srv_listeners_worker_init(w);
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
    int ret = obs_access_log_open(srv);
    if (ret == 0)
        ret = app_offload_start(srv);
    if (ret == 0)
        ret = srv_listeners_open(srv);
    if (ret == 0)
        ret = spawn_workers(srv);
    if (ret == 0)
        ret = srv_pid_file_write(srv);
    if (ret < 0) {
        rh_server_shutdown(srv, RH_STOP_DRAIN);
        rh_server_wait(srv);
        srv_listeners_close(srv);
        return ret;
    }
    srv_upgrade_notify_ready(srv); /* a predecessor waiting to hand over may go now */
    return 0;
}

void rh_server_stop(rh_server *srv) { rh_server_shutdown(srv, RH_STOP_GRACEFUL); }

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
    app_offload_stop(srv); /* after the rings: runs what is queued, ends those requests */
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
        app_offload_worker_free(&srv->workers[i]);
        worker_free_mem(&srv->workers[i]);
    }
    app_offload_free(srv);
    app_free(srv); /* after the pool: lane hooks' deliveries are all in */
    static_free(srv); /* the mounts' directory fds (static.c) */
    srv_listeners_close(srv);
    srv_pid_file_remove(srv);
    mi_free(srv->workers);
    app_router_free(srv->routes);
    pthread_cond_destroy(&srv->start_cond);
    pthread_mutex_destroy(&srv->start_lock);
    mi_free((char *)srv->cfg.host);
    mi_free((char *)srv->cfg.pid_file);
    if (srv->log_fd >= 0)
        close(srv->log_fd);
    if (srv->ready_fd >= 0)
        close(srv->ready_fd); /* never served: the predecessor sees EOF and goes on */
    mi_free(srv->log_path);
    mi_free(srv);
}
