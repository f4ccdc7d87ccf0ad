/* http1/: HTTP/1.1 over a connection. The llhttp glue (parse.c), body framing
 * (body.c), requests (request.c), the response writer (response.c) and the body sources
 * that send a body after its head as the connection can take more (body_source.c: static
 * files and streaming writers alike). Calls conn/ below; calls the app layer and
 * observability up through srv->hooks (struct http_hooks), and a body source through its
 * ops (struct h1_body_ops). Its
 * types are in http1/http1_types.h; the transport's (conn/conn.h) are included by the files
 * that call it. */
#ifndef RH_HTTP1_HTTP1_H
#define RH_HTTP1_HTTP1_H

#include <string.h>

#include "core/server.h"
#include "http1/http1_types.h"

/* input.c: the connection's input through the parser (parse.h), acted on: requests are
 * created, given their head and body, and dispatched, one at a time in pipelining order.
 * The conn_proto hooks on_open and on_input. */
void h1_input_open(struct rh_conn *c);
int h1_input_execute(struct rh_conn *c); /* from c->in_off; > 0: fail with that status */

/* body_rate.c: the minimum request-body rate (rh_config.min_body_rate); conn_proto hooks */
uint64_t h1_body_rate_deadline(struct rh_conn *c, uint64_t gap_deadline_ms);
void h1_body_rate_progress(struct rh_conn *c, uint32_t bytes);
bool h1_body_rate_timer(struct rh_conn *c); /* the body timer fired: true if it may go on */

/* conn_hooks.c: the transport's questions about c->req (conn_proto hooks) */
void h1_req_input_moved(struct rh_conn *c, uint32_t drop);
bool h1_req_resp_started(const struct rh_req *r);
bool h1_req_only_waiting(const struct rh_req *r);

/* request.c */
struct rh_req *h1_req_acquire(struct rh_worker *w, struct rh_conn *c);
void h1_req_end(struct rh_req *req); /* returns it to the pool; detaches from conn */
void h1_req_dispatch(struct rh_req *req);
/* Every entry from the ring into user code for a request goes through enter/leave: it makes
 * the request current (ctx) and defers its release until the outermost leave. */
struct rh_ctx *h1_req_enter(struct rh_req *req);
void h1_req_leave(struct rh_req *req, struct rh_ctx *prev);
void h1_req_complete(struct rh_req *req); /* answered in full */
void h1_mw_run_after(struct rh_req *req, int status); /* response.c, before the head */
void h1_mw_continue(struct rh_req *req);
void h1_req_detach_head(struct rh_req *req);
/* The connection stops waiting for req (it closed, or the handler deadline passed): req
 * keeps its head and lives on until it is answered (the answer is dropped); a streaming
 * writer waiting for room is told -ECONNRESET; requests still not answered when the ring
 * stops are released then. */
void h1_req_orphan(struct rh_req *req);
void h1_req_release_orphans(struct rh_worker *w); /* the ring has stopped */
/* The handler deadline passed with req unanswered: 500, or 504 for pool work. */
void h1_req_deadline(struct rh_req *req);
/* conn_proto hooks of HTTP/1 (request.c) */
const char *h1_req_input_keep(struct rh_conn *c);
static inline const char *h1_req_ptr(const struct rh_req *req, struct rh_slice s)
{
    return req->base + s.off;
}

/* body_source.c: the response body's source (struct h1_body_source; the contract is at the
 * top of body_source.c). Ring thread only. */
/* Attaches a source to req (the caller checks that none is: req->body_src.ops). Owner of
 * self: the source, until it calls h1_body_done or is stopped. */
static inline void h1_body_attach(struct rh_req *req, const struct h1_body_ops *ops, void *self)
{
    req->body_src = (struct h1_body_source){ops, self};
}
void h1_on_writable(struct rh_conn *c); /* conn_proto.on_writable: c->req's source proceeds */
bool h1_body_stop(struct rh_req *req);  /* the connection is gone: true if a source was told */
void h1_body_done(struct rh_req *req);  /* the source is finished: req is answered in full */

/* response.c */
int h1_resp_error(struct rh_req *req, int status); /* a canned error page, Connection: close */
int h1_resp_fail(struct rh_conn *c, int status);  /* conn_proto.on_fail */
int h1_resp_error_keepalive(struct rh_req *req, int status); /* the same, connection kept */
/* Streaming writers (a body source while one waits for room, rh_resp_on_writable): req's
 * writer may write again (queued output below RH_OUT_LOW, or the connection gone);
 * h1_resp_run_writable calls them, outside any handler (conn_flush_dirty). */
void h1_resp_writable_ready(struct rh_req *req);
void h1_resp_writable_cancel(struct rh_req *req); /* req ends: off the list */
void h1_resp_run_writable(struct rh_worker *w);
void h1_resp_write_raw(struct rh_conn *c, const char *data, size_t len);
void h1_refresh_date(struct rh_worker *w);
/* For static.c: header lines ("Name: value\r\n"...) the caller has validated, and a head
 * with Content-Length body_len whose body the caller sends itself (a body source). */
int h1_resp_header_lines(struct rh_req *req, const char *lines, size_t len);
int h1_resp_head_only(struct rh_req *req, int status, const char *ctype, uint64_t body_len);

#endif
