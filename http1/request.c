/* Requests: the per-worker pool they come from, dispatch to the router, the accessors
 * handlers use, and the end of a request (however it ends). */
#include <errno.h>
#include <mimalloc.h>
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "base/freelist.h"
#include "http1/http1.h"
#include "conn/conn.h"

struct rh_req *h1_req_acquire(struct rh_worker *w, struct rh_conn *c)
{
    struct rh_req *r = RH_FREELIST_POP(w->free_reqs, next_free);
    if (!r)
        r = mi_malloc(sizeof(*r)); /* owner: the worker's pool, from the first use on */
    /* Reset only the fixed part; headers[] and params[] are filled before being read. */
    memset(r, 0, offsetof(struct rh_req, headers));
    r->w = w;
    r->conn = c;
    r->xhdr = r->xhdr_small;
    r->xhdr_cap = sizeof(r->xhdr_small);
    r->xhdr_len = 0;
    r->body_buf = NULL;
    r->body_len = r->body_cap = 0;
    r->request_id[0] = 0;
    r->lent = false;
    r->captured = NULL;
    r->offload = NULL;
    r->started_ms = w->loop.now_ms;
    r->resp_body_len = 0; /* read by rh_resp_body_bytes even when no answer is given */
    ctx_init(&r->ctx);
    return r;
}

static void orphan_unlink(struct rh_req *r)
{
    if (r->orphan_prev)
        r->orphan_prev->orphan_next = r->orphan_next;
    else
        r->w->orphans = r->orphan_next;
    if (r->orphan_next)
        r->orphan_next->orphan_prev = r->orphan_prev;
    r->orphan_listed = false;
}

void h1_req_orphan(struct rh_req *r)
{
    struct rh_worker *w = r->w;
    h1_req_detach_head(r); /* no-op when offloaded: done before it left */
    r->conn = NULL;
    if (!r->orphan_listed) {
        r->orphan_listed = true;
        r->orphan_prev = NULL;
        r->orphan_next = w->orphans;
        if (w->orphans)
            w->orphans->orphan_prev = r;
        w->orphans = r;
    }
    if (r->on_writable)
        h1_resp_writable_ready(r); /* the writer learns the client is gone (-ECONNRESET) */
}

/* Orphans out on the pool come back through it (app_offload_stop) and end there. */
void h1_req_release_orphans(struct rh_worker *w)
{
    struct rh_req *r = w->orphans;
    while (r) {
        struct rh_req *next = r->orphan_next;
        if (!r->offload)
            h1_req_end(r);
        r = next;
    }
}

/* The connection answers in the request's place and goes on (closing after the answer);
 * the request itself stays valid for whoever still holds it, as when the client leaves. */
void h1_req_deadline(struct rh_req *r)
{
    struct rh_conn *c = r->conn;
    bool on_pool = r->offload != NULL;
    c->req = NULL;
    h1_req_orphan(r);
    r->w->srv->hooks->cancel(r); /* not started: it never will; running: rh_offload_check says so */
    conn_fail(c, on_pool ? 504 : 500);
    if ((c->flags & C_PAUSED) && !c->req && !(c->flags & C_CLOSING))
        conn_close(c); /* no answer could be queued: nothing may follow on this connection */
}

/* ---- the connection's calls up (struct conn_proto, wired in wire.c) ---- */

/* Where compaction may start: the live request's head while it is still referenced. A
 * request reading its body has its head copied out first, so a large body streams through. */
const char *h1_req_input_keep(struct rh_conn *c)
{
    struct rh_req *r = c->req;
    const char *parsed = c->in + c->in_off;
    if (!r || !r->base || r->head_copy)
        return parsed;
    if (c->phase == PH_BODY && !(r->flags & R_BODY_INLINE)) {
        h1_req_detach_head(r);
        return parsed;
    }
    return r->base;
}

void h1_req_end(struct rh_req *r)
{
    struct rh_worker *w = r->w;
    struct rh_conn *c = r->conn;
    if (c && c->req == r)
        c->req = NULL;
    h1_resp_writable_cancel(r);
    if (r->orphan_listed)
        orphan_unlink(r);
    struct rh_ctx *prev = ctx_enter(&r->ctx); /* destructors may read their request */
    w->srv->hooks->req_end(r); /* finish hooks, the ring timer */
    ctx_release(&r->ctx);
    ctx_leave(prev);
    mi_free(r->head_copy);
    mi_free(r->body_buf);
    mi_free(r->captured);
    if (r->xhdr != r->xhdr_small)
        mi_free(r->xhdr);
    RH_FREELIST_PUSH(w->free_reqs, r, next_free);
}

static uint32_t slice_end(struct rh_slice s) { return s.off + s.len; }

/* Copies the head out of the connection's buffer so the buffer can move on (a large body
 * streaming through, or the connection closing under a running handler). */
void h1_req_detach_head(struct rh_req *r)
{
    if (!r->base || r->head_copy)
        return;
    uint32_t end = slice_end(r->url);
    if (slice_end(r->method) > end)
        end = slice_end(r->method);
    for (unsigned i = 0; i < r->nheaders; i++)
        if (slice_end(r->headers[i].value) > end)
            end = slice_end(r->headers[i].value);
    if ((r->flags & R_BODY_INLINE) && slice_end(r->body_inline) > end)
        end = slice_end(r->body_inline);
    r->head_copy = mi_malloc(end ? end : 1); /* owner: the request; freed in h1_req_end */
    memcpy(r->head_copy, r->base, end);
    r->base = r->head_copy;
}

struct rh_ctx *h1_req_enter(struct rh_req *r)
{
    r->busy++;
    return ctx_enter(&r->ctx);
}

void h1_req_leave(struct rh_req *r, struct rh_ctx *prev)
{
    ctx_leave(prev);
    if (--r->busy == 0 && (r->flags & R_FINISHED)) {
        r->flags &= ~R_FINISHED;
        h1_req_complete(r);
    }
}

void h1_req_complete(struct rh_req *r)
{
    if (r->busy) { /* still on the stack: the outermost h1_req_leave finishes it */
        r->flags |= R_FINISHED;
        return;
    }
    struct rh_conn *c = r->conn;
    h1_req_end(r);
    if (c)
        conn_request_done(c);
}

static void route_and_handle(struct rh_req *r)
{
    int status = 0;
    char allowed[64];
    if (!r->route) /* not yet matched; set when resuming scoped middleware (app.c) */
        r->route = r->w->srv->hooks->match(r, &status, allowed, sizeof(allowed));
    if (r->route) {
        if (!r->w->srv->hooks->route_chain(r))
            r->route->fn(r, r->route->udata);
        return;
    }
    if (status == 405)
        rh_resp_header(r, "Allow", allowed);
    if (r->w->srv->hooks->error(r, status, NULL))
        return;
    static const char nf[] = "Not Found\n", mna[] = "Method Not Allowed\n";
    rh_respond(r, status, "text/plain", status == 405 ? mna : nf,
               status == 405 ? sizeof(mna) - 1 : sizeof(nf) - 1);
}

/* Runs middlewares from mw_pos on, then the handler, until one suspends or answers. */
void h1_mw_continue(struct rh_req *r)
{
    const struct rh_server *srv = r->w->srv;
    while (r->mw_pos < srv->nmw) {
        const rh_middleware *mw = &srv->mw[r->mw_pos++];
        r->mw_ran = r->mw_pos;
        if (!mw->before)
            continue;
        rh_mw_result res = mw->before(r, mw->udata);
        if (r->flags & (R_RESP_STARTED | R_FINISHED))
            return; /* it answered: short-circuit */
        if (res == RH_MW_SUSPEND)
            return;
        if (res == RH_MW_DONE) { /* claimed an answer it did not give */
            srv->hooks->respond_error(r, 500, NULL);
            return;
        }
    }
    route_and_handle(r);
}

void h1_req_dispatch(struct rh_req *r)
{
    struct rh_conn *c = r->conn;
    c->phase = PH_HANDLER;
    c->flags |= C_PAUSED;
    if (!(c->flags & C_SEND_INFLIGHT)) /* the head's deadline ends; a write timeout does not */
        rh_timer_cancel(&r->w->loop.wheel, &c->timer);
    struct rh_ctx *prev = h1_req_enter(r);
    h1_mw_continue(r);
    h1_req_leave(r, prev);
    /* Still unanswered (r is alive only then: c->req == r): the handler's deadline starts.
     * Armed here, not before the handler, so the common answer-at-once path costs no timer. */
    unsigned deadline_ms = c->w->srv->cfg.handler_timeout_ms;
    if (deadline_ms && c->req == r && !(r->flags & R_RESP_STARTED))
        conn_arm_phase_deadline(c, deadline_ms);
}

void rh_next(rh_req *r)
{
    struct rh_ctx *prev = h1_req_enter(r);
    h1_mw_continue(r);
    h1_req_leave(r, prev);
}

int rh_use(rh_server *srv, const rh_middleware *mw)
{
    if (srv->threads_live)
        return -EBUSY;
    if (srv->nmw >= RH_MAX_MIDDLEWARE)
        return -ENOSPC;
    srv->mw[srv->nmw++] = *mw;
    return 0;
}

uint64_t rh_req_elapsed_ms(const rh_req *r)
{
    if (r->lent) { /* on a pool thread: the ring's clock is the ring's; read our own */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        return now > r->started_ms ? now - r->started_ms : 0;
    }
    return r->w->loop.now_ms - r->started_ms;
}

void *rh_req_ctx_get(const rh_req *r, rh_ctx_key key) { return ctx_slot_get(&r->ctx, key); }

int rh_req_ctx_set(rh_req *r, rh_ctx_key key, void *value)
{
    return ctx_slot_set(&r->ctx, key, value);
}

rh_req *rh_current_req(void)
{
    struct rh_ctx *c = ctx_current();
    return c ? (rh_req *)((char *)c - offsetof(struct rh_req, ctx)) : NULL;
}

/* ---- accessors ---- */

static rh_str slice_str(const rh_req *r, struct rh_slice s)
{
    return (rh_str){r->base ? r->base + s.off : NULL, s.len};
}

rh_str rh_req_method(const rh_req *r) { return slice_str(r, r->method); }
rh_str rh_req_url(const rh_req *r) { return slice_str(r, r->url); }

rh_str rh_req_path(const rh_req *r)
{
    if (!r->base) /* rejected before the request line was read */
        return (rh_str){"", 0};
    const char *u = r->base + r->url.off;
    if (r->path_len == 0 && r->url.len) { /* rejected before the head was complete */
        const char *q = memchr(u, '?', r->url.len);
        return (rh_str){u, q ? (size_t)(q - u) : r->url.len};
    }
    return (rh_str){u, r->path_len};
}

rh_str rh_req_query(const rh_req *r)
{
    if (r->path_len >= r->url.len)
        return (rh_str){r->base + r->url.off + r->url.len, 0};
    return (rh_str){r->base + r->url.off + r->path_len + 1, r->url.len - r->path_len - 1};
}

rh_str rh_req_header(const rh_req *r, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < r->nheaders; i++) {
        const struct rh_hdr *h = &r->headers[i];
        if (h->name.len == n && strncasecmp(r->base + h->name.off, name, n) == 0)
            return slice_str(r, h->value);
    }
    return (rh_str){NULL, 0};
}

unsigned rh_req_header_count(const rh_req *r) { return r->nheaders; }

int rh_req_header_at(const rh_req *r, unsigned i, rh_str *name, rh_str *value)
{
    if (i >= r->nheaders)
        return -ERANGE;
    *name = slice_str(r, r->headers[i].name);
    *value = slice_str(r, r->headers[i].value);
    return 0;
}

rh_str rh_req_param(const rh_req *r, const char *name)
{
    for (unsigned i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return slice_str(r, r->params[i].value);
    return (rh_str){NULL, 0};
}

int rh_req_query_param(const rh_req *r, const char *name, rh_str *out)
{
    rh_str q = rh_req_query(r);
    size_t n = strlen(name);
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *key_end = eq ? eq : stop;
        if ((size_t)(key_end - p) == n && memcmp(p, name, n) == 0) {
            out->ptr = eq ? eq + 1 : stop;
            out->len = (size_t)(stop - out->ptr);
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -ENOENT;
}

rh_str rh_req_body(const rh_req *r)
{
    if (r->flags & R_BODY_INLINE)
        return slice_str(r, r->body_inline);
    return (rh_str){r->body_buf, r->body_len};
}

int rh_req_http_minor(const rh_req *r) { return r->http_minor; }

const char *rh_req_peer(const rh_req *r)
{
    /* lent first: on a pool thread r->conn itself is the ring's to clear (the client may be
     * leaving right now), so it is not even read there. lent is written by this thread. */
    if (r->lent)
        return "-";
    struct rh_conn *c = r->conn;
    if (!c)
        return "-";
    if (c->peer[0]) /* one getpeername per connection, not per request */
        return c->peer;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0)
        return "-";
    const void *addr = ss.ss_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, addr, c->peer, sizeof(c->peer)))
        return "-";
    return c->peer;
}
