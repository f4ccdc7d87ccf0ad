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

/* The server layers' completion kinds, registered on the ring by the layer that owns each
 * (conn_register_ops, static_worker_start, access_log_worker_start). */
enum srv_op {
    CONN_OP_ACCEPT = RH_OP_FIRST_USER,
    CONN_OP_RECV,
    CONN_OP_SEND,
    STATIC_OP_FILE, /* static files: openat2/statx/splice/read */
    LOG_OP_WRITE,   /* access log writes */
};

#define RH_MAX_HEADERS_CAP 128 /* hard cap on rh_config.max_headers */
#define RH_MAX_PARAMS 8
#define RH_IN_BLOCK 16384u  /* connection input buffer; > max_header_size + one recv */
#define RH_OUT_BLOCK 4096u /* connection output buffer, first size: 16 pipelined answers */
/* Blocks kept on a worker's free lists; a burst's extra blocks go back to mimalloc, so
 * memory after the burst follows the connections that are busy, not the peak. */
#define RH_FREE_BLOCKS_MAX 256u
#define RH_NO_BUF 0xffffu
#define RH_LINGER_MS 1500u
/* Output back-pressure per connection: past RH_OUT_HIGH bytes queued (pending + in flight)
 * the connection parses no further request and stops reading; below RH_OUT_LOW it resumes
 * and a streaming writer waiting in rh_resp_on_writable is called. A stream is refused past
 * RH_OUT_MAX (rh_resp_write: -ENOBUFS), so a writer that ignores the signal stays bounded. */
#define RH_OUT_HIGH (256u * 1024u)
#define RH_OUT_LOW (64u * 1024u)
#define RH_OUT_MAX (16u * 1024u * 1024u)
/* Provided buffers a connection may hold (input that does not fit its input block yet);
 * past it, or past a quarter of the ring held by all connections, input is copied into the
 * connection's spill buffer and the buffer goes back at once, so buffers keep cycling for
 * every other connection. The spill is bounded too: reading stops when it is first used. */
#define RH_HELD_MAX 2u
#define RH_SPILL_MAX (1024u * 1024u)
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

/* An output buffer. A block of RH_OUT_BLOCK comes from the worker's free list; larger ones
 * from mimalloc. Owner: the connection, until released when the connection goes idle. */
struct rh_obuf {
    char *data;
    size_t len, cap, sent; /* size_t: a large streamed body must not wrap a 32-bit count */
};

enum rh_phase {
    PH_IDLE,    /* between requests: idle (keep-alive) timer */
    PH_HEAD,    /* reading a request head: header timer */
    PH_BODY,    /* reading a body: body timer, re-armed on progress */
    PH_HANDLER, /* dispatched, not answered: the handler deadline (--handler-timeout) */
    PH_LINGER,  /* answered with close: write shut, draining input briefly */
};

enum rh_conn_flag {
    C_RECV_ARMED = 1u << 0,     /* multishot recv outstanding */
    C_SEND_INFLIGHT = 1u << 1,  /* a send outstanding (wbuf is the kernel's) */
    C_CLOSING = 1u << 2,        /* close started: waiting for ops, then free */
    C_CLOSE_AFTER_SEND = 1u << 3, /* answer queued, then shut write and linger */
    C_PAUSED = 1u << 4,         /* a request is with its handler: parse no further */
    C_READ_STOPPED = 1u << 5,   /* recv cancelled for back-pressure (held buffers) */
    C_PEER_EOF = 1u << 6,       /* the peer shut its write side */
    C_PROCESSING = 1u << 7,     /* inside conn_process (reentrancy guard) */
    C_DIRTY = 1u << 8,          /* on the worker's flush list */
    C_WANT_RECV = 1u << 9,      /* re-arm recv at the next flush */
    C_FILE_INFLIGHT = 1u << 10, /* static.c: a file body op outstanding; close waits for it */
    C_LINGER_NEEDED = 1u << 11, /* failed mid-input: the client may still be sending */
    C_FREE_PENDING = 1u << 12,  /* closed while on the flush list: freed when popped */
    C_STARVED = 1u << 13,       /* recv ended with -ENOBUFS: on the worker's starved list */
    C_OUT_FULL = 1u << 14,      /* output past RH_OUT_HIGH: parse and read no further */
    C_NONBLOCK = 1u << 15,      /* static/: the socket was made O_NONBLOCK (once per connection) */
    C_IDLE_LISTED = 1u << 20,   /* on the worker's idle list (conn_idle.c) */
};

struct rh_conn {
    struct rh_worker *w;
    int fd;
    uint32_t idx, gen;
    uint32_t flags;
    enum rh_phase phase;
    llhttp_t parser;
    uint8_t head_scan; /* parse.c: line state of the head being read (bare CR, obs-fold) */
    struct rh_req *req; /* the request being read or handled (at most one: see C_PAUSED) */

    char *in; /* RH_IN_BLOCK from the worker's free list while bytes are pending */
    uint32_t in_len, in_off; /* bytes held / bytes given to the parser */
    uint16_t held_head, held_tail, nheld; /* provided buffers waiting for room in `in` */
    char *spill; /* input after the held buffers, copied (mimalloc; freed once drained) */
    uint32_t spill_len, spill_off, spill_cap;
    struct rh_conn *starved_prev, *starved_next; /* the worker's starved list (C_STARVED) */

    struct rh_obuf wbuf; /* being sent (the kernel's while C_SEND_INFLIGHT) */
    struct rh_obuf pbuf; /* being filled by responses */

    struct rh_timer timer;       /* the phase's deadline, or the write timeout meanwhile */
    uint64_t phase_deadline_ms;  /* head or body deadline, restored after a send */
    struct rh_conn *dirty_next;
    struct rh_conn *idle_prev, *idle_next; /* the worker's idle list, oldest first */
    uint32_t requests; /* served on this connection */
    char peer[INET6_ADDRSTRLEN]; /* filled on first use (access log), one getpeername */
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

/* Per-worker counters: written by the worker alone (relaxed load+store, no RMW), read by
 * whoever renders /metrics. */
#define RH_LAT_BUCKETS 10
struct rh_stats {
    _Atomic uint64_t by_class[6]; /* [1..5]: 1xx..5xx */
    _Atomic uint64_t latency[RH_LAT_BUCKETS + 1]; /* le bucket counts, last is +Inf */
    _Atomic uint64_t latency_sum_ms;
    _Atomic uint64_t accepted;
    _Atomic uint64_t recv_enobufs; /* the provided-buffer ring ran dry (back-pressure) */
    _Atomic uint64_t conn_reclaimed; /* idle connections closed at the limit for a new one */
    _Atomic uint64_t conn_refused;   /* new connections closed at the limit (none idle) */
    _Atomic uint64_t close_forced;   /* closes that gave up on a lost send completion */
    _Atomic uint64_t body_too_slow;  /* 408 for a body below the minimum rate */
    _Atomic uint32_t open_conns;
};
extern const unsigned rh_latency_bounds_ms[RH_LAT_BUCKETS];

static inline void stat_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

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

struct rh_worker {
    struct rh_loop loop;
    struct rh_stats stats;
    struct rh_access_log *log;
    struct static_ring *fstatic; /* static.c: the open-file cache and transfers, or NULL */
    struct rh_server *srv;
    unsigned id;
    pthread_t thread;
    int listen_fd;
    int error; /* why the thread ended, -errno */
    /* listeners.c: the sockets this ring accepts from (&listen_fd, or the server's shared
     * ones), one multishot accept each (user_data idx = slot); accept_stopped ends them. */
    const int *accept_fds;
    unsigned naccept;
    uint32_t accept_armed; /* a bit per slot */
    uint32_t accept_seen;  /* slots with a completion since the last nudge */
    struct rh_timer accept_nudge;
    bool accept_stopped;
    bool grace; /* drain.c: stopping after a grace; responses carry Connection: close */
    uint64_t grace_deadline_ms;
    struct rh_timer grace_timer;
    struct rh_timer accept_timer; /* back-off after EMFILE and friends */
    uint64_t accept_warned_ms;
    bool draining;
    uint64_t drain_deadline_ms;

    struct rh_conn *conns; /* max_conns slots (mmap: pages are touched as used) */
    uint32_t *free_idx, free_top;
    unsigned open_conns;

    struct rh_conn *dirty; /* connections with output or a recv to arm this iteration */
    struct rh_conn *idle_head, *idle_tail; /* idle connections, longest idle first */
    struct rh_req *free_reqs;
    struct offload *free_offloads;
    char *free_in, *free_out; /* free lists of RH_IN_BLOCK / RH_OUT_BLOCK blocks */
    unsigned nfree_in, nfree_out;
    uint16_t *held_next;     /* per provided buffer: next in a connection's held list */
    uint32_t *held_len;
    unsigned held_total;     /* provided buffers held by all connections */
    struct rh_conn *starved_head, *starved_tail; /* waiting for buffers, oldest first */
    struct rh_req *writable_head, *writable_tail; /* streaming writers to call back */
    struct rh_req *orphans; /* detached from their connection, not yet answered */

    char date_line[48]; /* "Date: ...\r\n", refreshed once per second */
    uint32_t date_len;
    int64_t date_sec;
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

/* The protocol over a connection (HTTP/1 today), called by the transport (conn.c). */
struct conn_proto {
    void (*on_open)(struct rh_conn *c);  /* a fresh connection, before its first recv */
    int (*on_input)(struct rh_conn *c);  /* parse from c->in_off; > 0: fail with that status */
    const char *(*input_keep)(struct rh_conn *c); /* where input compaction may start */
    void (*input_moved)(struct rh_conn *c, uint32_t drop); /* compacted: c->req's head moved */
    void (*on_drained)(struct rh_req *r); /* output sent, a body source (a file) goes on */
    void (*on_writable)(struct rh_req *r); /* below the low mark: a waiting writer resumes */
    bool (*resp_started)(const struct rh_req *r); /* its answer's head is out */
    bool (*only_waiting)(const struct rh_req *r); /* unanswered, waiting for pool or timer */
    /* The request body's minimum rate (PH_BODY): the deadline of the current window (the
     * earlier of it and the gap's), bytes read, the body timer fired (true: it may go on). */
    uint64_t (*body_deadline)(struct rh_conn *c, uint64_t gap_deadline_ms);
    void (*body_progress)(struct rh_conn *c, uint32_t bytes);
    bool (*body_timer)(struct rh_conn *c);
    void (*on_deadline)(struct rh_req *r); /* the handler deadline passed */
    int (*on_fail)(struct rh_conn *c, int status); /* an error page; < 0: could not */
    void (*on_closed)(struct rh_conn *c, bool abandoned); /* c->req ends or is orphaned */
    void (*before_flush)(struct rh_worker *w); /* the Date line, streaming writers */
    void (*after_flush)(struct rh_worker *w);  /* after the sends: wake pool threads */
    void (*on_stop)(struct rh_worker *w);      /* the ring has exited: free the orphans */
};

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

/* A slot in use. Slots never used are all zero (their pages untouched), freed ones have
 * fd -1; generation 0 is never handed out. */
static inline bool conn_live(const struct rh_conn *c) { return c->gen != 0 && c->fd >= 0; }

#endif
