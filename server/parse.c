/* llhttp glue: callbacks record the request as slices of the connection's input buffer (no
 * per-header allocation), enforce the limits, and pause the parser at each head's end; the
 * body is read by body.c and the handler runs outside llhttp. Before llhttp sees a head's
 * bytes, their line structure is checked here (llhttp 8.1.0 takes a CR followed by any byte
 * as a line end in places, and folds continuation lines into Content-Length). Errors
 * become HTTP statuses here and nowhere else. */
#include <errno.h>
#include <mimalloc.h>
#include <string.h>
#include <strings.h>

#include "server/internal.h"

static struct rh_conn *conn_of_parser(llhttp_t *p) { return p->data; }

static int fail(struct rh_req *r, int status)
{
    r->err_status = status;
    return HPE_USER;
}

/* The offset of `at` in the request, fixing the base on the first byte we see. */
static uint32_t req_off(struct rh_req *r, const char *at)
{
    if (!r->base)
        r->base = at;
    return (uint32_t)(at - r->base);
}

/* Spans may arrive in pieces (a recv boundary); pieces are contiguous in the buffer. */
static void span_extend(struct rh_req *r, struct rh_slice *s, const char *at, size_t len)
{
    if (s->len == 0)
        s->off = req_off(r, at);
    s->len += (uint32_t)len;
}

static int on_message_begin(llhttp_t *p)
{
    struct rh_conn *c = conn_of_parser(p);
    if (!c->req)
        c->req = req_acquire(c->w, c);
    c->phase = PH_HEAD;
    if (c->requests > 0) /* first request: the accept armed the header timer already */
        conn_arm_phase_deadline(c, c->w->srv->cfg.header_timeout_ms);
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    struct rh_req *r = conn_of_parser(p)->req;
    span_extend(r, &r->method, at, len);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct rh_conn *c = conn_of_parser(p);
    struct rh_req *r = c->req;
    span_extend(r, &r->url, at, len);
    return r->url.len > c->w->srv->cfg.max_uri ? fail(r, 414) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct rh_conn *c = conn_of_parser(p);
    struct rh_req *r = c->req;
    if (!(r->flags & R_FIELD_OPEN)) {
        if (r->nheaders >= c->w->srv->cfg.max_headers)
            return fail(r, 431);
        r->headers[r->nheaders] = (struct rh_hdr){{0, 0}, {0, 0}};
        r->flags |= R_FIELD_OPEN;
    }
    span_extend(r, &r->headers[r->nheaders].name, at, len);
    return 0;
}

/* llhttp 8.1.0 lets through names with spaces ("X Y", "X "), and empty names: a proxy in
 * front of us may read those differently, so they are refused (RFC 9112 5.1). */
static bool valid_name(const char *s, uint32_t len)
{
    if (len == 0)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (!parse_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct rh_req *r = conn_of_parser(p)->req;
    struct rh_hdr *h = &r->headers[r->nheaders];
    if (!valid_name(req_ptr(r, h->name), h->name.len))
        return fail(r, 400);
    r->flags = (r->flags & ~R_FIELD_OPEN) | R_VALUE_OPEN;
    return 0;
}

/* No line folding (obs-fold shows up as CR LF inside the value) and no control bytes but
 * HTAB: RFC 9112 5.2 lets a server reject folding with 400, which is the safe answer. */
static bool valid_value(const char *s, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

/* We decode chunked and nothing else: any other coding is 501, not a body passed on
 * still encoded. (A Transfer-Encoding header makes the body chunked whatever llhttp made
 * of its value: see on_headers_complete.) */
static bool only_chunked(const char *v, uint32_t len)
{
    return len == 7 && strncasecmp(v, "chunked", 7) == 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct rh_req *r = conn_of_parser(p)->req;
    span_extend(r, &r->headers[r->nheaders].value, at, len);
    return 0;
}

static bool name_is(const struct rh_req *r, struct rh_slice s, const char *name, size_t n)
{
    return s.len == n && strncasecmp(req_ptr(r, s), name, n) == 0;
}

static bool is_reg_name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("-._~%!$&'()*+,;=", ch));
}

static bool is_ip6_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') ||
           ch == ':' || ch == '.';
}

/* Host = uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2): a reg-name or an IP literal
 * in brackets, then digits. No '/', space, '@' or path: a handler or a proxy behind us may
 * build URLs or paths from it. Empty labels ("a..b") are refused too, as nginx does. The
 * empty value RFC 9112 allows stays allowed. */
static bool valid_host(const char *s, uint32_t len)
{
    uint32_t i = 0;
    if (len && s[0] == '[') { /* an IPv6 address (no IPvFuture, no zone) */
        for (i = 1; i < len && s[i] != ']'; i++)
            if (!is_ip6_char((unsigned char)s[i]))
                return false;
        if (i == len || !memchr(s + 1, ':', i - 1))
            return false;
        i++;
    } else {
        for (; i < len && s[i] != ':'; i++)
            if (!is_reg_name_char((unsigned char)s[i]) || (s[i] == '.' && i && s[i - 1] == '.'))
                return false;
    }
    if (i < len && s[i++] != ':')
        return false;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct rh_req *r = conn_of_parser(p)->req;
    struct rh_hdr *h = &r->headers[r->nheaders];
    const char *v = req_ptr(r, h->value);
    while (h->value.len && (v[h->value.len - 1] == ' ' || v[h->value.len - 1] == '\t'))
        h->value.len--; /* llhttp drops leading whitespace, not trailing */
    if (!valid_value(v, h->value.len))
        return fail(r, 400);
    if (name_is(r, h->name, "transfer-encoding", 17)) {
        if (p->http_minor == 0) /* RFC 9112 6.1: the framing of a 1.0 message is unsure */
            return fail(r, 400);
        if (!only_chunked(v, h->value.len))
            return fail(r, 501);
    }
    if (name_is(r, h->name, "host", 4)) {
        if (!valid_host(v, h->value.len))
            return fail(r, 400);
        r->host_count++;
    } else if (name_is(r, h->name, "expect", 6)) {
        if (h->value.len == 12 && strncasecmp(v, "100-continue", 12) == 0)
            r->flags |= R_EXPECT_CONTINUE;
        else
            return fail(r, 417);
    }
    r->flags &= ~R_VALUE_OPEN;
    r->nheaders++;
    return 0;
}

/* Methods we serve; llhttp knows many more (WebDAV, RTSP...) that we answer 501. */
static bool method_supported(uint8_t m)
{
    switch (m) {
    case HTTP_GET: case HTTP_HEAD: case HTTP_POST: case HTTP_PUT:
    case HTTP_DELETE: case HTTP_PATCH: case HTTP_OPTIONS:
        return true;
    default:
        return false;
    }
}

/* A second Transfer-Encoding field: llhttp refuses it only when the first said chunked in
 * a form it recognises ("chunked\t" it does not), so count them ourselves. */
static unsigned count_te(const struct rh_req *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->nheaders; i++)
        n += name_is(r, r->headers[i].name, "transfer-encoding", 17);
    return n;
}

static int check_head(struct rh_conn *c, struct rh_req *r, llhttp_t *p)
{
    const rh_config *cfg = &c->w->srv->cfg;
    uint32_t head_end = r->nheaders ? r->headers[r->nheaders - 1].value.off +
                                          r->headers[r->nheaders - 1].value.len
                                    : r->url.off + r->url.len;
    if (head_end > cfg->max_header_size) /* arrived whole, so the size check missed it */
        return 431;
    if (p->http_major != 1)
        return 505;
    if (!method_supported(p->method))
        return 501;
    if (p->http_minor == 1 && r->host_count != 1)
        return 400;
    if (r->host_count > 1)
        return 400;
    if ((p->flags & F_TRANSFER_ENCODING) && (p->http_minor == 0 || count_te(r) > 1))
        return 400;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->max_body)
        return 413;
    return 0;
}

/* The path is the target up to '?'. An absolute-form target ("http://host/p?q", which
 * servers must accept) is narrowed to its path: the url slice then starts at the path. */
static void locate_path(struct rh_req *r)
{
    const char *u = req_ptr(r, r->url);
    size_t skip = 0;
    if (r->url.len > 7 && strncasecmp(u, "http://", 7) == 0)
        skip = 7;
    else if (r->url.len > 8 && strncasecmp(u, "https://", 8) == 0)
        skip = 8;
    if (skip) {
        const char *slash = memchr(u + skip, '/', r->url.len - skip);
        size_t cut = slash ? (size_t)(slash - u) : r->url.len;
        r->url.off += (uint32_t)cut;
        r->url.len -= (uint32_t)cut;
        u += cut;
    }
    const char *q = memchr(u, '?', r->url.len);
    r->path_len = q ? (uint32_t)(q - u) : r->url.len;
}

static void send_continue(struct rh_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    resp_write_raw(c, cont, sizeof(cont) - 1);
}

static int on_headers_complete(llhttp_t *p)
{
    struct rh_conn *c = conn_of_parser(p);
    struct rh_req *r = c->req;
    int status = check_head(c, r, p);
    if (status)
        return fail(r, status);
    p->upgrade = 0; /* no protocol switches: an Upgrade request is served as plain HTTP */
    r->flags |= R_HEADERS_DONE;
    r->method_id = p->method;
    r->http_minor = p->http_minor;
    if (p->method == HTTP_HEAD)
        r->flags |= R_HEAD;
    if (p->flags & F_TRANSFER_ENCODING) /* its value was checked: chunked, nothing else */
        r->flags |= R_CHUNKED;
    r->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    locate_path(r);
    bool has_body = (r->flags & R_CHUNKED) || r->content_length > 0;
    if (has_body) {
        c->phase = PH_BODY;
        conn_arm_phase_deadline(c, c->w->srv->cfg.body_timeout_ms);
        if ((r->flags & R_EXPECT_CONTINUE) && r->http_minor == 1)
            send_continue(c);
    }
    return 1; /* "no body" to llhttp: it stops here and body.c reads the body */
}

static int on_message_complete(llhttp_t *p)
{
    struct rh_req *r = conn_of_parser(p)->req;
    /* "close" anywhere in Connection wins: llhttp keeps a 1.0 connection that also says
     * keep-alive ("keep-alive, close") */
    if (llhttp_should_keep_alive(p) && !(p->flags & F_CONNECTION_CLOSE))
        r->flags |= R_KEEP_ALIVE;
    return HPE_PAUSED; /* the handler runs outside llhttp: see parse_execute */
}

static llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void parse_conn_init(struct rh_conn *c)
{
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
}

static const char *skip_while(const char *q, const char *end, bool (*ok)(unsigned char))
{
    while (q < end && ok((unsigned char)*q))
        q++;
    return q;
}

static bool is_target_char(unsigned char ch) { return ch > ' ' && ch < 127; }
static bool is_digit(unsigned char ch) { return ch >= '0' && ch <= '9'; }

/* An unknown method in a well-formed request line ("BREW /pot HTTP/1.1") gets 501; anything
 * else gets 400. llhttp stops at the first byte no method it knows can have, so the line is
 * checked here: TOKEN SP target SP HTTP/d.d CRLF, all of it already received. */
static int status_for_bad_method(const char *start, const char *end)
{
    const char *q = skip_while(start, end, parse_is_tchar);
    if (q == start || q == end || *q++ != ' ')
        return 400;
    const char *t = skip_while(q, end, is_target_char);
    if (t == q || end - t < 11 || memcmp(t, " HTTP/", 6) != 0)
        return 400;
    t += 6;
    bool version = is_digit((unsigned char)t[0]) && t[1] == '.' && is_digit((unsigned char)t[2]);
    return version && t[3] == '\r' && t[4] == '\n' ? 501 : 400;
}

int parse_error_status(struct rh_conn *c, int err)
{
    struct rh_req *r = c->req;
    if (r && r->err_status)
        return r->err_status;
    switch (err) {
    case HPE_INVALID_METHOD: {
        const char *start = r && r->base ? r->base : c->in + c->in_off;
        return status_for_bad_method(start, c->in + c->in_len);
    }
    case HPE_INVALID_VERSION:
        return 505;
    case HPE_INVALID_TRANSFER_ENCODING: /* chunked not last: the length is unknowable */
        return 400;
    default:
        return 400;
    }
}

/* The head must fit: past max_header_size it is 431, or 414 while still in the URI. */
static int check_head_size(struct rh_conn *c)
{
    struct rh_req *r = c->req;
    if (!r || !r->base || (r->flags & R_HEADERS_DONE))
        return 0;
    size_t seen = (size_t)(c->in + c->in_off - r->base);
    if (seen <= c->w->srv->cfg.max_header_size)
        return 0;
    return r->nheaders == 0 && !(r->flags & R_FIELD_OPEN) ? 414 : 431;
}

/* What the next byte of a head must be, between llhttp calls (c->head_scan). */
enum {
    HS_CR = 1, /* the last byte was CR: LF must follow */
    HS_LF = 2, /* a CRLF just ended a line: no SP or HTAB may follow */
};

/* Checks a head's line structure before llhttp sees it: a CR must be followed by LF, and no
 * line may start with SP or HTAB (obs-fold, RFC 9112 5.2, refused everywhere: llhttp would
 * apply a folded Content-Length). Returns how many bytes may go to llhttp: up to the first
 * bad byte (*bad), or up to the first empty line (the head's end in the usual case; llhttp
 * decides where the head really ends, and bytes past its end are the body's), or all. A
 * bare LF is left to llhttp, which refuses it anywhere a fold could follow. */
static size_t head_scan(uint8_t *state, const char *p, size_t n, bool *bad)
{
    size_t i = 0;
    if (n && *state == HS_CR) {
        if (p[0] != '\n')
            goto refuse;
        i = 1;
        *state = HS_LF;
    }
    if (i < n && *state == HS_LF && (p[i] == ' ' || p[i] == '\t'))
        goto refuse;
    *state = 0;
    while (i < n) {
        const char *cr = memchr(p + i, '\r', n - i);
        if (!cr)
            return n;
        size_t k = (size_t)(cr - p);
        if (k + 1 == n) {
            *state = HS_CR;
            return n;
        }
        i = k + 1;
        if (p[i] != '\n')
            goto refuse;
        if (++i == n) {
            *state = HS_LF;
            return n;
        }
        if (p[i] == ' ' || p[i] == '\t')
            goto refuse;
        if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
            return i + 2; /* an empty line */
    }
    return n;
refuse:
    *bad = true;
    return i;
}

/* The head is in: read its body (body.c, from the next parse_execute on), or run the
 * handler now. */
static void head_done(struct rh_conn *c)
{
    struct rh_req *r = c->req;
    if ((r->flags & R_CHUNKED) || r->content_length > 0)
        body_begin(r);
    else
        req_dispatch(r);
}

static int body_execute(struct rh_conn *c)
{
    bool done = false;
    int status = body_read(c, &done);
    if (status) {
        c->in_off = c->in_len; /* nothing after a framing error is trusted */
        return status;
    }
    if (done)
        req_dispatch(c->req);
    return 0;
}

/* Parses from c->in_off. Returns 0, or an HTTP status to fail the connection with. Runs the
 * handler when a request is complete: llhttp pauses at each head's end, body.c reads the
 * body. */
int parse_execute(struct rh_conn *c)
{
    if (c->req && c->req->framing.state)
        return body_execute(c);
    const char *start = c->in + c->in_off;
    bool bad = false;
    size_t len = head_scan(&c->head_scan, start, c->in_len - c->in_off, &bad);
    llhttp_errno_t err = llhttp_execute(&c->parser, start, len);
    if (err == HPE_OK) {
        c->in_off += (uint32_t)len;
        int status = check_head_size(c);
        if (status)
            return status;
        if (bad) { /* inside the head: llhttp did not stop before the bad byte */
            c->in_off = c->in_len;
            return 400;
        }
        return 0;
    }
    if (err == HPE_PAUSED) {
        c->in_off += (uint32_t)(llhttp_get_error_pos(&c->parser) - start);
        llhttp_resume(&c->parser);
        c->head_scan = 0;
        head_done(c);
        return 0;
    }
    int status = parse_error_status(c, err);
    c->in_off = c->in_len; /* nothing after a parse error is trusted */
    return status;
}
