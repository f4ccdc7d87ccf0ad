/* core/internal.h: the types the server's layers share (conn/, http1/, app/, static/,
 * obs/, server/), the server's completion kinds, and the two tables through which a lower
 * layer calls a higher one (struct conn_proto, struct http_hooks; filled by server/wire.c).
 * Functions are declared in each folder's own header, not here.
 *
 * The data path reads top to bottom: completion (conn/conn.c) -> connection input ->
 * proto->on_input: parser (http1/parse.c) -> request (http1/request.c) -> hooks->match:
 * router (app/router.c) and handler -> response (http1/response.c) -> send (conn/conn.c).
 *
 * Thread rules: a worker's connections and requests are touched only by that worker's
 * thread; a blocking handler's request is lent to one pool thread while it runs. Nothing
 * here is shared between workers except the read-only server configuration and routes. */
#ifndef RH_SERVER_INTERNAL_H
#define RH_SERVER_INTERNAL_H

#include <llhttp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ctx/ctx.h"
#include "pool/pool.h"
#include "include/ringhttp.h"
#include "uring/loop.h"
#include "conn/conn_types.h"
#include "http1/http1_types.h"

/* The server layers' completion kinds, registered on the ring by the layer that owns each
 * (conn_register_ops, static_worker_start, access_log_worker_start). */
enum srv_op {
    STATIC_OP_FILE = CONN_OP_NEXT, /* static files: openat2/statx/splice/read */
    LOG_OP_WRITE,   /* access log writes */
};

#define RH_MAX_MIDDLEWARE 16
#define RH_MAX_LANES 8
#define RH_MAX_BLOCKING_ROUTES 64
#define RH_MAX_GROUPS 64

struct rh_route_node;
struct static_xfer;  /* static/static.c */
struct static_ring;
struct static_mount;

struct rh_access_log {
    struct rh_worker *w;
    int fd, old_fd; /* old_fd: to close once the write in flight is done */
    char *buf[2];
    uint32_t len[2], sent;
    unsigned active; /* buffer lines go to; the other may be in flight */
    bool inflight;
    uint64_t dropped;
    struct rh_timer timer;
    int64_t stamp_sec;
    char stamp[32]; /* "[25/Nov/2026:22:05:45 +0000]" */
};

/* ---- calls up: the layers below name what they need from the ones above here, and the
 * server (wire.c) fills these tables, so transport and HTTP/1 call no layer above them. ---- */

struct rh_route_entry;

struct rh_server {
    rh_config cfg;
    const struct conn_proto *proto; /* wire.c */
    const struct http_hooks *hooks; /* wire.c */
    struct rh_route_node *routes;
    rh_middleware mw[RH_MAX_MIDDLEWARE];
    unsigned nmw;
    struct rh_worker *workers;
    unsigned nworkers;
    uint16_t bound_port;
    atomic_bool stopping;
    atomic_uint running;
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned started;
    bool threads_live;
    struct rh_pool *pool;
    struct rh_lane_config lanes[RH_MAX_LANES];
    unsigned nlanes;
    struct blocking_route *blocking[RH_MAX_BLOCKING_ROUTES];
    unsigned nblocking;
    struct rh_pool_group_config groups[RH_MAX_GROUPS]; /* offload.c: names owned */
    unsigned ngroups;
    int log_fd; /* the access log, -1: off; each worker writes through its own dup */
    char *log_path;
    struct static_mount *static_mounts; /* static.c: rh_static_route's mounts */
    /* listeners.c: sockets shared by every ring (inherited: LISTEN_FDS or rh_config), closed
     * by the last ring to stop accepting (listen_holders counts the others down). */
    int listen_fds[RH_MAX_LISTEN_FDS];
    unsigned nlisten;
    atomic_uint listen_holders;
    atomic_bool listen_closed;
    atomic_int stop_how; /* drain.c: 0, or the rh_stop_how of rh_server_shutdown */
    int ready_fd; /* upgrade.c: the predecessor's pipe, written once serving; -1: none */
    struct rh_app *app; /* app.c: the toolkit's set-up, NULL until used */
};

#endif
