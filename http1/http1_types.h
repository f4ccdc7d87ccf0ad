/* http1/http1_types.h: HTTP/1's types. A request (struct rh_req: its head as slices of
 * the connection's input, its body, the response's state, the per-request context), the
 * handler a route match hands HTTP/1 (struct req_handler; app/'s route entries begin with
 * one), and the table through which HTTP/1 calls the app layer and observability above it
 * (struct http_hooks, filled by server/wire.c).
 *
 * Sees conn/ (the connection a request rides on), ctx/ and the public header; what the
 * layers above keep in a request is named here only as opaque pointers. */
#ifndef RH_HTTP1_HTTP1_TYPES_H
#define RH_HTTP1_HTTP1_TYPES_H

#include <llhttp.h> /* rh_req.method_id is an llhttp_method (HTTP_GET, ...) */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn/conn_types.h"
#include "ctx/ctx.h"
#include "include/ringhttp.h"

#define RH_MAX_HEADERS_CAP 128 /* hard cap on rh_config.max_headers */
#define RH_MAX_PARAMS 8

struct captured;    /* app/offload.c */

/* What a route match hands HTTP/1: the handler to run. app/'s struct rh_route_entry begins
 * with one, so HTTP/1 calls the handler without knowing the router's types. */
struct req_handler {
    rh_handler_fn fn;
    void *udata;
};

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
    /* 1u << 0, 1u << 1: free (were the parser's, now in struct h1_parser) */
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

/* A response body sent after its head, pulled as the connection can take more (h2o's
 * generators): a static file transfer, or a streaming writer waiting for room. The ops are
 * the source's; self is its state. See http1/body_source.c for the contract. */
struct h1_body_ops {
    void (*proceed)(struct rh_req *req, void *self); /* the connection can take more */
    void (*stop)(struct rh_req *req, void *self);    /* the connection went away first */
};
struct h1_body_source {
    const struct h1_body_ops *ops; /* NULL: no body source */
    void *self;
};

/* Pooled per worker; owned by its connection while attached (conn->req), and by whoever
 * completes it once the connection is gone (req->conn == NULL: an orphan whose answer is
 * dropped). Ends in h1_req_end(), which returns it to the worker's free list. */
struct rh_req {
    struct rh_worker *w;
    struct rh_conn *conn;
    struct rh_req *next_free;
    uint32_t flags;
    int status;     /* of the response, once started */
    uint16_t busy;  /* nesting of h1_req_enter: the request is released only at 0 */
    uint8_t mw_pos; /* next middleware to run */
    uint8_t mw_ran; /* middlewares whose before ran: their after hooks run */
    bool lent;      /* on a pool thread: written and read only there (rh_respond captures) */
    void *offload;  /* the task out on the pool, or NULL (ring thread only) */
    struct h1_body_source body_src; /* body_source.c: sends the response body (ops NULL: none) */
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
    const struct req_handler *route;
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
    uint8_t nparams;
    uint16_t nheaders;
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

/* The application and observability over HTTP/1 (request.c, response.c). */
struct http_hooks {
    const struct req_handler *(*match)(struct rh_req *r, int *status, char *allowed,
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

#endif
