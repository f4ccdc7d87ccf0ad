/* The HTTP/1 request parser: llhttp glue that turns bytes into events (http1/parse.h) and
 * acts on none of them. Callbacks record the head as slices of the caller's bytes (no
 * per-header allocation), enforce the limits, and pause llhttp at each message's start (so
 * the caller can give the head a place) and end; the body is framed by body.c. Before
 * llhttp sees a head's bytes, their line structure is checked here (llhttp 8.1.0 takes a CR
 * followed by any byte as a line end in places, and folds continuation lines into
 * Content-Length). Errors become HTTP statuses here and nowhere else. */
#include <string.h>
#include <strings.h>

#include "http1/parse.h"

/* Where the parser stands (p->state). */
enum h1_state {
    S_IDLE,    /* between requests: llhttp skips empty lines, pauses at a request's start */
    S_HEAD,    /* a head is being read */
    S_NO_BODY, /* the head was returned, no body follows: MESSAGE_COMPLETE is next */
    S_BODY,    /* body.c reads the body */
    S_FAILED,  /* an error was returned: nothing more is parsed */
};

/* p->flags: the head being read. */
enum {
    H1F_FIELD_OPEN = 1u << 0,   /* inside a header name */
    H1F_VALUE_OPEN = 1u << 1,   /* inside a header value */
    H1F_EXPECT = 1u << 2,       /* Expect: 100-continue */
    H1F_KEEP_ALIVE = 1u << 3,   /* at the message's end: the connection may go on */
    H1F_COMPLETE = 1u << 4,     /* llhttp paused at the message's end (not its start) */
    H1F_AT_START = 1u << 5,     /* llhttp waits for a request (fresh, or after keep-alive) */
};

static struct h1_parser *parser_of(llhttp_t *ll) { return (struct h1_parser *)ll; }

static int fail(struct h1_parser *p, int status)
{
    p->status = (uint16_t)status;
    return HPE_USER;
}

/* Spans may arrive in pieces (a recv boundary); pieces are contiguous in the buffer. */
static void span_extend(struct h1_parser *p, struct rh_slice *s, const char *at, size_t len)
{
    if (s->len == 0)
        s->off = (uint32_t)(at - p->base);
    s->len += (uint32_t)len;
}

static const char *slice_ptr(const struct h1_parser *p, struct rh_slice s)
{
    return p->base + s.off;
}

/* A request starts: its head is read from scratch (the caller's storage comes next). */
static void begin_head(struct h1_parser *p)
{
    p->state = S_HEAD;
    p->flags = 0;
    p->method = p->url = (struct rh_slice){0, 0};
    p->nheaders = 0;
    p->host_count = 0;
    p->seen = 0;
    p->content_length = 0;
}

/* A request starts: a fresh head, and a pause so the caller can give it a place; unless
 * head_next saw it coming (begun_early) and returned MESSAGE_BEGIN before calling llhttp. */
static int on_message_begin(llhttp_t *ll)
{
    struct h1_parser *p = parser_of(ll);
    if (p->state == S_HEAD)
        return 0;
    begin_head(p);
    return HPE_PAUSED;
}

static int on_method(llhttp_t *ll, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(ll);
    span_extend(p, &p->method, at, len);
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(ll);
    span_extend(p, &p->url, at, len);
    return p->url.len > p->cfg->max_uri ? fail(p, 414) : 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(ll);
    if (!(p->flags & H1F_FIELD_OPEN)) {
        if (p->nheaders >= p->cfg->max_headers)
            return fail(p, 431);
        p->hdrs[p->nheaders] = (struct rh_hdr){{0, 0}, {0, 0}};
        p->flags |= H1F_FIELD_OPEN;
    }
    span_extend(p, &p->hdrs[p->nheaders].name, at, len);
    return 0;
}

/* llhttp 8.1.0 lets through names with spaces ("X Y", "X "), and empty names: a proxy in
 * front of us may read those differently, so they are refused (RFC 9112 5.1). */
static bool valid_name(const char *s, uint32_t len)
{
    if (len == 0)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (!h1_parse_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static int on_header_field_complete(llhttp_t *ll)
{
    struct h1_parser *p = parser_of(ll);
    struct rh_hdr *h = &p->hdrs[p->nheaders];
    if (!valid_name(slice_ptr(p, h->name), h->name.len))
        return fail(p, 400);
    p->flags = (uint8_t)((p->flags & ~H1F_FIELD_OPEN) | H1F_VALUE_OPEN);
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

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(ll);
    span_extend(p, &p->hdrs[p->nheaders].value, at, len);
    return 0;
}

static bool name_is(const struct h1_parser *p, struct rh_slice s, const char *name, size_t n)
{
    return s.len == n && strncasecmp(slice_ptr(p, s), name, n) == 0;
}

static bool is_reg_name_char(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    switch (ch) { /* unreserved, pct-encoded's '%', sub-delims (RFC 3986 3.2.2) */
    case '-': case '.': case '_': case '~': case '%': case '!': case '$': case '&':
    case '\'': case '(': case ')': case '*': case '+': case ',': case ';': case '=':
        return true;
    default:
        return false;
    }
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

static int on_header_value_complete(llhttp_t *ll)
{
    struct h1_parser *p = parser_of(ll);
    struct rh_hdr *h = &p->hdrs[p->nheaders];
    const char *v = slice_ptr(p, h->value);
    while (h->value.len && (v[h->value.len - 1] == ' ' || v[h->value.len - 1] == '\t'))
        h->value.len--; /* llhttp drops leading whitespace, not trailing */
    if (!valid_value(v, h->value.len))
        return fail(p, 400);
    if (name_is(p, h->name, "transfer-encoding", 17)) {
        if (ll->http_minor == 0) /* RFC 9112 6.1: the framing of a 1.0 message is unsure */
            return fail(p, 400);
        if (!only_chunked(v, h->value.len))
            return fail(p, 501);
    }
    if (name_is(p, h->name, "host", 4)) {
        if (!valid_host(v, h->value.len))
            return fail(p, 400);
        p->host_count++;
    } else if (name_is(p, h->name, "expect", 6)) {
        if (h->value.len == 12 && strncasecmp(v, "100-continue", 12) == 0)
            p->flags |= H1F_EXPECT;
        else
            return fail(p, 417);
    }
    p->flags &= (uint8_t)~H1F_VALUE_OPEN;
    p->nheaders++;
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
static unsigned count_te(const struct h1_parser *p)
{
    unsigned n = 0;
    for (unsigned i = 0; i < p->nheaders; i++)
        n += name_is(p, p->hdrs[i].name, "transfer-encoding", 17);
    return n;
}

static int check_head(const struct h1_parser *p)
{
    const llhttp_t *ll = &p->ll;
    const rh_config *cfg = p->cfg;
    uint32_t head_end = p->nheaders ? p->hdrs[p->nheaders - 1].value.off +
                                          p->hdrs[p->nheaders - 1].value.len
                                    : p->url.off + p->url.len;
    if (head_end > cfg->max_header_size) /* arrived whole, so the size check missed it */
        return 431;
    if (ll->http_major != 1)
        return 505;
    if (!method_supported(ll->method))
        return 501;
    if (ll->http_minor == 1 && p->host_count != 1)
        return 400;
    if (p->host_count > 1)
        return 400;
    if ((ll->flags & F_TRANSFER_ENCODING) && (ll->http_minor == 0 || count_te(p) > 1))
        return 400;
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > cfg->max_body)
        return 413;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct h1_parser *p = parser_of(ll);
    int status = check_head(p);
    if (status)
        return fail(p, status);
    ll->upgrade = 0; /* no protocol switches: an Upgrade request is served as plain HTTP */
    p->content_length = (ll->flags & F_CONTENT_LENGTH) ? ll->content_length : 0;
    return 1; /* "no body" to llhttp: it stops here and body.c reads the body */
}

static int on_message_complete(llhttp_t *ll)
{
    struct h1_parser *p = parser_of(ll);
    /* "close" anywhere in Connection wins: llhttp keeps a 1.0 connection that also says
     * keep-alive ("keep-alive, close") */
    if (llhttp_should_keep_alive(ll) && !(ll->flags & F_CONNECTION_CLOSE))
        p->flags |= H1F_KEEP_ALIVE | H1F_AT_START;
    p->flags |= H1F_COMPLETE;
    return HPE_PAUSED; /* the caller acts on the head before anything further is parsed */
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

void h1_parser_init(struct h1_parser *p, const rh_config *cfg)
{
    memset(p, 0, sizeof(*p));
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->cfg = cfg;
    p->flags = H1F_AT_START;
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
    const char *q = skip_while(start, end, h1_parse_is_tchar);
    if (q == start || q == end || *q++ != ' ')
        return 400;
    const char *t = skip_while(q, end, is_target_char);
    if (t == q || end - t < 11 || memcmp(t, " HTTP/", 6) != 0)
        return 400;
    t += 6;
    bool version = is_digit((unsigned char)t[0]) && t[1] == '.' && is_digit((unsigned char)t[2]);
    return version && t[3] == '\r' && t[4] == '\n' ? 501 : 400;
}

/* The status for an llhttp error: a callback's, or one by llhttp's error code. A bad
 * method is judged on its whole request line: from the request's first byte (or from
 * `start` if none began) to `end`, the last byte received. */
static int error_status(const struct h1_parser *p, llhttp_errno_t err, const char *start,
                        const char *end)
{
    if (p->status)
        return p->status;
    switch (err) {
    case HPE_INVALID_METHOD:
        return status_for_bad_method(p->state == S_HEAD ? p->base : start, end);
    case HPE_INVALID_VERSION:
        return 505;
    case HPE_INVALID_TRANSFER_ENCODING: /* chunked not last: the length is unknowable */
        return 400;
    default:
        return 400;
    }
}

/* The head must fit: past max_header_size it is 431, or 414 while still in the URI. */
static int head_size_status(const struct h1_parser *p)
{
    if (p->state != S_HEAD || p->seen <= p->cfg->max_header_size)
        return 0;
    return p->nheaders == 0 && !(p->flags & H1F_FIELD_OPEN) ? 414 : 431;
}

/* What the next byte of a head must be, between llhttp calls (p->head_scan). */
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

/* The head as far as read (method, url, nheaders), or whole once complete. */
static void head_out(const struct h1_parser *p, struct h1_head *h)
{
    h->method = p->method;
    h->url = p->url;
    h->path_len = 0;
    h->nheaders = p->nheaders;
    h->method_id = 0;
    h->http_minor = 0;
    h->keep_alive = h->chunked = h->expect_continue = false;
    h->content_length = 0;
}

/* The path is the target up to '?'. An absolute-form target ("http://host/p?q", which
 * servers must accept) is narrowed to its path: the url slice then starts at the path. */
static void locate_path(const struct h1_parser *p, struct h1_head *h)
{
    const char *u = slice_ptr(p, h->url);
    size_t skip = 0;
    if (u[0] == '/') /* origin-form, the usual one: no scheme to look for */
        ;
    else if (h->url.len > 7 && strncasecmp(u, "http://", 7) == 0)
        skip = 7;
    else if (h->url.len > 8 && strncasecmp(u, "https://", 8) == 0)
        skip = 8;
    if (skip) {
        const char *slash = memchr(u + skip, '/', h->url.len - skip);
        size_t cut = slash ? (size_t)(slash - u) : h->url.len;
        h->url.off += (uint32_t)cut;
        h->url.len -= (uint32_t)cut;
        u += cut;
    }
    const char *q = memchr(u, '?', h->url.len);
    h->path_len = q ? (uint32_t)(q - u) : h->url.len;
}

/* llhttp paused at the message's end: the head is complete and checked. */
static enum h1_event head_complete(struct h1_parser *p, struct h1_event_data *out)
{
    const llhttp_t *ll = &p->ll;
    struct h1_head *h = &out->head;
    head_out(p, h);
    h->method_id = ll->method;
    h->http_minor = ll->http_minor;
    h->keep_alive = (p->flags & H1F_KEEP_ALIVE) != 0;
    h->chunked = (ll->flags & F_TRANSFER_ENCODING) != 0; /* its value was checked: chunked */
    h->expect_continue = (p->flags & H1F_EXPECT) != 0;
    h->content_length = p->content_length;
    locate_path(p, h);
    p->head_scan = 0; /* what follows is scanned afresh */
    p->scan_left = 0;
    p->scan_bad = false;
    if (h->chunked || h->content_length > 0) {
        h1_parse_body_begin(p, h->chunked);
        p->state = S_BODY;
    } else {
        p->state = S_NO_BODY;
    }
    return H1_HEAD_COMPLETE;
}

/* The error event, and the parser's last word: every later call repeats it. */
static enum h1_event failed(struct h1_parser *p, int status, size_t len, size_t *consumed,
                            struct h1_event_data *out)
{
    p->state = S_FAILED;
    p->status = (uint16_t)status;
    head_out(p, &out->head);
    out->status = status;
    *consumed = len; /* nothing after an error is trusted */
    return H1_ERROR;
}

/* How many bytes from buf llhttp may take next (see head_scan), and whether a bad byte
 * follows them; what a MESSAGE_BEGIN pause left of the last scan is used first. */
static size_t scan_next(struct h1_parser *p, const char *buf, size_t len, bool *bad)
{
    if (p->scan_left || p->scan_bad) {
        size_t n = p->scan_left < len ? p->scan_left : len;
        *bad = p->scan_bad;
        p->scan_left = 0;
        p->scan_bad = false;
        return n;
    }
    *bad = false;
    return head_scan(&p->head_scan, buf, len, bad);
}

/* The usual case between requests: the next byte starts one (it is no empty line's, and
 * llhttp waits for a request, so it will call on_message_begin there). MESSAGE_BEGIN is
 * returned before llhttp runs, which saves it a pause and a second call per request. */
static bool begun_early(struct h1_parser *p, const char *buf, size_t len)
{
    if (p->state != S_IDLE || !(p->flags & H1F_AT_START) || p->head_scan || p->scan_left ||
        p->scan_bad || len == 0 || buf[0] == '\r' || buf[0] == '\n')
        return false;
    begin_head(p);
    return true;
}

/* Between requests or in a head: llhttp up to its next pause, error, or the end of buf.
 * Not inlined: h1_parse_next's other paths stay a few instructions each. */
__attribute__((noinline)) static enum h1_event head_next(struct h1_parser *p, const char *buf,
                                                          size_t len, size_t *consumed,
                                                          struct h1_event_data *out)
{
    size_t off = 0;
    p->base = buf - p->seen; /* the request's first byte (S_IDLE: seen is 0) */
    for (;;) {
        bool bad;
        const char *start = buf + off;
        size_t n = scan_next(p, start, len - off, &bad);
        llhttp_errno_t err = llhttp_execute(&p->ll, start, n);
        if (err == HPE_PAUSED) {
            size_t used = (size_t)(llhttp_get_error_pos(&p->ll) - start);
            llhttp_resume(&p->ll);
            *consumed = off + used;
            if (p->flags & H1F_COMPLETE)
                return head_complete(p, out);
            p->scan_left = (uint32_t)(n - used); /* MESSAGE_BEGIN: the scan goes on after */
            p->scan_bad = bad;
            return H1_MESSAGE_BEGIN;
        }
        if (err != HPE_OK)
            return failed(p, error_status(p, err, start, buf + len), len, consumed, out);
        off += n;
        if (p->state == S_HEAD)
            p->seen += (uint32_t)n;
        int status = head_size_status(p);
        if (status)
            return failed(p, status, len, consumed, out);
        if (bad) /* inside the head: llhttp did not stop before the bad byte */
            return failed(p, 400, len, consumed, out);
        if (off == len) {
            *consumed = len;
            head_out(p, &out->head);
            return H1_NEED_MORE;
        }
    }
}

enum h1_event h1_parse_next(struct h1_parser *p, const char *buf, size_t len, size_t *consumed,
                            struct h1_event_data *out)
{
    enum h1_event ev;
    switch (p->state) {
    case S_NO_BODY:
        *consumed = 0;
        p->state = S_IDLE;
        return H1_MESSAGE_COMPLETE;
    case S_BODY:
        ev = h1_parse_body_next(p, buf, len, consumed, out);
        if (ev == H1_MESSAGE_COMPLETE)
            p->state = S_IDLE;
        else if (ev == H1_ERROR)
            return failed(p, out->status, len, consumed, out);
        return ev;
    case S_FAILED:
        return failed(p, p->status, len, consumed, out);
    case S_IDLE:
        if (begun_early(p, buf, len)) {
            *consumed = 0;
            return H1_MESSAGE_BEGIN;
        }
        return head_next(p, buf, len, consumed, out);
    default:
        return head_next(p, buf, len, consumed, out);
    }
}
