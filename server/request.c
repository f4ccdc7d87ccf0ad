/* Requests: the per-worker pool they come from, dispatch to the router, the accessors
 * handlers use, and the end of a request (however it ends). */
#include <errno.h>
#include <mimalloc.h>
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "server/internal.h"

struct rh_req *req_acquire(struct rh_worker *w, struct rh_conn *c)
{
    struct rh_req *r = w->free_reqs;
    if (r)
        w->free_reqs = r->next_free;
    else
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
    r->peer[0] = 0;
    r->started_ms = w->loop.now_ms;
    return r;
}

void req_end(struct rh_req *r)
{
    struct rh_worker *w = r->w;
    struct rh_conn *c = r->conn;
    if (c && c->req == r)
        c->req = NULL;
    mi_free(r->head_copy);
    mi_free(r->body_buf);
    if (r->xhdr != r->xhdr_small)
        mi_free(r->xhdr);
    r->next_free = w->free_reqs;
    w->free_reqs = r;
}

static uint32_t slice_end(struct rh_slice s) { return s.off + s.len; }

/* Copies the head out of the connection's buffer so the buffer can move on (a large body
 * streaming through, or the connection closing under a running handler). */
void req_detach_head(struct rh_req *r)
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
    r->head_copy = mi_malloc(end ? end : 1); /* owner: the request; freed in req_end */
    memcpy(r->head_copy, r->base, end);
    r->base = r->head_copy;
}

void req_dispatch(struct rh_req *r)
{
    struct rh_conn *c = r->conn;
    struct rh_server *srv = r->w->srv;
    c->phase = PH_HANDLER;
    c->flags |= C_PAUSED;
    rh_timer_cancel(&r->w->loop.wheel, &c->timer);
    int status = 0;
    char allowed[64];
    const struct rh_route_entry *e = router_match(srv->routes, r, &status, allowed,
                                                  sizeof(allowed));
    if (!e) {
        if (status == 405)
            rh_resp_header(r, "Allow", allowed);
        rh_respond(r, status, "text/plain", status == 405 ? "Method Not Allowed\n"
                                                          : "Not Found\n",
                   status == 405 ? 19 : 10);
        return;
    }
    e->fn(r, e->udata);
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
    return (rh_str){r->base + r->url.off, r->path_len};
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
    struct rh_req *m = (struct rh_req *)r; /* a lazily filled cache: one call per request */
    if (m->peer[0] || !r->conn)
        return m->peer[0] ? m->peer : "-";
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(r->conn->fd, (struct sockaddr *)&ss, &len) < 0)
        return "-";
    const void *addr = ss.ss_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, addr, m->peer, sizeof(m->peer)))
        return "-";
    return m->peer;
}
