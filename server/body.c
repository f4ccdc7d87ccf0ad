/* Request bodies: Content-Length and chunked framing are read here, not by llhttp. llhttp
 * 8.1.0 reads chunked framing leniently (a CR followed by any byte ends a size line; the
 * two bytes after chunk data are skipped unchecked; valued chunk extensions are refused),
 * which lets a request hide inside another's body. So parse.c has llhttp stop after each
 * head, and the body's framing is checked byte by byte here (RFC 9112 6.3, 7.1): any
 * violation is 400 and the connection closes, as nothing after it can be trusted. */
#include <errno.h>
#include <mimalloc.h>
#include <string.h>

#include "server/internal.h"

/* Where a chunked body's framing stands. 0 means no body is being read. */
enum {
    FR_NONE,
    FR_LENGTH,     /* Content-Length: framing.left bytes to come */
    FR_SIZE,       /* chunk size: hex digits */
    FR_SIZE_WS,    /* whitespace after the size (BWS): ';' or CR must follow */
    FR_EXT,        /* extensions (accepted and ignored) up to CR */
    FR_SIZE_LF,    /* CR seen at the end of the size line */
    FR_DATA,       /* chunk data: framing.left bytes to come */
    FR_DATA_CR,    /* chunk data done: CR LF must follow */
    FR_DATA_LF,
    FR_TRAILER,    /* at the start of a trailer line (or of the final CRLF) */
    FR_TRAILER_NAME,
    FR_TRAILER_VALUE,
    FR_TRAILER_LF,
    FR_END_LF,     /* CR of the final empty line seen */
};

/* A size line longer than this (extensions included) is refused: no client needs one, and
 * the bound keeps a trickled line from being read forever. */
#define CHUNK_LINE_MAX 4096u

void body_begin(struct rh_req *r)
{
    r->framing.line = 0;
    r->framing.left = r->content_length;
    r->framing.state = (r->flags & R_CHUNKED) ? FR_SIZE : FR_LENGTH;
}

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
    char *nb = mi_realloc(r->body_buf, cap); /* owner: the request; freed in req_end */
    if (!nb)
        return -ENOMEM;
    r->body_buf = nb;
    r->body_cap = cap;
    return 0;
}

/* Body bytes in: the whole body in one piece stays where it is (no copy). */
static int body_append(struct rh_req *r, const char *at, size_t len, size_t max)
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

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Field-value and extension bytes: VCHAR, SP, HTAB, obs-text; never CR, LF or controls. */
static bool is_text(unsigned char ch) { return ch == '\t' || (ch >= ' ' && ch != 0x7f); }

/* After the size's digits: BWS, then a chunk-ext (from ';') or the line's end. */
static int size_end_byte(struct rh_req *r, unsigned char ch)
{
    if (ch == '\r')
        r->framing.state = FR_SIZE_LF;
    else if (ch == ';')
        r->framing.state = FR_EXT;
    else if (ch == ' ' || ch == '\t')
        r->framing.state = FR_SIZE_WS;
    else
        return 400;
    return 0;
}

/* One byte of a size line. The size is checked against the limit as soon as it is known,
 * so an absurd size is refused at once rather than waited for. */
static int size_byte(struct rh_req *r, unsigned char ch, size_t max)
{
    int v = hex_value(ch);
    if (v >= 0) {
        if (r->framing.left > (UINT64_MAX >> 4))
            return 400; /* overflows 64 bits */
        r->framing.left = (r->framing.left << 4) | (uint64_t)v;
        return r->framing.left > max - r->body_len ? 413 : 0;
    }
    if (r->framing.line == 1) /* no digit before it */
        return 400;
    return size_end_byte(r, ch);
}

/* One byte of a trailer section: field lines, ignored, but framed like a head's. */
static int trailer_byte(struct rh_req *r, unsigned char ch, size_t max_head)
{
    if (++r->framing.line > max_head)
        return 431;
    switch (r->framing.state) {
    case FR_TRAILER:
        if (ch == '\r')
            r->framing.state = FR_END_LF;
        else if (parse_is_tchar(ch))
            r->framing.state = FR_TRAILER_NAME; /* a space here would be obs-fold: 400 */
        else
            return 400;
        return 0;
    case FR_TRAILER_NAME:
        if (ch == ':')
            r->framing.state = FR_TRAILER_VALUE;
        else if (!parse_is_tchar(ch))
            return 400;
        return 0;
    case FR_TRAILER_VALUE:
        if (ch == '\r')
            r->framing.state = FR_TRAILER_LF;
        else if (!is_text(ch))
            return 400;
        return 0;
    default: /* FR_TRAILER_LF */
        if (ch != '\n')
            return 400;
        r->framing.state = FR_TRAILER;
        return 0;
    }
}

/* One framing byte (anything but chunk data). Returns 0 or an HTTP status. */
static int framing_byte(struct rh_req *r, unsigned char ch, const rh_config *cfg)
{
    switch (r->framing.state) {
    case FR_SIZE:
        if (++r->framing.line > CHUNK_LINE_MAX)
            return 400;
        return size_byte(r, ch, cfg->max_body);
    case FR_SIZE_WS:
        if (++r->framing.line > CHUNK_LINE_MAX)
            return 400;
        return size_end_byte(r, ch);
    case FR_EXT:
        if (++r->framing.line > CHUNK_LINE_MAX)
            return 400;
        if (ch == '\r')
            r->framing.state = FR_SIZE_LF;
        else if (!is_text(ch))
            return 400;
        return 0;
    case FR_SIZE_LF:
        if (ch != '\n')
            return 400;
        r->framing.line = 0;
        r->framing.state = r->framing.left ? FR_DATA : FR_TRAILER;
        return 0;
    case FR_DATA_CR:
        if (ch != '\r')
            return 400;
        r->framing.state = FR_DATA_LF;
        return 0;
    case FR_DATA_LF:
        if (ch != '\n')
            return 400;
        r->framing.state = FR_SIZE;
        return 0;
    case FR_END_LF:
        if (ch != '\n')
            return 400;
        r->framing.state = FR_NONE;
        return 0;
    default:
        return trailer_byte(r, ch, cfg->max_header_size);
    }
}

int body_read(struct rh_conn *c, bool *done)
{
    struct rh_req *r = c->req;
    const rh_config *cfg = &c->w->srv->cfg;
    const char *p = c->in + c->in_off, *end = c->in + c->in_len;
    int status = 0;
    while (p < end && r->framing.state != FR_NONE && !status) {
        uint8_t st = r->framing.state;
        if (st == FR_LENGTH || st == FR_DATA) {
            size_t n = (size_t)(end - p) < r->framing.left ? (size_t)(end - p)
                                                           : (size_t)r->framing.left;
            status = body_append(r, p, n, cfg->max_body);
            p += n;
            r->framing.left -= n;
            if (r->framing.left == 0)
                r->framing.state = st == FR_LENGTH ? FR_NONE : FR_DATA_CR;
        } else {
            status = framing_byte(r, (unsigned char)*p++, cfg);
        }
    }
    c->in_off = (uint32_t)(p - c->in);
    *done = !status && r->framing.state == FR_NONE;
    return status;
}
