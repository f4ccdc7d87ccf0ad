/* http1/parse.h: the HTTP/1 request parser (parse.c: llhttp glue and the head's checks;
 * body.c: body framing). It turns bytes into events and acts on none of them: it knows no
 * connection, request, ring or server, calls nothing above it, allocates nothing and copies
 * nothing (events carry slices of the caller's bytes). The caller (input.c) creates the
 * request, answers, dispatches and stores bodies. Limits and errors are decided here: an
 * error event carries the HTTP status to answer (400, 413, 414, 417, 431, 501, 505).
 *
 * Use (one parser per connection):
 *   h1_parser_init(&p, &cfg);
 *   loop: ev = h1_parse_next(&p, buf + off, len - off, &used, &out); off += used; act on ev.
 * The bytes of the current request's head consumed so far must stay in place just before
 * the next call's buf (head slices are offsets from the request's first byte): a caller
 * that compacts its buffer keeps everything from that first byte on. */
#ifndef RH_HTTP1_PARSE_H
#define RH_HTTP1_PARSE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1/http1_types.h" /* struct rh_slice, struct rh_hdr, RH_MAX_HEADERS_CAP */

/* The parser's state, one per connection (input.c keeps it in rh_conn.proto_state). Plain
 * state, no pointer into the input kept between calls (base is set at each call), so the
 * caller may compact its buffer between calls (see above). */
struct h1_parser {
    llhttp_t ll;
    const rh_config *cfg;  /* the limits: max_uri, max_headers, max_header_size, max_body */
    struct rh_hdr *hdrs;   /* the current message's header lines (h1_parser_set_head) */
    const char *base;      /* the message's first byte, during a call only */
    struct rh_slice method, url;
    uint32_t seen;         /* bytes of the current head consumed so far */
    uint32_t scan_left;    /* bytes checked by the line scan, not yet given to llhttp */
    uint16_t nheaders;
    uint16_t status;       /* the error to answer, once failed */
    uint8_t state;         /* enum h1_state (parse.c) */
    uint8_t flags;         /* H1F_* (parse.c) */
    uint8_t head_scan;     /* the line scan's state between calls (bare CR, obs-fold) */
    uint8_t host_count;
    bool scan_bad;         /* the line scan stopped at a bad byte after scan_left */
    uint64_t content_length;
    uint64_t body_len;     /* body bytes returned so far (the limit counts them) */
    struct {               /* body.c: the body's framing, read by us, not llhttp */
        uint64_t left;     /* bytes of the current chunk (or of the body) still to come */
        uint32_t line;     /* bytes of the current chunk-size line, or of the trailers */
        uint8_t state;     /* 0: no body being read */
    } framing;
};

enum h1_event {
    H1_NEED_MORE,        /* every byte given is used: call again when more arrive */
    H1_MESSAGE_BEGIN,    /* a request starts at buf + *consumed: h1_parser_set_head, go on */
    H1_HEAD_COMPLETE,    /* out->head: the head is read and checked */
    H1_BODY_DATA,        /* out->body, out->body_len: body bytes (a slice of buf, decoded) */
    H1_MESSAGE_COMPLETE, /* the request is complete, body included: the next one may follow */
    H1_ERROR,            /* out->status: answer it and close; every byte given is consumed,
                          * and nothing after it is parsed (each later call: H1_ERROR again) */
};

/* A request head. Slices are offsets from the request's first byte (MESSAGE_BEGIN's). */
struct h1_head {
    struct rh_slice method, url; /* url: an absolute-form target narrowed to its path */
    uint32_t path_len;           /* of url, up to '?' (0 until the head is complete) */
    uint16_t nheaders;           /* header lines written to h1_parser_set_head's storage */
    uint8_t method_id;           /* llhttp_method */
    uint8_t http_minor;          /* 0 or 1 (the major is 1, or the head fails with 505) */
    bool keep_alive, chunked, expect_continue;
    uint64_t content_length;     /* 0: none (or chunked) */
};

struct h1_event_data {
    /* H1_HEAD_COMPLETE: all of it. H1_NEED_MORE and H1_ERROR from a head: method, url and
     * nheaders as far as read (for a caller that answers before the head is complete: a
     * header timeout, a limit), path_len 0, the rest zero; else to be ignored. */
    struct h1_head head;
    const char *body; /* H1_BODY_DATA */
    size_t body_len;
    int status;       /* H1_ERROR */
};

/* Ready to read requests with cfg's limits (cfg outlives the parser). */
void h1_parser_init(struct h1_parser *p, const rh_config *cfg);

/* After H1_MESSAGE_BEGIN: where the request's header lines go (cfg->max_headers of them,
 * written as they are read; valid until the next H1_MESSAGE_BEGIN). */
static inline void h1_parser_set_head(struct h1_parser *p, struct rh_hdr *hdrs)
{
    p->hdrs = hdrs;
}

/* Parses buf[0..len) (the bytes after those already consumed) up to the next event; sets
 * *consumed to the bytes it used (the caller skips them) and fills the parts of *out the
 * event names. Returns H1_NEED_MORE when all of buf is used without an event. */
enum h1_event h1_parse_next(struct h1_parser *p, const char *buf, size_t len, size_t *consumed,
                            struct h1_event_data *out);

/* RFC 9110 tchar: the bytes of a token (a method, a field name). */
static inline bool h1_parse_is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    switch (ch) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

/* ---- between parse.c and body.c only ---- */

/* The head said a body follows (p->content_length, or chunked): start reading it. */
void h1_parse_body_begin(struct h1_parser *p, bool chunked);
/* The body's next event: H1_BODY_DATA, H1_MESSAGE_COMPLETE, H1_NEED_MORE or H1_ERROR
 * (status in out->status; *consumed is then len). */
enum h1_event h1_parse_body_next(struct h1_parser *p, const char *buf, size_t len,
                                 size_t *consumed, struct h1_event_data *out);

#endif
