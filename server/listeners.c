/* Listeners: the sockets the rings accept from, in one of two shapes.
 *   own:    one SO_REUSEPORT socket per ring, opened here in ring order (the kernel spreads
 *           connections across them); each ring accepts from its own and closes it when it
 *           stops accepting.
 *   shared: sockets handed to us (socket activation, a predecessor's upgrade, or an
 *           embedder's rh_config.listen_fds); every ring keeps a multishot accept on each, and
 *           the last ring to stop accepting closes them.
 * Also the LISTEN_FDS protocol (sd_listen_fds by hand) and rh_server_listen_fds for passing
 * the sockets on. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/srv.h"

#define SD_LISTEN_FDS_START 3 /* the protocol's first fd */

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
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return 0; /* a unix socket handed to us: no port */
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

static int open_own(rh_server *srv)
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

int srv_listeners_open(rh_server *srv)
{
    const rh_config *cfg = &srv->cfg;
    if (cfg->listen_fds_count == 0)
        return open_own(srv);
    /* Copied into listen_fds (nlisten) by rh_server_new; the server closes them (see
     * srv_listeners_worker_stop). */
    atomic_store(&srv->listen_holders, srv->nworkers);
    srv->bound_port = bound_port(srv->listen_fds[0]);
    return 0;
}

/* Accepts on a socket that other processes also accept from (the predecessor of an
 * upgrade, an instance stopping under socket activation) can lose wake-ups: an accept waits
 * exclusively, so one new connection wakes one waiter, and if that waiter's op is being
 * cancelled the connection stays queued while our accepts sleep on. Measured here: clients
 * stuck until their own timeout right after a handover. So a shared slot that saw no
 * completion for a while has its accept cancelled and re-armed (on_accept re-arms it), and
 * the fresh accept takes whatever is queued as soon as it is issued. */
#define ACCEPT_NUDGE_MS 100

static void accept_nudge(struct rh_timer *t)
{
    struct rh_worker *w =
        (struct rh_worker *)((char *)t - offsetof(struct rh_worker, accept_nudge));
    if (w->accept_stopped)
        return;
    uint32_t quiet = w->accept_armed & ~w->accept_seen;
    for (unsigned i = 0; i < w->naccept; i++) {
        if (!(quiet & (1u << i)))
            continue;
        struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
        io_uring_prep_cancel64(sqe, rh_ud_make(CONN_OP_ACCEPT, i, 0), 0);
        io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
        w->loop.inflight++;
    }
    w->accept_seen = 0;
    rh_loop_timer_arm(&w->loop, &w->accept_nudge, ACCEPT_NUDGE_MS);
}

void srv_listeners_worker_init(struct rh_worker *w)
{
    rh_server *srv = w->srv;
    if (srv->nlisten) {
        w->accept_fds = srv->listen_fds;
        w->naccept = srv->nlisten;
        w->accept_nudge.fn = accept_nudge;
        rh_loop_timer_arm(&w->loop, &w->accept_nudge, ACCEPT_NUDGE_MS);
    } else {
        w->accept_fds = &w->listen_fd;
        w->naccept = 1;
    }
}

static void close_shared(rh_server *srv)
{
    if (atomic_exchange(&srv->listen_closed, true))
        return;
    for (unsigned i = 0; i < srv->nlisten; i++)
        close(srv->listen_fds[i]);
}

/* Stops this ring's accepts. Closed now, not at exit: new clients are refused at once (and
 * may retry elsewhere) instead of waiting in the backlog to be reset when the ring ends; a
 * socket that a successor or systemd also holds stays open there, its backlog intact. An
 * accept op holds its own reference to the socket until its cancel lands, and what it
 * accepts meanwhile is still served (conn.c). */
void srv_listeners_worker_stop(struct rh_worker *w)
{
    if (w->accept_stopped)
        return;
    w->accept_stopped = true;
    for (unsigned i = 0; i < w->naccept; i++) {
        if (!(w->accept_armed & (1u << i)))
            continue;
        struct io_uring_sqe *sqe = rh_loop_sqe(&w->loop);
        io_uring_prep_cancel64(sqe, rh_ud_make(CONN_OP_ACCEPT, i, 0), 0);
        io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_IGNORE, 0, 0));
        w->loop.inflight++;
    }
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    if (w->srv->nlisten && atomic_fetch_sub(&w->srv->listen_holders, 1) == 1)
        close_shared(w->srv); /* the last ring out: nobody arms an accept on them any more */
}

void srv_listeners_close(rh_server *srv)
{
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
        if (srv->workers[i].listen_fd >= 0) {
            close(srv->workers[i].listen_fd);
            srv->workers[i].listen_fd = -1;
        }
    if (srv->nlisten)
        close_shared(srv);
}

int rh_server_listen_fds(const rh_server *srv, int *fds, unsigned cap)
{
    unsigned n = 0;
    if (srv->nlisten) {
        if (atomic_load(&((rh_server *)srv)->listen_closed))
            return 0;
        for (unsigned i = 0; i < srv->nlisten; i++, n++)
            if (n < cap)
                fds[n] = srv->listen_fds[i];
        return (int)n;
    }
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
        if (srv->workers[i].listen_fd >= 0) {
            if (n < cap)
                fds[n] = srv->workers[i].listen_fd;
            n++;
        }
    return (int)n;
}

static int parse_env_uint(const char *name, unsigned long *out)
{
    const char *s = getenv(name);
    char *end;
    if (!s || !*s)
        return -ENOENT;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return (errno || *end || s[0] == '-') ? -EINVAL : 0;
}

static bool listening_stream(int fd)
{
    int yes = 0, type = 0;
    socklen_t len = sizeof(yes), tlen = sizeof(type);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &yes, &len) == 0 && yes &&
           getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM;
}

int rh_listen_fds_from_env(int *fds, unsigned cap)
{
    unsigned long pid, n;
    if (parse_env_uint("LISTEN_PID", &pid) < 0 || pid != (unsigned long)getpid())
        return 0; /* not for us (a parent's, passed down by mistake) */
    int ret = parse_env_uint("LISTEN_FDS", &n);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (ret < 0)
        return ret == -ENOENT ? 0 : ret;
    if (n > cap || n > RH_MAX_LISTEN_FDS)
        return -E2BIG;
    for (unsigned i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + (int)i;
        if (!listening_stream(fd))
            return -EINVAL;
        fcntl(fd, F_SETFD, FD_CLOEXEC); /* ours now: not leaked into what we exec */
        fds[i] = fd;
    }
    return (int)n;
}
