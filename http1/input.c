/* The connection's input, acted on: the parser (parse.c) returns events, and this file does
 * what each one asks of the connection: a request is taken from the pool when one begins,
 * its head and body are stored in it, the header and body deadlines are armed, 100 Continue
 * is sent, and the complete request is dispatched. One request at a time: dispatching pauses
 * the connection (C_PAUSED) until it is answered, which keeps pipelined answers in order. */
#include <errno.h>
#include <mimalloc.h>
#include <string.h>

#include "http1/http1.h"
#include "http1/parse.h"
#include "conn/conn.h"

/* The parser lives in the connection's slot, in the room the transport keeps for the
 * protocol without knowing its type. */
_Static_assert(sizeof(struct h1_parser) <= RH_CONN_PROTO_STATE,
               "rh_conn.proto_state too small");
_Static_assert(_Alignof(struct h1_parser) <= 8, "rh_conn.proto_state under-aligned");

static struct h1_parser *conn_parser(struct rh_conn *c)
{
    return (struct h1_parser *)(void *)c->proto_state;
}

/* conn_proto.on_open: a fresh parser, with the server's limits, for a new connection. */
void h1_input_open(struct rh_conn *c)
{
    h1_parser_init(conn_parser(c), &c->w->srv->cfg);
}

/* A request begins at c->in_off: its head is read into a request from the pool. */
static void on_begin(struct rh_conn *c)
{
    if (!c->req)
        c->req = h1_req_acquire(c->w, c);
    struct rh_req *r = c->req;
    r->base = c->in + c->in_off;
    h1_parser_set_head(conn_parser(c), r->headers);
    c->phase = PH_HEAD;
    if (c->requests > 0) /* first request: the accept armed the header timer already */
        conn_arm_phase_deadline(c, c->w->srv->cfg.header_timeout_ms);
}

/* The head as far as read, for an answer given before it is complete (a limit, a header
 * timeout): the error page and its hooks see the method and target read so far. */
static void keep_partial_head(struct rh_req *r, const struct h1_head *h)
{
    if (!r || (r->flags & R_HEADERS_DONE))
        return;
    r->method = h->method;
    r->url = h->url;
    r->nheaders = h->nheaders;
}

/* The client waits for it before sending the body (RFC 9110 10.1.1). */
static void send_continue(struct rh_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    h1_resp_write_raw(c, cont, sizeof(cont) - 1);
}

/* The head is complete. Returns true if a body follows (read from the next call on, so
 * the connection looks at its output and held input between the head and the body). */
static bool on_head(struct rh_conn *c, const struct h1_head *h)
{
    struct rh_req *r = c->req;
    r->method = h->method;
    r->url = h->url;
    r->path_len = h->path_len;
    r->nheaders = h->nheaders;
    r->method_id = h->method_id;
    r->http_minor = h->http_minor;
    r->content_length = h->content_length;
    r->flags |= R_HEADERS_DONE | (h->keep_alive ? R_KEEP_ALIVE : 0) |
                (h->method_id == HTTP_HEAD ? R_HEAD : 0) | (h->chunked ? R_CHUNKED : 0) |
                (h->expect_continue ? R_EXPECT_CONTINUE : 0);
    if (!h->chunked && h->content_length == 0)
        return false;
    c->phase = PH_BODY;
    conn_arm_phase_deadline(c, c->w->srv->cfg.body_timeout_ms);
    if (h->expect_continue && h->http_minor == 1)
        send_continue(c);
    return true;
}

/* Room for need bytes of body in r->body_buf, at most max. 0 or -ENOMEM. */
static int body_grow(struct rh_req *r, size_t need, size_t max)
{
    if (need <= r->body_cap)
        return 0;
    size_t cap = r->body_cap ? r->body_cap : 4096;
    if (r->content_length && r->content_length <= max)
        cap = r->content_length; /* known size: one allocation */
    while (cap < need)
        cap *= 2;
    if (cap > max)
        cap = max;
    char *nb = mi_realloc(r->body_buf, cap); /* owner: the request; freed in h1_req_end */
    if (!nb)
        return -ENOMEM;
    r->body_buf = nb;
    r->body_cap = cap;
    return 0;
}

/* Body bytes in: the whole body in one piece stays where it is (no copy). Returns 0 or an
 * HTTP status. */
static int on_body(struct rh_req *r, const char *at, size_t len, size_t max)
{
    if (r->body_len + len > max)
        return 413;
    if (r->body_len == 0 && !(r->flags & R_CHUNKED) && len == r->content_length &&
        !r->head_copy) {
        r->body_inline = (struct rh_slice){(uint32_t)(at - r->base), (uint32_t)len};
        r->flags |= R_BODY_INLINE;
        r->body_len = len;
        return 0;
    }
    if (body_grow(r, r->body_len + len, max) < 0)
        return 503;
    memcpy(r->body_buf + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

/* Parses from c->in_off and acts on the events, up to the end of the input, a head with a
 * body, or a dispatched request. Returns 0, or an HTTP status to fail the connection with
 * (then every byte is consumed: nothing after an error is trusted). */
int h1_input_execute(struct rh_conn *c)
{
    struct h1_event_data ev;
    for (;;) {
        size_t used;
        enum h1_event e = h1_parse_next(conn_parser(c), c->in + c->in_off, c->in_len - c->in_off,
                                        &used, &ev);
        c->in_off += (uint32_t)used;
        switch (e) {
        case H1_MESSAGE_BEGIN:
            on_begin(c);
            break;
        case H1_HEAD_COMPLETE:
            if (on_head(c, &ev.head))
                return 0;
            break;
        case H1_BODY_DATA: {
            int status = on_body(c->req, ev.body, ev.body_len, c->w->srv->cfg.max_body);
            if (status) {
                c->in_off = c->in_len;
                return status;
            }
            break;
        }
        case H1_MESSAGE_COMPLETE:
            h1_req_dispatch(c->req);
            return 0;
        case H1_ERROR:
            keep_partial_head(c->req, &ev.head);
            return ev.status;
        case H1_NEED_MORE:
        default:
            keep_partial_head(c->req, &ev.head);
            return 0;
        }
    }
}
