/* http1/parse.c and body.c on their own: byte strings in, events out, with no ring,
 * connection, request or server. Each case is fed whole, split in two at every byte, and
 * one byte at a time, and must give the same events (the parser keeps its state across
 * calls, as a connection's recvs cut requests anywhere). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http1/parse.h"

enum { LOG_MAX = 4096 };

struct run {
    struct h1_parser p;
    rh_config cfg;
    struct rh_hdr hdrs[RH_MAX_HEADERS_CAP];
    const char *base; /* the current request's first byte */
    char log[LOG_MAX];
    size_t log_len;
    bool in_body; /* the last event was BODY_DATA: slices of one body are logged as one */
};

static void say(struct run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->log + r->log_len, LOG_MAX - r->log_len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < LOG_MAX - r->log_len);
    r->log_len += (size_t)n;
}

static void say_slice(struct run *r, struct rh_slice s)
{
    say(r, "%.*s", (int)s.len, r->base + s.off);
}

static void say_head(struct run *r, const struct h1_head *h)
{
    say(r, "HEAD ");
    say_slice(r, h->method);
    say(r, " ");
    say_slice(r, h->url);
    say(r, " path=%.*s 1.%d", (int)h->path_len, r->base + h->url.off, h->http_minor);
    for (unsigned i = 0; i < h->nheaders; i++) {
        say(r, " [");
        say_slice(r, r->hdrs[i].name);
        say(r, ":");
        say_slice(r, r->hdrs[i].value);
        say(r, "]");
    }
    say(r, "%s%s%s", h->keep_alive ? " ka" : "", h->chunked ? " chunked" : "",
        h->expect_continue ? " expect" : "");
    if (h->content_length)
        say(r, " cl=%llu", (unsigned long long)h->content_length);
    say(r, "|");
}

/* One event, logged. Returns false at NEED_MORE or ERROR (the caller stops or feeds more). */
static bool step(struct run *r, const char *buf, size_t len, size_t *off)
{
    struct h1_event_data out;
    size_t used = 0;
    enum h1_event ev = h1_parse_next(&r->p, buf + *off, len - *off, &used, &out);
    assert_true(used <= len - *off);
    *off += used;
    if (ev != H1_BODY_DATA && ev != H1_NEED_MORE && r->in_body) {
        say(r, "|");
        r->in_body = false;
    }
    switch (ev) {
    case H1_NEED_MORE:
        assert_int_equal(*off, len); /* NEED_MORE only once every byte is used */
        return false;
    case H1_MESSAGE_BEGIN:
        r->base = buf + *off;
        h1_parser_set_head(&r->p, r->hdrs);
        say(r, "BEGIN|");
        return true;
    case H1_HEAD_COMPLETE:
        say_head(r, &out.head);
        return true;
    case H1_BODY_DATA:
        assert_true(out.body >= buf && out.body + out.body_len == buf + *off);
        if (!r->in_body)
            say(r, "BODY ");
        r->in_body = true;
        say(r, "%.*s", (int)out.body_len, out.body);
        return true;
    case H1_MESSAGE_COMPLETE:
        say(r, "COMPLETE|");
        return true;
    case H1_ERROR:
        assert_int_equal(*off, len); /* nothing after an error is trusted */
        say(r, "ERROR %d|", out.status);
        return false;
    }
    fail_msg("unknown event %d", (int)ev);
    return false;
}

static void no_tweak(rh_config *cfg) { (void)cfg; }

/* Feeds in[0..n) with the pieces ending at the cuts (ascending; the last piece ends at n),
 * as a connection would: the bytes stay in place, each call gets what is not consumed. */
static void feed(struct run *r, const char *in, size_t n, const size_t *cuts, size_t ncuts,
                 void (*tweak)(rh_config *))
{
    memset(r, 0, sizeof(*r));
    r->cfg.max_body = 1u << 20;
    r->cfg.max_header_size = 12288;
    r->cfg.max_uri = 8192;
    r->cfg.max_headers = 100;
    tweak(&r->cfg);
    h1_parser_init(&r->p, &r->cfg);
    size_t off = 0, avail = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        avail = i < ncuts ? cuts[i] : n;
        while (step(r, in, avail, &off))
            ;
        if (strstr(r->log, "ERROR"))
            break;
    }
    if (r->in_body)
        say(r, "|");
}

/* The events for `in` fed whole, then split at every byte and byte by byte: all the same,
 * and equal to `want`. */
static void expect_events_tw(const char *in, size_t n, const char *want,
                             void (*tweak)(rh_config *))
{
    struct run *whole = malloc(sizeof(*whole)), *r = malloc(sizeof(*r));
    feed(whole, in, n, NULL, 0, tweak);
    if (strcmp(whole->log, want) != 0)
        fail_msg("whole [%.60s]:\n got  %s\n want %s", in, whole->log, want);
    for (size_t cut = 1; cut < n; cut++) {
        feed(r, in, n, &cut, 1, tweak);
        if (strcmp(r->log, want) != 0)
            fail_msg("split at %zu [%.60s]:\n got  %s\n want %s", cut, in, r->log, want);
    }
    size_t *cuts = malloc(n * sizeof(*cuts));
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    feed(r, in, n, cuts, n ? n - 1 : 0, tweak);
    if (strcmp(r->log, want) != 0)
        fail_msg("byte by byte [%.60s]:\n got  %s\n want %s", in, r->log, want);
    free(cuts);
    free(whole);
    free(r);
}
#define EXPECT_EVENTS(lit, want) expect_events_tw(lit, sizeof(lit) - 1, want, no_tweak)

static void test_get(void **state)
{
    EXPECT_EVENTS("GET /p?q=1 HTTP/1.1\r\nHost: a\r\nX-Y:  v w \r\n\r\n",
                  "BEGIN|HEAD GET /p?q=1 path=/p 1.1 [Host:a] [X-Y:v w] ka|COMPLETE|");
    /* Empty lines before a request are skipped (RFC 9112 2.2). */
    EXPECT_EVENTS("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
                  "BEGIN|HEAD GET / path=/ 1.1 [Host:a] ka|COMPLETE|");
    /* An absolute-form target is narrowed to its path. */
    EXPECT_EVENTS("GET http://h.example/a/b?c HTTP/1.1\r\nHost: h.example\r\n\r\n",
                  "BEGIN|HEAD GET /a/b?c path=/a/b 1.1 [Host:h.example] ka|COMPLETE|");
    EXPECT_EVENTS("HEAD /x HTTP/1.0\r\n\r\n", "BEGIN|HEAD HEAD /x path=/x 1.0|COMPLETE|");
    EXPECT_EVENTS("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                  "BEGIN|HEAD GET /x path=/x 1.0 [Connection:keep-alive] ka|COMPLETE|");
    EXPECT_EVENTS("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                  "BEGIN|HEAD GET /x path=/x 1.1 [Host:a] [Connection:close]|COMPLETE|");
}

static void test_bodies(void **state)
{
    EXPECT_EVENTS("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                  "BEGIN|HEAD POST /e path=/e 1.1 [Host:a] [Content-Length:5] ka cl=5|"
                  "BODY hello|COMPLETE|");
    EXPECT_EVENTS("POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                  "Expect: 100-continue\r\n\r\n"
                  "3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n",
                  "BEGIN|HEAD POST /e path=/e 1.1 [Host:a] [Transfer-Encoding:chunked] "
                  "[Expect:100-continue] ka chunked expect|BODY abc0123456789|COMPLETE|");
}

/* Requests back to back: each one's events in order, bodies never mistaken for heads. */
static void test_pipelined(void **state)
{
    EXPECT_EVENTS("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                  "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n"
                  "GET /x HTTP/1.1\r\n"
                  "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "2\r\nok\r\n0\r\n\r\n"
                  "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n",
                  "BEGIN|HEAD GET /1 path=/1 1.1 [Host:a] ka|COMPLETE|"
                  "BEGIN|HEAD POST /2 path=/2 1.1 [Host:a] [Content-Length:17] ka cl=17|"
                  "BODY GET /x HTTP/1.1\r\n|COMPLETE|"
                  "BEGIN|HEAD POST /3 path=/3 1.1 [Host:a] [Transfer-Encoding:chunked] ka "
                  "chunked|BODY ok|COMPLETE|"
                  "BEGIN|HEAD GET /4 path=/4 1.1 [Host:a] ka|COMPLETE|");
}

static void small_limits(rh_config *cfg)
{
    cfg->max_uri = 16;
    cfg->max_header_size = 64;
    cfg->max_headers = 3;
    cfg->max_body = 10;
}
#define EXPECT_SMALL(lit, want) expect_events_tw(lit, sizeof(lit) - 1, want, small_limits)

/* Every error, with the status to answer; the events before it still come. */
static void test_errors(void **state)
{
    EXPECT_EVENTS("GET / HTTP/1.1\r\n\r\n", "BEGIN|ERROR 400|"); /* no Host */
    EXPECT_EVENTS("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "BEGIN|ERROR 400|");
    EXPECT_EVENTS("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "BEGIN|ERROR 400|");
    EXPECT_EVENTS("GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n", "BEGIN|ERROR 400|");
    EXPECT_EVENTS("GET / HTTP/1.1\r\nHost: a\r\nX Y: a\r\n\r\n", "BEGIN|ERROR 400|");
    EXPECT_EVENTS("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "BEGIN|ERROR 400|");
    EXPECT_EVENTS("\rX", "ERROR 400|"); /* a bare CR before any request */
    EXPECT_EVENTS("PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n", "BEGIN|ERROR 501|");
    EXPECT_EVENTS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                  "BEGIN|ERROR 501|");
    EXPECT_EVENTS("GET / HTTP/2.0\r\nHost: a\r\n\r\n", "BEGIN|ERROR 505|");
    EXPECT_EVENTS("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", "BEGIN|ERROR 417|");
    EXPECT_EVENTS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n",
                  "BEGIN|ERROR 400|");
    /* Body framing: the head is complete, the body is not. */
    EXPECT_EVENTS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhelloXX0\r\n\r\n",
                  "BEGIN|HEAD POST / path=/ 1.1 [Host:a] [Transfer-Encoding:chunked] ka "
                  "chunked|BODY hello|ERROR 400|");
    EXPECT_EVENTS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "0\r\n\rXGET / HTTP/1.1\r\n\r\n",
                  "BEGIN|HEAD POST / path=/ 1.1 [Host:a] [Transfer-Encoding:chunked] ka "
                  "chunked|ERROR 400|");
    /* The limits: 414, 431 (too many, too large), 413 (declared, chunk size). */
    EXPECT_SMALL("GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n", "BEGIN|ERROR 414|");
    EXPECT_SMALL("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                 "BEGIN|ERROR 431|");
    EXPECT_SMALL("GET / HTTP/1.1\r\nHost: a\r\n"
                 "A: 012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
                 "BEGIN|ERROR 431|");
    EXPECT_SMALL("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", "BEGIN|ERROR 413|");
    EXPECT_SMALL("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6\r\n",
                 "BEGIN|HEAD POST / path=/ 1.1 [Host:a] [Transfer-Encoding:chunked] ka "
                 "chunked|BODY hello|ERROR 413|");
}

/* An unknown method is 501 when its whole request line is there to judge, 400 if not. */
static void test_unknown_method(void **state)
{
    struct run *r = malloc(sizeof(*r));
    static const char brew[] = "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n";
    feed(r, brew, sizeof(brew) - 1, NULL, 0, no_tweak);
    assert_string_equal(r->log, "BEGIN|ERROR 501|");
    /* judged from the request's first byte, after the empty lines before it */
    static const char brew2[] = "\r\nBREW /pot HTTP/1.1\r\nHost: a\r\n\r\n";
    feed(r, brew2, sizeof(brew2) - 1, NULL, 0, no_tweak);
    assert_string_equal(r->log, "BEGIN|ERROR 501|");
    static const char tls[] = "\x16\x03\x01\x02\x00 garbage\r\n\r\n";
    feed(r, tls, sizeof(tls) - 1, NULL, 0, no_tweak);
    assert_string_equal(r->log, "BEGIN|ERROR 400|");
    free(r);
}

/* After an error every call is the same error, whatever comes. */
static void test_error_is_final(void **state)
{
    struct run *r = malloc(sizeof(*r));
    static const char bad[] = "GET / HTTP/1.1\r\n\r\n";
    feed(r, bad, sizeof(bad) - 1, NULL, 0, no_tweak);
    static const char more[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t off = 0;
    assert_false(step(r, more, sizeof(more) - 1, &off));
    assert_string_equal(r->log, "BEGIN|ERROR 400|ERROR 400|");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_error_is_final),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
