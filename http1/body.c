/* Request body framing: Content-Length and chunked framing are read here, not by llhttp.
 * llhttp 8.1.0 reads chunked framing leniently (a CR followed by any byte ends a size line;
 * the two bytes after chunk data are skipped unchecked; valued chunk extensions are
 * refused), which lets a request hide inside another's body. So parse.c has llhttp stop
 * after each head, and the body's framing is checked byte by byte here (RFC 9112 6.3, 7.1):
 * any violation is an error (400) and nothing after it is parsed. Part of the parser: it
 * returns the body's bytes as slices of the input and stores nothing (input.c does). */
#include "http1/parse.h"

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

void h1_parse_body_begin(struct h1_parser *p, bool chunked)
{
    p->body_len = 0;
    p->framing.line = 0;
    p->framing.left = p->content_length;
    p->framing.state = chunked ? FR_SIZE : FR_LENGTH;
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
static int size_end_byte(struct h1_parser *p, unsigned char ch)
{
    if (ch == '\r')
        p->framing.state = FR_SIZE_LF;
    else if (ch == ';')
        p->framing.state = FR_EXT;
    else if (ch == ' ' || ch == '\t')
        p->framing.state = FR_SIZE_WS;
    else
        return 400;
    return 0;
}

/* One byte of a size line. The size is checked against the limit as soon as it is known,
 * so an absurd size is refused at once rather than waited for. */
static int size_byte(struct h1_parser *p, unsigned char ch, size_t max)
{
    int v = hex_value(ch);
    if (v >= 0) {
        if (p->framing.left > (UINT64_MAX >> 4))
            return 400; /* overflows 64 bits */
        p->framing.left = (p->framing.left << 4) | (uint64_t)v;
        return p->framing.left > max - p->body_len ? 413 : 0;
    }
    if (p->framing.line == 1) /* no digit before it */
        return 400;
    return size_end_byte(p, ch);
}

/* One byte of a trailer section: field lines, ignored, but framed like a head's. */
static int trailer_byte(struct h1_parser *p, unsigned char ch, size_t max_head)
{
    if (++p->framing.line > max_head)
        return 431;
    switch (p->framing.state) {
    case FR_TRAILER:
        if (ch == '\r')
            p->framing.state = FR_END_LF;
        else if (h1_parse_is_tchar(ch))
            p->framing.state = FR_TRAILER_NAME; /* a space here would be obs-fold: 400 */
        else
            return 400;
        return 0;
    case FR_TRAILER_NAME:
        if (ch == ':')
            p->framing.state = FR_TRAILER_VALUE;
        else if (!h1_parse_is_tchar(ch))
            return 400;
        return 0;
    case FR_TRAILER_VALUE:
        if (ch == '\r')
            p->framing.state = FR_TRAILER_LF;
        else if (!is_text(ch))
            return 400;
        return 0;
    default: /* FR_TRAILER_LF */
        if (ch != '\n')
            return 400;
        p->framing.state = FR_TRAILER;
        return 0;
    }
}

/* One framing byte (anything but chunk data). Returns 0 or an HTTP status. */
static int framing_byte(struct h1_parser *p, unsigned char ch, const rh_config *cfg)
{
    switch (p->framing.state) {
    case FR_SIZE:
        if (++p->framing.line > CHUNK_LINE_MAX)
            return 400;
        return size_byte(p, ch, cfg->max_body);
    case FR_SIZE_WS:
        if (++p->framing.line > CHUNK_LINE_MAX)
            return 400;
        return size_end_byte(p, ch);
    case FR_EXT:
        if (++p->framing.line > CHUNK_LINE_MAX)
            return 400;
        if (ch == '\r')
            p->framing.state = FR_SIZE_LF;
        else if (!is_text(ch))
            return 400;
        return 0;
    case FR_SIZE_LF:
        if (ch != '\n')
            return 400;
        p->framing.line = 0;
        p->framing.state = p->framing.left ? FR_DATA : FR_TRAILER;
        return 0;
    case FR_DATA_CR:
        if (ch != '\r')
            return 400;
        p->framing.state = FR_DATA_LF;
        return 0;
    case FR_DATA_LF:
        if (ch != '\n')
            return 400;
        p->framing.state = FR_SIZE;
        return 0;
    case FR_END_LF:
        if (ch != '\n')
            return 400;
        p->framing.state = FR_NONE;
        return 0;
    default:
        return trailer_byte(p, ch, cfg->max_header_size);
    }
}

/* The body's bytes up to the next data slice: framing bytes are checked and skipped, data
 * is returned as it stands in buf (a chunk's data may come in several slices). */
enum h1_event h1_parse_body_next(struct h1_parser *p, const char *buf, size_t len,
                                 size_t *consumed, struct h1_event_data *out)
{
    const char *q = buf, *end = buf + len;
    while (q < end && p->framing.state != FR_NONE) {
        uint8_t st = p->framing.state;
        if (st == FR_LENGTH || st == FR_DATA) {
            size_t n = (size_t)(end - q) < p->framing.left ? (size_t)(end - q)
                                                           : (size_t)p->framing.left;
            p->framing.left -= n;
            p->body_len += n;
            if (p->framing.left == 0)
                p->framing.state = st == FR_LENGTH ? FR_NONE : FR_DATA_CR;
            out->body = q;
            out->body_len = n;
            *consumed = (size_t)(q + n - buf);
            return H1_BODY_DATA;
        }
        int status = framing_byte(p, (unsigned char)*q++, p->cfg);
        if (status) {
            out->status = status;
            *consumed = len; /* nothing after a framing error is trusted */
            return H1_ERROR;
        }
    }
    *consumed = (size_t)(q - buf);
    return p->framing.state == FR_NONE ? H1_MESSAGE_COMPLETE : H1_NEED_MORE;
}
