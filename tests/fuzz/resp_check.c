/* The response stream, parsed as a client would, from the bytes the fake kernel was given.
 * Every response starts at the offset the middleware's after hook recorded for it (so no
 * response is lost, duplicated or interleaved) with "HTTP/1.1 NNN ", every head line is
 * "Name: value" with no stray CR or LF (no response splitting), the body is framed exactly
 * as the head says (Content-Length, chunked, or close-delimited), and nothing follows a
 * response that says Connection: close. Interim "100 Continue" heads may precede any. */
#include <string.h>
#include <strings.h>

#include "tests/fuzz/fuzz.h"

void verify_reset(struct fz_verify *v)
{
    struct fz_record *rec = v->rec;
    unsigned cap = v->cap;
    memset(v, 0, sizeof(*v));
    v->rec = rec;
    v->cap = cap;
}

void verify_free(struct fz_verify *v)
{
    free(v->rec);
    v->rec = NULL;
    v->cap = 0;
}

void verify_record(struct fz_verify *v, uint64_t offset, int status, bool head_req)
{
    if (v->nrec == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->rec = realloc(v->rec, v->cap * sizeof(*v->rec));
        FZ_CHECK(v->rec, "out of memory");
    }
    FZ_CHECK(v->nrec == 0 || offset > v->rec[v->nrec - 1].offset,
             "response head recorded at %llu, not after the previous one at %llu",
             (unsigned long long)offset, (unsigned long long)v->rec[v->nrec - 1].offset);
    v->rec[v->nrec++] = (struct fz_record){offset, status, head_req};
}

bool verify_at_close(const struct fz_verify *v)
{
    return v->st == V_CLOSED || v->st == V_REST;
}

static bool is_token(char ch)
{
    return ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* One "Name: value" line; records what frames the body. */
static void head_line(struct fz_verify *v, const char *l, size_t n, bool *chunked,
                      int64_t *clen)
{
    const char *colon = memchr(l, ':', n);
    FZ_CHECK(colon && colon > l && colon + 1 < l + n && colon[1] == ' ',
             "malformed head line [%.*s]", (int)n, l);
    for (const char *p = l; p < colon; p++)
        FZ_CHECK(is_token(*p), "header name [%.*s] is not a token", (int)(colon - l), l);
    for (const char *p = colon + 1; p < l + n; p++)
        FZ_CHECK(*p != '\r' && *p != '\n' && *p != 0, "CR, LF or NUL inside [%.*s]", (int)n, l);
    size_t nlen = (size_t)(colon - l);
    const char *val = colon + 2;
    size_t vlen = n - nlen - 2;
    if (nlen == 14 && strncasecmp(l, "Content-Length", 14) == 0) {
        FZ_CHECK(*clen < 0, "two Content-Length headers");
        *clen = 0;
        for (size_t i = 0; i < vlen; i++) {
            FZ_CHECK(val[i] >= '0' && val[i] <= '9', "Content-Length [%.*s]", (int)vlen, val);
            *clen = *clen * 10 + (val[i] - '0');
        }
    } else if (nlen == 17 && strncasecmp(l, "Transfer-Encoding", 17) == 0) {
        FZ_CHECK(vlen == 7 && memcmp(val, "chunked", 7) == 0, "Transfer-Encoding [%.*s]",
                 (int)vlen, val);
        *chunked = true;
    } else if (nlen == 10 && strncasecmp(l, "Connection", 10) == 0) {
        v->closes |= vlen == 5 && memcmp(val, "close", 5) == 0;
    }
}

static void response_done(struct fz_verify *v)
{
    v->st = v->closes ? V_CLOSED : V_HEAD;
}

static void head_done(struct fz_verify *v)
{
    const char *h = v->head;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    FZ_CHECK(v->head_len >= 17 && memcmp(h, "HTTP/1.1 ", 9) == 0 && h[12] == ' ',
             "a response starts with [%.20s]", h);
    int status = 0;
    for (int i = 9; i < 12; i++) {
        FZ_CHECK(h[i] >= '0' && h[i] <= '9', "status [%.3s]", h + 9);
        status = status * 10 + (h[i] - '0');
    }
    if (status == 100) { /* interim: goes before the final answer, recorded by no hook */
        FZ_CHECK(v->head_len == sizeof(cont) - 1 && memcmp(h, cont, v->head_len) == 0,
                 "interim response [%.*s]", (int)v->head_len, h);
        v->head_len = 0;
        return;
    }
    FZ_CHECK(v->next < v->nrec, "a response head at byte %llu that no hook saw written",
             (unsigned long long)v->head_start);
    const struct fz_record *r = &v->rec[v->next++];
    FZ_CHECK(r->offset == v->head_start && r->status == status,
             "response %u: status %d at byte %llu, expected status %d at byte %llu", v->next,
             status, (unsigned long long)v->head_start, r->status,
             (unsigned long long)r->offset);
    bool chunked = false;
    int64_t clen = -1;
    v->closes = false;
    const char *line = memchr(h, '\n', v->head_len) + 1; /* after the status line */
    const char *end = h + v->head_len - 2;               /* the blank line */
    while (line < end) {
        const char *eol = memchr(line, '\r', (size_t)(end - line));
        FZ_CHECK(eol && eol[1] == '\n', "head line without CRLF");
        head_line(v, line, (size_t)(eol - line), &chunked, &clen);
        line = eol + 2;
    }
    FZ_CHECK(!(chunked && clen >= 0), "both chunked and Content-Length");
    v->head_len = 0;
    if (r->head_req || status == 204 || status == 304) {
        response_done(v);
    } else if (chunked) {
        v->st = V_CHUNK_SIZE;
        v->line_len = 0;
    } else if (clen >= 0) {
        v->remain = (uint64_t)clen;
        v->st = V_BODY;
        if (clen == 0)
            response_done(v);
    } else {
        FZ_CHECK(v->closes, "no Content-Length, not chunked, yet not Connection: close");
        v->st = V_REST;
    }
}

static void chunk_size_done(struct fz_verify *v)
{
    FZ_CHECK(v->line_len >= 3 && v->line[v->line_len - 2] == '\r', "chunk-size line");
    uint64_t size = 0;
    for (uint32_t i = 0; i + 2 < v->line_len; i++) {
        char ch = v->line[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        FZ_CHECK(d >= 0, "chunk size [%.*s]", (int)v->line_len, v->line);
        size = size * 16 + (uint64_t)d;
    }
    v->line_len = 0;
    v->remain = size;
    v->st = size ? V_CHUNK_DATA : V_CHUNK_END;
}

/* One byte of a CRLF that must come next; true once both are in. */
static bool crlf_byte(struct fz_verify *v, char ch)
{
    FZ_CHECK(ch == "\r\n"[v->line_len], "expected CRLF, got 0x%02x", (unsigned char)ch);
    if (++v->line_len < 2)
        return false;
    v->line_len = 0;
    return true;
}

void verify_bytes(struct fz_verify *v, const char *p, uint32_t n)
{
    const char *end = p + n;
    while (p < end) {
        uint64_t take = (uint64_t)(end - p);
        switch (v->st) {
        case V_HEAD:
            if (v->head_len == 0)
                v->head_start = v->pos;
            FZ_CHECK(v->head_len < FZ_HEAD_MAX, "response head over %d bytes", FZ_HEAD_MAX);
            v->head[v->head_len++] = *p;
            take = 1;
            FZ_CHECK(v->head_len != 9 || memcmp(v->head, "HTTP/1.1 ", 9) == 0,
                     "a response starts with [%.9s] at byte %llu", v->head,
                     (unsigned long long)v->head_start);
            if (v->head_len >= 4 && memcmp(v->head + v->head_len - 4, "\r\n\r\n", 4) == 0)
                head_done(v);
            break;
        case V_BODY:
        case V_CHUNK_DATA:
            if (take > v->remain)
                take = v->remain;
            v->remain -= take;
            if (v->remain == 0 && v->st == V_BODY)
                response_done(v);
            else if (v->remain == 0)
                v->st = V_CHUNK_CRLF;
            break;
        case V_CHUNK_SIZE:
            FZ_CHECK(v->line_len < sizeof(v->line), "chunk-size line too long");
            v->line[v->line_len++] = *p;
            take = 1;
            if (*p == '\n')
                chunk_size_done(v);
            break;
        case V_CHUNK_CRLF:
            if (crlf_byte(v, *p))
                v->st = V_CHUNK_SIZE;
            take = 1;
            break;
        case V_CHUNK_END: /* no trailers: "0\r\n" then the blank line */
            if (crlf_byte(v, *p))
                response_done(v);
            take = 1;
            break;
        case V_REST:
            break;
        case V_CLOSED:
            FZ_CHECK(false, "%u bytes after a Connection: close response: [%.*s]", n,
                     (int)(end - p < 40 ? end - p : 40), p);
        }
        p += take;
        v->pos += take;
    }
}
