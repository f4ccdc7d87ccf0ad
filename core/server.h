/* core/server.h: the server object (struct rh_server, opaque in include/ringhttp.h): the
 * configuration, the calls-up tables, the routes and middleware, the rings, the pool and
 * the set-up of each layer. It is read by every layer (the transport reads cfg and proto,
 * HTTP/1 cfg, hooks and the middleware, app/, static/ and obs/ their own set-up fields);
 * written at set-up by rh_server_new and the rh_* set-up calls of the layer that owns each
 * field, and by server/ while it runs. Read-only on the rings once the server started.
 *
 * Nothing else lives here: each layer's types are in its own folder's header (conn/, http1/,
 * app/, static/, obs/, server/), and the layers above the transport are named only as
 * pointers, so including this header gives no layer another layer's types. */
#ifndef RH_CORE_SERVER_H
#define RH_CORE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "include/ringhttp.h"
#include "pool/pool.h"

#define RH_MAX_MIDDLEWARE 16
#define RH_MAX_LANES 8
#define RH_MAX_BLOCKING_ROUTES 64
#define RH_MAX_GROUPS 64

struct conn_proto;     /* conn/conn_types.h */
struct http_hooks;     /* http1/http1_types.h */
struct rh_worker;      /* conn/conn_types.h */
struct rh_route_node;  /* app/router.c */
struct blocking_route; /* app/offload.c */
struct static_mount;   /* static/static_priv.h */
struct rh_app;         /* app/app.h */

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
