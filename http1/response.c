/* The response writer: status line, headers and body serialised straight into the
 * connection's pending output buffer (no printf on this path), chunked streaming, canned
 * error pages, and the once-a-second Date line. */
#include <errno.h>
#include <mimalloc.h>
#include <string.h>
#include <time.h>

#include "base/fmt.h"
#include "http1/http1.h"
#include "conn/conn.h"

static int out_append(struct rh_conn *c, const void *data, size_t len)
{
    char *p = conn_obuf_reserve(c->w, &c->pbuf, len);
    if (!p)
        return -ENOMEM;
    memcpy(p, data, len);
    c->pbuf.len += len;
    return 0;
}

void h1_resp_write_raw(struct rh_conn *c, const char *data, size_t len)
{
    if (out_append(c, data, len) == 0)
        conn_mark_dirty(c);
}

/* ---- the Date line ---- */

void h1_refresh_date(struct rh_worker *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec == w->date_sec)
        return;
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    w->date_len = (uint32_t)strftime(w->date_line, sizeof(w->date_line),
                                     "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_sec = ts.tv_sec;
}

/* ---- heads ---- */

#define APPEND_LIT(p, s) (memcpy(p, s, sizeof(s) - 1), (p) + sizeof(s) - 1)

static char *append(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Whether the connection closes after this response. After a half-close, requests the
 * client sent before it are still answered: the last one closes. */
static bool resp_closes(const struct rh_req *r)
{
    const struct rh_conn *c = r->conn;
    bool input_left = c->in_off != c->in_len || c->held_head != RH_NO_BUF ||
                      c->spill_off != c->spill_len;
    return !(r->flags & R_KEEP_ALIVE) || ((c->flags & C_PEER_EOF) && !input_left) ||
           r->w->draining || r->w->grace || /* stopping: retire kept-alive connections (drain.c) */
           (r->flags & R_RESP_CLOSE_DELIMITED);
}

/* Writes status line and headers. body_len < 0: chunked (or close-delimited on 1.0). */
static int write_head(struct rh_req *r, int status, const char *ctype, int64_t body_len)
{
    r->status = status;
    r->resp_body_len = body_len;
    h1_mw_run_after(r, status); /* middleware may add headers: before the size is known */
    r->w->srv->hooks->after(r, status); /* observability: metrics, the access log */
    struct rh_conn *c = r->conn;
    struct rh_worker *w = r->w;
    const char *reason = rh_status_reason(status);
    size_t ctype_len = ctype ? strlen(ctype) : 0;
    size_t max = 128 + strlen(reason) + w->date_len + ctype_len + r->xhdr_len;
    char *start = conn_obuf_reserve(w, &c->pbuf, max);
    if (!start)
        return -ENOMEM;
    if (body_len < 0 && r->http_minor == 0)
        r->flags |= R_RESP_CLOSE_DELIMITED;
    else if (body_len < 0)
        r->flags |= R_RESP_CHUNKED;
    char *p = APPEND_LIT(start, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = append(p, reason, strlen(reason));
    p = APPEND_LIT(p, "\r\nServer: ringhttp\r\n");
    p = append(p, w->date_line, w->date_len);
    if (ctype) {
        p = APPEND_LIT(p, "Content-Type: ");
        p = append(p, ctype, ctype_len);
        p = APPEND_LIT(p, "\r\n");
    }
    if (r->flags & R_RESP_CHUNKED) {
        p = APPEND_LIT(p, "Transfer-Encoding: chunked\r\n");
    } else if (body_len >= 0 && status_has_body(status)) {
        p = APPEND_LIT(p, "Content-Length: ");
        p += rh_fmt_u64(p, (uint64_t)body_len);
        p = APPEND_LIT(p, "\r\n");
    }
    p = append(p, r->xhdr, r->xhdr_len);
    if (resp_closes(r)) {
        p = APPEND_LIT(p, "Connection: close\r\n");
        c->flags |= C_CLOSE_AFTER_SEND;
    } else if (r->http_minor == 0) {
        p = APPEND_LIT(p, "Connection: keep-alive\r\n");
    }
    p = APPEND_LIT(p, "\r\n");
    c->pbuf.len += (size_t)(p - start);
    r->flags |= R_RESP_STARTED;
    return 0;
}

static bool token_char(unsigned char ch)
{
    return ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* Room for n more bytes of extra headers. */
static char *xhdr_reserve(struct rh_req *r, size_t n)
{
    size_t need = r->xhdr_len + n;
    if (need > r->xhdr_cap) {
        size_t cap = r->xhdr_cap * 2 > need ? r->xhdr_cap * 2 : need;
        char *nx = mi_malloc(cap); /* owner: the request; freed in h1_req_end */
        if (!nx)
            return NULL;
        memcpy(nx, r->xhdr, r->xhdr_len);
        if (r->xhdr != r->xhdr_small)
            mi_free(r->xhdr);
        r->xhdr = nx;
        r->xhdr_cap = (uint32_t)cap;
    }
    return r->xhdr + r->xhdr_len;
}

int rh_resp_header(rh_req *r, const char *name, const char *value)
{
    if (r->flags & R_RESP_STARTED)
        return -EALREADY;
    size_t nlen = strlen(name), vlen = strlen(value);
    if (nlen == 0)
        return -EINVAL;
    for (size_t i = 0; i < nlen; i++)
        if (!token_char((unsigned char)name[i]))
            return -EINVAL;
    for (size_t i = 0; i < vlen; i++)
        if (value[i] == '\r' || value[i] == '\n')
            return -EINVAL; /* no response splitting */
    char *p = xhdr_reserve(r, nlen + vlen + 4);
    if (!p)
        return -ENOMEM;
    p = append(p, name, nlen);
    p = APPEND_LIT(p, ": ");
    p = append(p, value, vlen);
    p = APPEND_LIT(p, "\r\n");
    r->xhdr_len = (uint32_t)(p - r->xhdr);
    return 0;
}

/* ---- for static.c ---- */

int h1_resp_header_lines(struct rh_req *r, const char *lines, size_t len)
{
    if (r->flags & R_RESP_STARTED)
        return -EALREADY;
    char *p = xhdr_reserve(r, len);
    if (!p)
        return -ENOMEM;
    memcpy(p, lines, len);
    r->xhdr_len += (uint32_t)len;
    return 0;
}

/* A head announcing body_len bytes that the caller sends itself: a body source (static
 * files: h1_body_attach, then proceed once this head has drained, then h1_body_done). */
int h1_resp_head_only(struct rh_req *r, int status, const char *ctype, uint64_t body_len)
{
    if (r->flags & R_RESP_STARTED)
        return -EALREADY;
    if (!r->conn)
        return -ENOTCONN;
    int ret = write_head(r, status, ctype, (int64_t)body_len);
    if (ret == 0)
        conn_mark_dirty(r->conn);
    return ret;
}

int rh_respond(rh_req *r, int status, const char *ctype, const void *body, size_t len)
{
    if (status < 200 || status > 999)
        return -EINVAL; /* a 1xx is never a final answer: the client would wait for more */
    if (r->lent) /* on a pool thread: the ring sends it when the task comes back */
        return r->w->srv->hooks->capture(r, status, ctype, body, len);
    if (r->flags & R_RESP_STARTED)
        return -EALREADY;
    if (!r->conn) { /* the client went away: nothing to send */
        r->status = status;
        r->flags |= R_RESP_STARTED;
        h1_req_complete(r);
        return 0;
    }
    if (write_head(r, status, ctype, (int64_t)len) < 0) {
        conn_close(r->conn);
        return -ENOMEM;
    }
    if (len && status_has_body(status) && !(r->flags & R_HEAD) &&
        out_append(r->conn, body, len) < 0) {
        conn_close(r->conn);
        return -ENOMEM;
    }
    conn_mark_dirty(r->conn);
    h1_req_complete(r);
    return 0;
}

int rh_resp_start(rh_req *r, int status, const char *ctype)
{
    if (r->lent)
        return -ENOTSUP; /* stream from the ring (done callback), not from a pool thread */
    if (r->flags & R_RESP_STARTED)
        return -EALREADY;
    if (!r->conn) {
        r->flags |= R_RESP_STARTED;
        return 0;
    }
    int ret = write_head(r, status, ctype, -1);
    if (ret == 0)
        conn_mark_dirty(r->conn);
    return ret;
}

int rh_resp_write(rh_req *r, const void *data, size_t len)
{
    if (!(r->flags & R_RESP_STARTED))
        return -EINVAL;
    if (!r->conn || len == 0 || (r->flags & R_HEAD))
        return 0;
    struct rh_conn *c = r->conn;
    if (len > RH_OUT_MAX || conn_out_queued(c) + len > RH_OUT_MAX)
        return -ENOBUFS; /* the writer ignored RH_RESP_FULL: refuse rather than grow */
    if (r->flags & R_RESP_CHUNKED) {
        char hex[20];
        size_t n = 0;
        for (size_t v = len; v; v >>= 4)
            n++;
        for (size_t i = 0, v = len; i < n; i++, v >>= 4)
            hex[n - 1 - i] = "0123456789abcdef"[v & 15];
        hex[n++] = '\r';
        hex[n++] = '\n';
        if (out_append(c, hex, n) < 0 || out_append(c, data, len) < 0 ||
            out_append(c, "\r\n", 2) < 0)
            return -ENOMEM;
    } else if (out_append(c, data, len) < 0) {
        return -ENOMEM;
    }
    r->resp_body_bytes += len;
    conn_mark_dirty(c);
    return conn_out_queued(c) >= RH_OUT_HIGH ? RH_RESP_FULL : 0;
}

/* ---- streaming back-pressure: a writer waiting for room is a body source ---- */

/* Both ops wake the writer at the next flush, in order with the others and outside the
 * completion that found the room: proceed (there is room, or the output drained) calls it
 * with 0; stop (the client left, r->conn is NULL) with -ECONNRESET, and the writer ends the
 * response itself (rh_resp_end), which ends r. */
static void stream_wake(struct rh_req *r, void *self)
{
    (void)self;
    h1_resp_writable_ready(r);
}

static const struct h1_body_ops stream_ops = {.proceed = stream_wake, .stop = stream_wake};

int rh_resp_on_writable(rh_req *r, rh_writable_fn fn, void *udata)
{
    if (r->lent)
        return -ENOTSUP;
    if (!(r->flags & R_RESP_STARTED) || !fn)
        return -EINVAL;
    if (!r->conn)
        return -ECONNRESET;
    if (r->body_src.ops && r->body_src.ops != &stream_ops)
        return -EBUSY; /* another source sends this body (a file) */
    r->on_writable = fn;
    r->writable_udata = udata;
    h1_body_attach(r, &stream_ops, NULL); /* until the writer is called or cancelled */
    if (conn_out_queued(r->conn) <= RH_OUT_LOW)
        h1_resp_writable_ready(r); /* room already: at the next flush, outside this handler */
    return 0;
}

void h1_resp_writable_ready(struct rh_req *r)
{
    struct rh_worker *w = r->w;
    if (r->flags & R_WRITABLE_QUEUED)
        return;
    r->flags |= R_WRITABLE_QUEUED;
    r->writable_next = NULL;
    if (w->writable_tail)
        w->writable_tail->writable_next = r;
    else
        w->writable_head = r;
    w->writable_tail = r;
}

/* The writer waits no more: the stream's body source is detached. */
static void writable_detach(struct rh_req *r)
{
    r->on_writable = NULL;
    if (r->body_src.ops == &stream_ops)
        r->body_src.ops = NULL;
}

void h1_resp_writable_cancel(struct rh_req *r)
{
    writable_detach(r);
    if (!(r->flags & R_WRITABLE_QUEUED))
        return;
    struct rh_worker *w = r->w;
    struct rh_req *prev = NULL;
    for (struct rh_req *q = w->writable_head; q; prev = q, q = q->writable_next) {
        if (q != r)
            continue;
        if (prev)
            prev->writable_next = r->writable_next;
        else
            w->writable_head = r->writable_next;
        if (w->writable_tail == r)
            w->writable_tail = prev;
        break;
    }
    r->flags &= ~R_WRITABLE_QUEUED;
}

/* Runs the queued callbacks, including those a callback queues again while there is room
 * (the flush below sends what they wrote). A bound per flush keeps a writer that only
 * re-registers from holding the ring: the rest run at the next flush. */
void h1_resp_run_writable(struct rh_worker *w)
{
    for (unsigned budget = 1024; w->writable_head && budget > 0; budget--) {
        struct rh_req *r = w->writable_head;
        w->writable_head = r->writable_next;
        if (!w->writable_head)
            w->writable_tail = NULL;
        r->flags &= ~R_WRITABLE_QUEUED;
        rh_writable_fn fn = r->on_writable;
        writable_detach(r);
        if (fn) {
            struct rh_ctx *prev = h1_req_enter(r);
            fn(r, r->conn ? 0 : -ECONNRESET, r->writable_udata);
            h1_req_leave(r, prev);
        }
    }
}

int rh_resp_end(rh_req *r)
{
    if (!(r->flags & R_RESP_STARTED))
        return -EINVAL;
    if (r->conn && (r->flags & R_RESP_CHUNKED) && !(r->flags & R_HEAD))
        out_append(r->conn, "0\r\n\r\n", 5);
    if (r->conn)
        conn_mark_dirty(r->conn);
    h1_req_complete(r);
    return 0;
}

bool rh_resp_started(const rh_req *r)
{
    return (r->flags & R_RESP_STARTED) || (r->lent && r->captured);
}

int h1_resp_error_keepalive(struct rh_req *r, int status)
{
    const char *reason = rh_status_reason(status);
    if (status == 503)
        rh_resp_header(r, "Retry-After", "1");
    if (r->w->srv->hooks->error(r, status, NULL))
        return 0;
    return rh_respond(r, status, "text/plain", reason, strlen(reason));
}

void h1_mw_run_after(struct rh_req *r, int status)
{
    const struct rh_server *srv = r->w->srv;
    bool early = r->mw_pos == 0; /* rejected before the chain ran (parse error, limit) */
    srv->hooks->route_after(r, status); /* scoped middleware (app.c) is inside the global chain */
    for (int i = early ? (int)srv->nmw - 1 : (int)r->mw_ran - 1; i >= 0; i--) {
        const rh_middleware *mw = &srv->mw[i];
        if (mw->after && (!early || (mw->flags & RH_MW_ALL_RESPONSES)))
            mw->after(r, status, mw->udata);
    }
}

/* The connection fails with status (conn_proto.on_fail): an error page if no answer has
 * started. Not in request.c: the fuzzer wraps h1_req_acquire, which wraps calls from other
 * objects only. */
int h1_resp_fail(struct rh_conn *c, int status)
{
    struct rh_req *r = c->req;
    if (!r)
        r = c->req = h1_req_acquire(c->w, c);
    if (r->flags & R_RESP_STARTED)
        return -EALREADY;
    return h1_resp_error(r, status);
}

/* A small error page; the connection closes after it (the input can't be trusted). */
int h1_resp_error(struct rh_req *r, int status)
{
    char body[96];
    const char *reason = rh_status_reason(status);
    size_t n = strlen(reason);
    if (n > sizeof(body) - 2)
        n = sizeof(body) - 2;
    memcpy(body, reason, n);
    body[n++] = '\n';
    r->flags &= ~R_KEEP_ALIVE;
    r->xhdr_len = 0;
    if (status == 503)
        rh_resp_header(r, "Retry-After", "1");
    if (r->w->srv->hooks->error(r, status, NULL))
        return 0;
    return rh_respond(r, status, "text/plain", body, n);
}
