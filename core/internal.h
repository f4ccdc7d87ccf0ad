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

/* The server layers' completion kinds, registered on the ring by the layer that owns each
 * (conn_register_ops, static_worker_start, access_log_worker_start). */
enum srv_op {
    STATIC_OP_FILE = CONN_OP_NEXT, /* static files: openat2/statx/splice/read */
    LOG_OP_WRITE,   /* access log writes */
};

#define RH_MAX_HEADERS_CAP 128 /* hard cap on rh_config.max_headers */
#define RH_MAX_PARAMS 8
#define RH_MAX_MIDDLEWARE 16
#define RH_MAX_LANES 8
#define RH_MAX_BLOCKING_ROUTES 64
#define RH_MAX_GROUPS 64

struct rh_route_node;
struct static_xfer;  /* static/static.c */
struct static_ring;
struct static_mount;

/* A span of the request's bytes, relative to req->base (which moves when the connection's
 * input buffer is compacted or the head is copied out, so offsets stay valid). */
struct rh_slice {
    uint32_t off, len;
};

struct rh_hdr {
    struct rh_slice name, value;
};

/* Request flags. */
enum rh_req_flag {
    R_FIELD_OPEN = 1u << 0,  /* inside a header name */
    R_VALUE_OPEN = 1u << 1,  /* inside a header value */
    R_HEADERS_DONE = 1u << 2,
    R_BODY_INLINE = 1u << 3, /* body is one slice of the head buffer */
    R_KEEP_ALIVE = 1u << 4,
    R_HEAD = 1u << 5,        /* HEAD: send no body */
    R_RESP_STARTED = 1u << 6,
    R_RESP_CHUNKED = 1u << 7,
    R_RESP_CLOSE_DELIMITED = 1u << 8,
    R_EXPECT_CONTINUE = 1u << 9,
    R_CHUNKED = 1u << 10,
    R_FINISHED = 1u << 11, /* answered while still in use on the stack: release on leave */
    R_WRITABLE_QUEUED = 1u << 12, /* on the worker's writable list: on_writable runs soon */
};

/* Pooled per worker; owned by its connection while attached (conn->req), and by whoever
 * completes it once the connection is gone (req->conn == NULL: an orphan whose answer is
 * dropped). Ends in req_end(), which returns it to the worker's free list. */
struct rh_req {
    struct rh_worker *w;
    struct rh_conn *conn;
    struct rh_req *next_free;
    uint32_t flags;
    int err_status; /* set by a parser callback that fails the request */
    int status;     /* of the response, once started */
    uint16_t busy;  /* nesting of req_enter: the request is released only at 0 */
    uint8_t mw_pos; /* next middleware to run */
    uint8_t mw_ran; /* middlewares whose before ran: their after hooks run */
    bool lent;      /* on a pool thread: written and read only there (rh_respond captures) */
    void *offload;  /* the task out on the pool, or NULL (ring thread only) */
    struct static_xfer *file; /* static.c: a file body still to send after the head */
    struct captured *captured; /* an answer made on the pool thread, sent by the ring */
    /* body_rate.c: the current window of the minimum body rate, and the gap deadline */
    uint64_t rate_start_ms, rate_bytes, gap_deadline_ms;
    rh_writable_fn on_writable; /* a streaming writer waiting for room (rh_resp_on_writable) */
    void *writable_udata;
    struct rh_req *writable_next;            /* the worker's writable list */
    struct rh_req *orphan_prev, *orphan_next; /* the worker's orphan list */
    /* On that list. Not a flag: a request is orphaned while a pool thread may read flags. */
    bool orphan_listed;
    /* app.c (the toolkit): the matched route, the scoped middleware's positions, the body
     * bytes given, the ring timer (armed when app_timer_fn is set). */
    const struct rh_route_entry *route;
    uint8_t rmw_pos, rmw_ran;
    uint64_t resp_body_bytes;
    struct rh_timer app_timer;
    void (*app_timer_fn)(struct rh_req *req, void *arg);
    void *app_timer_arg;

    const char *base;  /* start of the request head (in conn->in, or head_copy) */
    char *head_copy;   /* owned copy of the head once detached (mimalloc) */
    struct rh_slice method, url;
    uint32_t path_len;
    uint8_t method_id, http_minor;
    uint8_t host_count, nparams;
    uint16_t nheaders;
    struct {              /* body.c: the body's framing, read by us, not llhttp */
        uint64_t left;    /* bytes of the current chunk (or of the body) still to come */
        uint32_t line;    /* bytes of the current chunk-size line, or of the trailers */
        uint8_t state;    /* 0: no body being read */
    } framing;
    struct rh_hdr headers[RH_MAX_HEADERS_CAP];
    struct {
        const char *name; /* the route's, static */
        struct rh_slice value;
    } params[RH_MAX_PARAMS];

    uint64_t content_length; /* as declared, when not chunked */
    struct rh_slice body_inline;
    char *body_buf; /* owned (mimalloc) when the body came in pieces */
    size_t body_len, body_cap;

    /* Extra response headers ("Name: value\r\n"...), added before the head is sent. */
    char *xhdr;
    uint32_t xhdr_len, xhdr_cap;
    char xhdr_small[192];

    uint64_t started_ms;
    int64_t resp_body_len; /* -1 while streaming */
    char request_id[40];
    struct rh_ctx ctx;
};

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

struct rh_route_entry {
    char method[16]; /* "*" for any */
    rh_handler_fn fn;
    void *udata;
    bool blocking;
    struct rh_route_entry *next;
};

/* ---- calls up: the layers below name what they need from the ones above here, and the
 * server (wire.c) fills these tables, so transport and HTTP/1 call no layer above them. ---- */

struct rh_route_entry;

/* The application and observability over HTTP/1 (request.c, response.c). */
struct http_hooks {
    const struct rh_route_entry *(*match)(struct rh_req *r, int *status, char *allowed,
                                          size_t allowed_len);
    bool (*route_chain)(struct rh_req *r);              /* true: scoped middleware took it */
    void (*route_after)(struct rh_req *r, int status);  /* scoped after-middleware */
    bool (*error)(struct rh_req *r, int status, const char *detail); /* true: it answered */
    int (*respond_error)(struct rh_req *r, int status, const char *detail);
    void (*req_end)(struct rh_req *r);                  /* finish hooks, ring timer */
    void (*cancel)(struct rh_req *r);                   /* an offload not started yet */
    int (*capture)(struct rh_req *r, int status, const char *ctype, const void *body,
                   size_t len); /* a lent request's answer, on its pool thread */
    void (*after)(struct rh_req *r, int status); /* after-hooks: metrics, access log */
};

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
