/* The parser glue, request accessors and response writer, driven through the real
 * connection data path without a ring (see fake_conn.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "tests/unit/fake_conn.h"

static void h_plain(rh_req *req, void *u) { rh_respond(req, 200, "text/plain", "Hello", 5); }

static void h_echo(rh_req *req, void *u)
{
    rh_str b = rh_req_body(req);
    rh_respond(req, 200, "application/octet-stream", b.ptr, b.len);
}

static char seen[512];
static void h_inspect(rh_req *req, void *u)
{
    rh_str host = rh_req_header(req, "HOST");
    rh_str x = rh_req_header(req, "x-thing");
    rh_str id = rh_req_param(req, "id");
    rh_str q = {0};
    rh_req_query_param(req, "b", &q);
    rh_str path = rh_req_path(req);
    snprintf(seen, sizeof(seen), "host=%.*s x=[%.*s] id=%.*s b=%.*s path=%.*s n=%u",
             (int)host.len, host.ptr, (int)x.len, x.ptr, (int)id.len, id.ptr, (int)q.len, q.ptr,
             (int)path.len, path.ptr, rh_req_header_count(req));
    rh_respond(req, 204, NULL, NULL, 0);
}

static rh_req *parked;
static void h_park(rh_req *req, void *u) { parked = req; } /* answers later */

static char big_body[100 * 1024];
static void h_big(rh_req *req, void *u)
{
    rh_respond(req, 200, "application/octet-stream", big_body, sizeof(big_body));
}

/* A streaming writer that writes 64 KiB chunks until told the output is full. */
static int stream_chunks, stream_last_ret, writable_calls, writable_status;
static void h_stream_full(rh_req *req, void *u)
{
    rh_resp_start(req, 200, "application/octet-stream");
    stream_chunks = 0;
    do {
        stream_last_ret = rh_resp_write(req, big_body, 64 * 1024);
        stream_chunks++;
    } while (stream_last_ret == 0 && stream_chunks < 100);
    parked = req;
}

static void on_writable(rh_req *req, int status, void *udata)
{
    writable_calls++;
    writable_status = status;
    if (status < 0)
        rh_resp_end(req);
}

static void setup_routes(struct fake *f)
{
    app_router_add(f->srv.routes, "GET", "/big", h_big, NULL, false);
    app_router_add(f->srv.routes, "GET", "/stream-full", h_stream_full, NULL, false);
    app_router_add(f->srv.routes, "GET", "/p", h_plain, NULL, false);
    app_router_add(f->srv.routes, "POST", "/echo", h_echo, NULL, false);
    app_router_add(f->srv.routes, "GET", "/items/:id", h_inspect, NULL, false);
    app_router_add(f->srv.routes, "GET", "/park", h_park, NULL, false);
}

static struct fake *new_fake(void (*tweak)(rh_config *))
{
    memset(big_body, 'x', sizeof(big_body)); /* no NUL: fake_out is read as a string */
    struct fake *f = malloc(sizeof(*f));
    fake_init(f, tweak);
    setup_routes(f);
    return f;
}

static void done(struct fake *f)
{
    fake_free(f);
    free(f);
}

static void test_simple_get(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *out = fake_out(f);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Length: 5\r\n"));
    assert_non_null(strstr(out, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(out, "Date: "));
    assert_non_null(strstr(out, "\r\n\r\nHello"));
    assert_null(strstr(out, "Connection: close"));
    assert_null(f->c.req);
    done(f);
}

static const char split_req[] =
    "POST /echo HTTP/1.1\r\nHost: example\r\nX-Long: 0123456789abcdef\r\nContent-Length: 11\r\n"
    "\r\nhello world";

/* A request split at every possible point gives the same answer (recv boundaries). */
static void test_split_everywhere(void **state)
{
    size_t n = sizeof(split_req) - 1;
    for (size_t cut = 1; cut < n; cut++) {
        struct fake *f = new_fake(NULL);
        fake_feed(f, split_req, cut);
        fake_feed(f, split_req + cut, n - cut);
        const char *out = fake_out(f);
        assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
        assert_non_null(strstr(out, "\r\n\r\nhello world"));
        done(f);
    }
}

static void test_byte_at_a_time(void **state)
{
    struct fake *f = new_fake(NULL);
    for (size_t i = 0; i < sizeof(split_req) - 1; i++)
        fake_feed(f, split_req + i, 1);
    assert_non_null(strstr(fake_out(f), "\r\n\r\nhello world"));
    done(f);
}

static void test_pipelined_in_order(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n"
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none"
            "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\ntwo");
    const char *out = fake_out(f);
    const char *a = strstr(out, "Hello"), *b = strstr(out, "one"), *c = strstr(out, "two");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    assert_int_equal(count_of(out, "HTTP/1.1 200 OK"), 3);
    done(f);
}

static void test_accessors(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET /items/42?a=1&b=two HTTP/1.1\r\nhost: h\r\nX-Thing:   spaced value  \r\n\r\n");
    assert_string_equal(seen, "host=h x=[spaced value] id=42 b=two path=/items/42 n=2");
    assert_non_null(strstr(fake_out(f), "HTTP/1.1 204 No Content\r\n"));
    assert_null(strstr(fake_out(f), "Content-Length"));
    done(f);
}

static void test_head_has_no_body(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "HEAD /p HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *out = fake_out(f);
    assert_non_null(strstr(out, "Content-Length: 5\r\n"));
    assert_null(strstr(out, "Hello"));
    done(f);
}

static void test_chunked_body_split(void **state)
{
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for (size_t cut = 1; cut < sizeof(req) - 1; cut += 3) {
        struct fake *f = new_fake(NULL);
        fake_feed(f, req, cut);
        fake_feed(f, req + cut, sizeof(req) - 1 - cut);
        assert_non_null(strstr(fake_out(f), "Content-Length: 11\r\n\r\nhello world"));
        done(f);
    }
}

static int status_of(const char *out)
{
    int st = 0;
    return sscanf(out, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

/* The framing checks carry their state across reads: each case split at every byte gives
 * the same answer, and nothing after a framing error is answered (regressions, issue 10). */
static void test_framing_split_everywhere(void **state)
{
    static const struct {
        const char *req;
        const char *want; /* in the output; NULL: one 400 and nothing else */
    } cases[] = {
        {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3 ;a=b;c=\"d;e\"\r\nabc\r\n2\r\n\r\r\r\n0;x\r\nT: v\r\n\r\n", "abc\r\r"},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\r\n \rGET /p HTTP/1.1\r\n"
         "Host: a\r\n\r\n", "Hello"},
        {"GET /p HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        /* what llhttp 8.1.0 alone lets through: head_scan's part */
        {"GET /p HTTP/1.1\r\nHost: a\r\n\rXGET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {"GET /p HTTP/1.1\r\nHost: a\r\nX:\rY: b\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 3\r\n\r\nabc"
         "GET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n"
         "GET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {"GET /p HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n0\r\n\rGET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
        {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabcGET /p HTTP/1.1\r\nHost: a\r\n\r\n", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].req);
        for (size_t cut = 1; cut < n; cut++) {
            struct fake *f = new_fake(NULL);
            fake_feed(f, cases[i].req, cut);
            if (!(f->c.flags & C_CLOSE_AFTER_SEND))
                fake_feed(f, cases[i].req + cut, n - cut);
            const char *out = fake_out(f);
            if (cases[i].want) {
                assert_non_null(strstr(out, cases[i].want));
            } else {
                if (status_of(out) != 400 || count_of(out, "HTTP/1.1") != 1)
                    fail_msg("case %zu cut %zu: [%.60s]", i, cut, out);
            }
            done(f);
        }
    }
}

/* A body far larger than the input buffer streams through it (the head is copied out). */
static void test_large_body_streams_through(void **state)
{
    struct fake *f = new_fake(NULL);
    size_t n = 100000;
    char head[128];
    int hl = snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", n);
    fake_feed(f, head, (size_t)hl);
    char chunk[4096];
    for (size_t sent = 0; sent < n; sent += sizeof(chunk)) {
        size_t len = n - sent < sizeof(chunk) ? n - sent : sizeof(chunk);
        for (size_t i = 0; i < len; i++)
            chunk[i] = (char)('a' + (sent + i) % 26);
        assert_true(conn_feed(&f->c, chunk, (uint32_t)len));
    }
    const char *out = fake_out(f);
    assert_non_null(strstr(out, "Content-Length: 100000\r\n"));
    const char *body = strstr(out, "\r\n\r\n") + 4;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(body[i], 'a' + i % 26);
    done(f);
}

/* A handler that answers later stops parsing until it does; order is kept. */
static void test_suspended_handler_holds_pipeline(void **state)
{
    struct fake *f = new_fake(NULL);
    parked = NULL;
    FEED(f, "GET /park HTTP/1.1\r\nHost: a\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(parked);
    assert_int_equal(f->c.pbuf.len, 0);
    assert_true(f->c.flags & C_PAUSED);
    rh_respond(parked, 200, "text/plain", "first", 5);
    const char *out = fake_out(f);
    const char *a = strstr(out, "first"), *b = strstr(out, "Hello");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    done(f);
}


/* Past 256 KiB of queued output the connection parses no further; once the output has
 * drained below 64 KiB it goes on (the unanswered requests wait in the input buffer). */
static void test_output_backpressure_stops_parsing(void **state)
{
    struct fake *f = new_fake(NULL);
    static const char one[] = "GET /big HTTP/1.1\r\nHost: a\r\n\r\n";
    char six[6 * (sizeof(one) - 1)];
    for (int i = 0; i < 6; i++)
        memcpy(six + i * (sizeof(one) - 1), one, sizeof(one) - 1);
    fake_feed(f, six, sizeof(six));
    assert_int_equal(count_of(fake_out(f), "HTTP/1.1 200"), 3); /* 300 KiB >= 256 KiB */
    assert_true(f->c.flags & C_OUT_FULL);
    assert_true(f->c.in_off < f->c.in_len);
    conn_obuf_release(&f->w, &f->c.pbuf); /* as if sent */
    conn_process(&f->c);
    assert_int_equal(count_of(fake_out(f), "HTTP/1.1 200"), 3); /* the other three */
    assert_int_equal(f->c.in_off, f->c.in_len);
    done(f);
}

/* rh_resp_write says RH_RESP_FULL at the high-water mark, refuses past the hard bound, and
 * rh_resp_on_writable calls back once there is room, or with -ECONNRESET once the client
 * has gone. */
static void test_stream_writer_backpressure(void **state)
{
    struct fake *f = new_fake(NULL);
    parked = NULL;
    writable_calls = 0;
    FEED(f, "GET /stream-full HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(parked);
    assert_int_equal(stream_last_ret, RH_RESP_FULL);
    assert_int_equal(stream_chunks, 4); /* 4 x 64 KiB + framing: just past 256 KiB */
    assert_true(conn_out_queued(&f->c) >= RH_OUT_HIGH);
    assert_int_equal(rh_resp_on_writable(parked, on_writable, NULL), 0);
    h1_resp_run_writable(&f->w);
    assert_int_equal(writable_calls, 0); /* still full: waits for the send */
    int ret = 0;
    for (int i = 0; i < 300 && ret >= 0; i++)
        ret = rh_resp_write(parked, big_body, sizeof(big_body));
    assert_int_equal(ret, -ENOBUFS);
    assert_true(conn_out_queued(&f->c) <= RH_OUT_MAX);
    conn_obuf_release(&f->w, &f->c.pbuf); /* as if sent */
    assert_int_equal(rh_resp_on_writable(parked, on_writable, NULL), 0);
    h1_resp_run_writable(&f->w);
    assert_int_equal(writable_calls, 1);
    assert_int_equal(writable_status, 0);
    /* the client leaves while the writer waits: it is told, and ends the response */
    conn_obuf_release(&f->w, &f->c.pbuf);
    for (int i = 0; i < 4; i++)
        rh_resp_write(parked, big_body, 64 * 1024);
    assert_int_equal(rh_resp_on_writable(parked, on_writable, NULL), 0);
    rh_req *r = parked;
    f->c.req = NULL;
    h1_req_orphan(r);
    assert_int_equal(rh_resp_on_writable(r, on_writable, NULL), -ECONNRESET);
    h1_resp_run_writable(&f->w);
    assert_int_equal(writable_calls, 2);
    assert_int_equal(writable_status, -ECONNRESET);
    assert_null(f->w.orphans); /* rh_resp_end released it */
    f->c.flags &= ~C_PAUSED;
    done(f);
}

/* The handler deadline: dispatch arms it; at expiry the connection answers 500 in the
 * request's place and closes after it; the request stays valid, its late answer dropped. */
static void test_handler_deadline_answers_500(void **state)
{
    struct fake *f = new_fake(NULL);
    parked = NULL;
    FEED(f, "GET /park HTTP/1.1\r\nHost: a\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(parked);
    assert_true(rh_timer_armed(&f->c.timer));
    rh_timer_cancel(&f->w.loop.wheel, &f->c.timer); /* expiry by hand: the fake has no fn */
    h1_req_deadline(parked);
    const char *out = fake_out(f);
    assert_int_equal(status_of(out), 500);
    assert_non_null(strstr(out, "Connection: close\r\n"));
    assert_null(strstr(out, "Hello")); /* nothing after it is answered */
    assert_ptr_equal(f->w.orphans, parked);
    size_t len = f->c.pbuf.len;
    assert_int_equal(rh_respond(parked, 200, "text/plain", "late", 4), 0);
    assert_int_equal(f->c.pbuf.len, len);
    assert_null(f->w.orphans);
    done(f);
}

static rh_mw_result mw_suspend(rh_req *req, void *u)
{
    parked = req;
    return RH_MW_SUSPEND;
}

/* A middleware that suspended and was not resumed in time: the same 500; resuming it later
 * runs the handler on the detached request, whose answer is dropped. */
static void test_handler_deadline_suspended_middleware(void **state)
{
    struct fake *f = new_fake(NULL);
    f->srv.mw[0] = (rh_middleware){.name = "suspend", .before = mw_suspend};
    f->srv.nmw = 1;
    parked = NULL;
    FEED(f, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(parked);
    assert_int_equal(f->c.pbuf.len, 0);
    rh_timer_cancel(&f->w.loop.wheel, &f->c.timer);
    h1_req_deadline(parked);
    assert_int_equal(status_of(fake_out(f)), 500);
    size_t len = f->c.pbuf.len;
    rh_next(parked); /* the route's handler answers "Hello" into the void */
    assert_int_equal(f->c.pbuf.len, len);
    assert_null(f->w.orphans);
    done(f);
}

static void no_deadline(rh_config *c) { c->handler_timeout_ms = 0; }

static void test_handler_deadline_zero_is_none(void **state)
{
    struct fake *f = new_fake(no_deadline);
    parked = NULL;
    FEED(f, "GET /park HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(parked);
    assert_false(rh_timer_armed(&f->c.timer));
    rh_respond(parked, 200, "text/plain", "x", 1);
    done(f);
}


static void small_body(rh_config *c) { c->max_body = 10; }
static void no_body_limit(rh_config *c) { c->max_body = SIZE_MAX; }

static void expect_status(const char *req, size_t len, int status, void (*tweak)(rh_config *))
{
    struct fake *f = new_fake(tweak);
    fake_feed(f, req, len);
    const char *out = fake_out(f);
    if (status_of(out) != status)
        fail_msg("expected %d for [%.40s...], got [%.60s]", status, req, out);
    assert_non_null(strstr(out, "Connection: close\r\n"));
    assert_true(f->c.flags & C_CLOSE_AFTER_SEND);
    done(f);
}
#define EXPECT(lit, st) expect_status(lit, sizeof(lit) - 1, st, NULL)

static void test_error_statuses(void **state)
{
    EXPECT("FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    EXPECT("PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    EXPECT("\x16\x03\x01\x02\x00 garbage\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\n\r\n", 400);                        /* no Host */
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);  /* two */
    EXPECT("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417);
    /* What llhttp 8.1.0 lets through and we refuse (regressions: each was served 200). */
    EXPECT("GET /p HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n", 400);  /* obs-fold */
    EXPECT("GET /p HTTP/1.1\r\nHost: a\r\nX Y: a\r\n\r\n", 400);           /* space in name */
    EXPECT("GET /p HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n", 400);            /* before colon */
    EXPECT("GET /p HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", 400);              /* empty name */
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
           "3\r\nabc\r\n0\r\n\r\n", 501);                                 /* a coding we lack */
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT("GET /p HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400);         /* bare CR */
    EXPECT("GET /p HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", 400);    /* DEL */
    /* Issue 10's smuggling and RFC 9112 cases (each was served, or hung). */
    EXPECT("GET /p HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);                /* Host path */
    EXPECT("GET /p HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    EXPECT("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhelloXX0\r\n\r\n", 400);                                 /* data, no CRLF */
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\rXhello\r\n0\r\n\r\n", 400);                               /* bare CR: size */
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\n\rXGET / HTTP/1.1\r\n\r\n", 400);                        /* ... last CRLF */
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 3\r\n\r\nabc", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400);
    EXPECT("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           "ffffffffffffffff\r\n", 413);                                   /* at once */
    EXPECT("GET /p HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 200);
    static const char big[] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    expect_status(big, sizeof(big) - 1, 413, small_body);
    static const char ovf[] = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "10000000000000000\r\n"; /* 2^64: over any limit, 400 */
    expect_status(ovf, sizeof(ovf) - 1, 400, no_body_limit);
}

static void test_uri_and_header_limits(void **state)
{
    char buf[14000];
    int n = snprintf(buf, sizeof(buf), "GET /%0*d HTTP/1.1\r\nHost: a\r\n\r\n", 8200, 0);
    expect_status(buf, (size_t)n, 414, NULL);
    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n", 12300, 0);
    expect_status(buf, (size_t)n, 431, NULL);
    size_t len = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "X-%d: v\r\n", i);
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "\r\n");
    expect_status(buf, len, 431, NULL);
}

/* Nothing after a parse error is parsed: a smuggled second request gets no answer. */
static void test_nothing_after_error(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(count_of(fake_out(f), "HTTP/1.1"), 1);
    done(f);
}

static void test_http10_closes(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET /p HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(fake_out(f), "Connection: close"));
    done(f);
    f = new_fake(NULL);
    FEED(f, "GET /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_non_null(strstr(fake_out(f), "Connection: keep-alive"));
    assert_false(f->c.flags & C_CLOSE_AFTER_SEND);
    done(f);
}

static void test_expect_continue(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_string_equal(fake_out(f), "HTTP/1.1 100 Continue\r\n\r\n");
    FEED(f, "ok");
    assert_non_null(strstr(fake_out(f), "\r\n\r\nok"));
    done(f);
}

static char hdr_result[4];
static void h_inject(rh_req *req, void *u)
{
    hdr_result[0] = rh_resp_header(req, "X-Bad", "a\r\nSet-Cookie: x") == -EINVAL;
    hdr_result[1] = rh_resp_header(req, "Bad Name", "v") == -EINVAL;
    hdr_result[2] = rh_resp_header(req, "X-Good", "fine") == 0;
    rh_respond(req, 200, NULL, NULL, 0);
    hdr_result[3] = rh_respond(req, 200, NULL, NULL, 0) == -EALREADY;
}

static void test_header_injection_refused(void **state)
{
    struct fake *f = new_fake(NULL);
    app_router_add(f->srv.routes, "GET", "/inject", h_inject, NULL, false);
    FEED(f, "GET /inject HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_memory_equal(hdr_result, "\1\1\1\1", 4);
    assert_null(strstr(fake_out(f), "Set-Cookie"));
    assert_non_null(strstr(fake_out(f), "X-Good: fine\r\n"));
    done(f);
}

static void h_stream(rh_req *req, void *u)
{
    rh_resp_start(req, 200, "text/plain");
    rh_resp_write(req, "abc", 3);
    rh_resp_write(req, "0123456789abcdefXY", 18);
    rh_resp_end(req);
}

static void test_chunked_response(void **state)
{
    struct fake *f = new_fake(NULL);
    app_router_add(f->srv.routes, "GET", "/stream", h_stream, NULL, false);
    FEED(f, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(fake_out(f), "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n12\r\n0123456789abcdefXY\r\n0\r\n\r\n"));
    done(f);
    f = new_fake(NULL); /* HTTP/1.0 has no chunked encoding: close-delimited instead */
    app_router_add(f->srv.routes, "GET", "/stream", h_stream, NULL, false);
    FEED(f, "GET /stream HTTP/1.0\r\n\r\n");
    assert_null(strstr(fake_out(f), "chunked"));
    assert_non_null(strstr(fake_out(f), "Connection: close\r\n\r\nabc0123456789abcdefXY"));
    done(f);
}

static void test_absolute_form_target_routes_by_path(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET http://example.com/items/7?b=x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_string_equal(seen, "host=example.com x=[] id=7 b=x path=/items/7 n=1");
    done(f);
    f = new_fake(NULL);
    FEED(f, "GET /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX: tab\there\r\n\r\n0\r\n\r\n");
    assert_non_null(strstr(fake_out(f), "HTTP/1.1 200 OK")); /* chunked, and HTAB in a value */
    done(f);
}

static void test_not_found_and_method(void **state)
{
    struct fake *f = new_fake(NULL);
    FEED(f, "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\nDELETE /p HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *out = fake_out(f);
    assert_non_null(strstr(out, "HTTP/1.1 404 Not Found"));
    assert_non_null(strstr(out, "HTTP/1.1 405 Method Not Allowed"));
    assert_non_null(strstr(out, "Allow: GET\r\n"));
    done(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_chunked_body_split),
        cmocka_unit_test(test_framing_split_everywhere),
        cmocka_unit_test(test_large_body_streams_through),
        cmocka_unit_test(test_suspended_handler_holds_pipeline),
        cmocka_unit_test(test_output_backpressure_stops_parsing),
        cmocka_unit_test(test_stream_writer_backpressure),
        cmocka_unit_test(test_handler_deadline_answers_500),
        cmocka_unit_test(test_handler_deadline_suspended_middleware),
        cmocka_unit_test(test_handler_deadline_zero_is_none),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_uri_and_header_limits),
        cmocka_unit_test(test_nothing_after_error),
        cmocka_unit_test(test_http10_closes),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_header_injection_refused),
        cmocka_unit_test(test_chunked_response),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_absolute_form_target_routes_by_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
