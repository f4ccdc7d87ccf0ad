/* libFuzzer target: the HTTP/1 parser alone (http1/parse.c, body.c), with no ring,
 * connection or server. The input has fuzz_conn's layout, so its corpus seeds this target
 * too: 16 control bytes, then the bytes a client sends.
 *   ctrl[0]   bit 1: small limits from ctrl[1..4] (else the defaults), as fuzz_conn
 *   ctrl[6..15] piece lengths, in a cycle: bits 0-4 index PIECE[] (0: all that is left)
 * The payload is parsed twice, whole and in those pieces, as a connection would (bytes stay
 * in place, each call gets what is not consumed). Checked on every event: what was consumed,
 * that events come in order (BEGIN, HEAD, BODY..., COMPLETE), that every slice lies in the
 * bytes given and every head keeps the limits, that a Content-Length body is exactly as
 * long as declared, and that an error is final and carries a status we answer. Across the
 * two runs: the same events; where a run fails (a limit can be crossed in one split and
 * not in another), the requests it completed are the other's first ones. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1/parse.h"
#include "tests/fuzz/ctrl_limits.h"

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_h1_parse: check failed: %s: ", #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

enum { CTRL_LEN = 16, SCHED_OFF = 6, SCHED_LEN = 10 };
static const uint32_t PIECE[32] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16,
                                   17, 20, 24, 31, 32, 33, 48, 64, 100, 127, 128, 255, 256,
                                   512, 1000, 2048};

enum expect { X_BEGIN, X_HEAD, X_BODY, X_DONE };

struct run {
    struct h1_parser p;
    struct rh_hdr hdrs[RH_MAX_HEADERS_CAP];
    const char *base; /* the current request's first byte */
    enum expect next;
    bool has_body, counted; /* counted: a Content-Length body, whose bytes are summed */
    uint64_t body_left;
    char *log; /* the events, bodies merged; to compare the two runs */
    size_t log_len, log_cap, done_len; /* done_len: the log up to the last COMPLETE */
    int status;                        /* of the error, or 0 */
};

static void logb(struct run *r, const void *data, size_t n)
{
    if (r->log_len + n > r->log_cap) {
        r->log_cap = (r->log_len + n) * 2;
        r->log = realloc(r->log, r->log_cap);
        CHECK(r->log != NULL, "out of memory");
    }
    memcpy(r->log + r->log_len, data, n);
    r->log_len += n;
}

static void check_slice(const struct run *r, struct rh_slice s, const char *end, const char *what)
{
    CHECK(r->base + s.off + s.len <= end, "%s [%u+%u] past the bytes given", what, s.off, s.len);
}

static void on_head(struct run *r, const struct h1_head *h, const char *end,
                    const rh_config *cfg)
{
    CHECK(r->next == X_HEAD, "HEAD_COMPLETE out of order (%d)", (int)r->next);
    check_slice(r, h->method, end, "method");
    check_slice(r, h->url, end, "url");
    CHECK(h->path_len <= h->url.len && h->url.len <= cfg->max_uri, "url %u", h->url.len);
    CHECK(h->nheaders <= cfg->max_headers, "%u headers", h->nheaders);
    CHECK(h->http_minor <= 1, "HTTP/1.%u", h->http_minor);
    CHECK(!h->chunked || h->content_length == 0, "chunked with a length");
    CHECK(h->content_length <= cfg->max_body, "length %llu",
          (unsigned long long)h->content_length);
    unsigned hosts = 0;
    for (unsigned i = 0; i < h->nheaders; i++) {
        const struct rh_hdr *x = &r->hdrs[i];
        check_slice(r, x->value, end, "header");
        CHECK(x->name.len > 0 && x->value.off + x->value.len <= cfg->max_header_size,
              "header %u", i);
        for (uint32_t k = 0; k < x->name.len; k++)
            CHECK(h1_parse_is_tchar((unsigned char)r->base[x->name.off + k]), "name byte");
        for (uint32_t k = 0; k < x->value.len; k++) {
            unsigned char ch = (unsigned char)r->base[x->value.off + k];
            CHECK(ch >= 0x20 ? ch != 0x7f : ch == '\t', "value byte %#x", ch);
        }
        hosts += x->name.len == 4 && strncasecmp(r->base + x->name.off, "host", 4) == 0;
    }
    CHECK(hosts <= 1 && (h->http_minor == 0 || hosts == 1), "%u Host fields", hosts);
    logb(r, "H", 1);
    logb(r, r->base + h->method.off, h->method.len);
    logb(r, r->base + h->url.off, h->url.len);
    uint64_t fields[] = {h->url.off, h->path_len, h->nheaders, h->method_id, h->http_minor,
                         h->keep_alive, h->chunked, h->expect_continue, h->content_length};
    logb(r, fields, sizeof(fields)); /* offsets: equal in both runs */
    logb(r, r->hdrs, h->nheaders * sizeof(r->hdrs[0]));
    r->has_body = h->chunked || h->content_length > 0;
    r->counted = !h->chunked;
    r->body_left = h->content_length;
    r->next = r->has_body ? X_BODY : X_DONE;
}

/* One call; false when the run stops (NEED_MORE: feed more; ERROR: done). */
static bool step(struct run *r, const char *buf, size_t len, size_t *off, const rh_config *cfg)
{
    struct h1_event_data out;
    size_t used = (size_t)-1;
    const char *at = buf + *off;
    enum h1_event ev = h1_parse_next(&r->p, at, len - *off, &used, &out);
    CHECK(used <= len - *off, "consumed %zu of %zu", used, len - *off);
    *off += used;
    switch (ev) {
    case H1_NEED_MORE:
        CHECK(*off == len, "NEED_MORE with %zu bytes unread", len - *off);
        return false;
    case H1_MESSAGE_BEGIN:
        CHECK(r->next == X_BEGIN, "BEGIN out of order (%d)", (int)r->next);
        r->base = buf + *off;
        h1_parser_set_head(&r->p, r->hdrs);
        r->next = X_HEAD;
        logb(r, "B", 1);
        return true;
    case H1_HEAD_COMPLETE:
        on_head(r, &out.head, buf + *off, cfg);
        return true;
    case H1_BODY_DATA:
        CHECK(r->next == X_BODY, "BODY_DATA out of order (%d)", (int)r->next);
        CHECK(out.body >= at && out.body + out.body_len == buf + *off && out.body_len > 0,
              "body slice");
        CHECK(!r->counted || out.body_len <= r->body_left, "body past its length");
        r->body_left -= r->counted ? out.body_len : 0;
        logb(r, out.body, out.body_len);
        return true;
    case H1_MESSAGE_COMPLETE:
        CHECK(r->next == X_DONE || r->next == X_BODY, "COMPLETE out of order (%d)",
              (int)r->next);
        CHECK(!r->counted || r->body_left == 0, "%llu body bytes missing",
              (unsigned long long)r->body_left);
        CHECK(r->has_body || used == 0, "COMPLETE consumed %zu", used);
        r->next = X_BEGIN;
        logb(r, "C", 1);
        r->done_len = r->log_len;
        return true;
    case H1_ERROR:
        CHECK(*off == len, "ERROR with %zu bytes unread", len - *off);
        CHECK(out.status == 400 || out.status == 413 || out.status == 414 ||
                  out.status == 417 || out.status == 431 || out.status == 501 ||
                  out.status == 505,
              "status %d", out.status);
        r->status = out.status;
        return false;
    }
    CHECK(false, "event %d", (int)ev);
    return false;
}

static void parse_run(struct run *r, const char *in, size_t n, const uint8_t *sched,
                      const rh_config *cfg)
{
    memset(r, 0, offsetof(struct run, log));
    if (!r->log) { /* never NULL: memcmp's arguments must not be, even for 0 bytes */
        r->log_cap = 4096;
        r->log = malloc(r->log_cap);
        CHECK(r->log != NULL, "out of memory");
    }
    r->log_len = r->done_len = 0;
    r->status = 0;
    h1_parser_init(&r->p, cfg);
    size_t off = 0, avail = 0;
    for (unsigned i = 0; avail < n || i == 0; i++) {
        uint32_t piece = sched ? PIECE[sched[i % SCHED_LEN] & 31] : 0;
        avail = piece == 0 || piece > n - avail ? n : avail + piece;
        while (step(r, in, avail, &off, cfg))
            ;
        if (r->status)
            break;
    }
    if (r->status) { /* final: the same error, whatever follows */
        struct h1_event_data out;
        size_t used;
        CHECK(h1_parse_next(&r->p, "GET / HTTP/1.1\r\n", 16, &used, &out) == H1_ERROR &&
                  out.status == r->status && used == 16,
              "error not final");
    }
}

static void limits(rh_config *cfg, const uint8_t *ctrl)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_body = 1u << 20;
    cfg->max_header_size = 12288;
    cfg->max_uri = 8192;
    cfg->max_headers = 100;
    fuzz_ctrl_limits(cfg, ctrl);
}

static struct run whole, split;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < CTRL_LEN)
        return 0;
    rh_config cfg;
    limits(&cfg, data);
    size_t n = size - CTRL_LEN;
    char *in = malloc(n ? n : 1); /* its own block: ASan sees a read past the input */
    memcpy(in, data + CTRL_LEN, n);
    parse_run(&whole, in, n, NULL, &cfg);
    parse_run(&split, in, n, data + SCHED_OFF, &cfg);
    if (!whole.status && !split.status)
        CHECK(whole.log_len == split.log_len && memcmp(whole.log, split.log, whole.log_len) == 0,
              "the split run's events differ from the whole run's");
    /* What a run vouches for: all its events, or those of the requests it completed. Where
     * both failed, each may have failed first; where one did, the other went further. */
    size_t w = whole.status ? whole.done_len : whole.log_len;
    size_t s = split.status ? split.done_len : split.log_len;
    size_t common = w < s ? w : s;
    CHECK(whole.status || whole.log_len >= s, "the whole run stopped short of the split one");
    CHECK(split.status || split.log_len >= w, "the split run stopped short of the whole one");
    CHECK(memcmp(whole.log, split.log, common) == 0, "the runs differ before an error");
    free(in);
    return 0;
}
