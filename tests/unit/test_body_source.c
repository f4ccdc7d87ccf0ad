/* The body-source contract (http1/body_source.c), through the real connection data path:
 * proceed is called once the head has been sent (and below the low-water mark), never while
 * it is still queued; stop is called when the connection closes mid-body; h1_body_done ends
 * the request and the next pipelined request goes on. A real ring hands out the SQEs (never
 * submitted); send completions are made up and given to the connection's own handler. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "tests/unit/fake_conn.h"

/* A test source: each proceed writes the next piece of BODY; the last one ends the body. */
static const char BODY[] = "abcdef";
struct test_src {
    int proceeds, stops;
    unsigned pieces_sent, piece_len;
    size_t big; /* > 0: the first proceed writes this many bytes first (back-pressure) */
    bool conn_at_stop;
    rh_req *req;
};
static struct test_src src;
static char big_buf[512 * 1024];

static void src_proceed(struct rh_req *r, void *self)
{
    struct test_src *s = self;
    s->proceeds++;
    if (s->big) {
        h1_resp_write_raw(r->conn, big_buf, s->big);
        s->big = 0;
        return;
    }
    h1_resp_write_raw(r->conn, BODY + s->pieces_sent * s->piece_len, s->piece_len);
    if (++s->pieces_sent * s->piece_len == sizeof(BODY) - 1)
        h1_body_done(r);
}

static void src_stop(struct rh_req *r, void *self)
{
    struct test_src *s = self;
    s->stops++;
    s->conn_at_stop = r->conn != NULL;
    h1_body_done(r); /* nothing else holds r: it ends now */
}

static const struct h1_body_ops test_ops = {.proceed = src_proceed, .stop = src_stop};

static void h_src(rh_req *req, void *u)
{
    src.req = req;
    if (h1_resp_head_only(req, 200, "text/plain", sizeof(BODY) - 1) == 0)
        h1_body_attach(req, &test_ops, &src);
}

static void h_plain(rh_req *req, void *u) { rh_respond(req, 200, "text/plain", "Hello", 5); }

static int writer_calls, writer_status;
static void on_writable(rh_req *req, int status, void *udata)
{
    writer_calls++;
    writer_status = status;
    if (status < 0)
        rh_resp_end(req);
}
static void h_stream(rh_req *req, void *u)
{
    src.req = req;
    rh_resp_start(req, 200, "text/plain");
    rh_resp_write(req, big_buf, RH_OUT_HIGH); /* full: the writer waits for room */
    rh_resp_on_writable(req, on_writable, NULL);
}

/* The fake connection, with a ring to take SQEs from and a slot table of one. */
struct rig {
    struct fake f;
    uint32_t free_idx[1];
    char sent[4096]; /* what the made-up sends took, the big bodies' bytes left out */
    size_t sent_len;
};

static struct rig *rig_new(void)
{
    struct rig *g = calloc(1, sizeof(*g));
    fake_init(&g->f, NULL);
    app_router_add(g->f.srv.routes, "GET", "/src", h_src, NULL, false);
    app_router_add(g->f.srv.routes, "GET", "/stream", h_stream, NULL, false);
    app_router_add(g->f.srv.routes, "GET", "/p", h_plain, NULL, false);
    assert_int_equal(io_uring_queue_init(64, &g->f.w.loop.ring, 0), 0);
    conn_register_ops(&g->f.w.loop);
    g->f.w.conns = &g->f.c; /* slot 0: completions find the connection */
    g->f.w.free_idx = g->free_idx;
    g->f.w.open_conns = 1;
    memset(&src, 0, sizeof(src));
    src.piece_len = 3;
    writer_calls = 0;
    return g;
}

static void rig_free(struct rig *g)
{
    io_uring_queue_exit(&g->f.w.loop.ring);
    fake_free(&g->f);
    free(g);
}

/* The send in flight completes: n bytes of it (0: all). */
static void send_completes(struct rig *g, size_t n)
{
    struct rh_conn *c = &g->f.c;
    assert_true(c->flags & C_SEND_INFLIGHT);
    size_t left = c->wbuf.len - c->wbuf.sent;
    n = n ? n : left;
    if (n < 1024 && g->sent_len + n < sizeof(g->sent)) {
        memcpy(g->sent + g->sent_len, c->wbuf.data + c->wbuf.sent, n);
        g->sent_len += n;
        g->sent[g->sent_len] = 0;
    }
    struct io_uring_cqe cqe = {.user_data = rh_ud_make(CONN_OP_SEND, c->idx, c->gen),
                               .res = (int)n};
    g->f.w.loop.handlers[CONN_OP_SEND](&g->f.w.loop, &cqe);
}

static void flush(struct rig *g) { conn_flush_dirty(&g->f.w.loop); }

#define PIPELINED "GET /src HTTP/1.1\r\nHost: a\r\n\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n"

/* proceed waits for the head to be sent; each drain calls it again; h1_body_done ends the
 * request and the pipelined request behind it is answered. */
static void test_proceed_after_drain_done_resumes_pipeline(void **state)
{
    struct rig *g = rig_new();
    FEED(&g->f, PIPELINED);
    assert_non_null(src.req);
    assert_int_equal(src.proceeds, 0);
    assert_non_null(strstr(fake_out(&g->f), "Content-Length: 6\r\n"));
    assert_null(strstr(fake_out(&g->f), "Hello")); /* paused behind the body */
    flush(g); /* the head goes out */
    assert_int_equal(src.proceeds, 0); /* not while it is in flight */
    send_completes(g, 0);
    assert_int_equal(src.proceeds, 1); /* drained: "abc" */
    flush(g);
    send_completes(g, 0);
    assert_int_equal(src.proceeds, 2); /* "def", done: /p answered behind it */
    assert_null(g->f.c.req);
    assert_false(g->f.c.flags & C_PAUSED);
    flush(g);
    send_completes(g, 0);
    assert_int_equal(src.proceeds, 2);
    const char *body = strstr(g->sent, "\r\n\r\n");
    assert_non_null(body);
    assert_true(strncmp(body + 4, "abcdefHTTP/1.1 200 OK\r\n", 23) == 0);
    assert_non_null(strstr(body, "\r\n\r\nHello"));
    assert_int_equal(g->f.c.requests, 2);
    rig_free(g);
}

/* A source with more queued than the high-water mark proceeds again once a partial send
 * brings it to the low-water mark, without waiting for the rest to drain. */
static void test_proceed_below_low_water_mark(void **state)
{
    struct rig *g = rig_new();
    src.big = RH_OUT_HIGH + 1024;
    FEED(&g->f, "GET /src HTTP/1.1\r\nHost: a\r\n\r\n");
    flush(g);
    send_completes(g, 0);
    assert_int_equal(src.proceeds, 1); /* wrote past the high-water mark */
    flush(g);
    size_t queued = conn_out_queued(&g->f.c);
    send_completes(g, queued - RH_OUT_LOW - 1); /* short: still above the low mark */
    assert_int_equal(src.proceeds, 1);
    send_completes(g, 2); /* now at or below it */
    assert_int_equal(src.proceeds, 2);
    rig_free(g);
}

/* The connection closes with the body unfinished: stop, once, with the request already
 * detached; h1_body_done from stop ends it (no orphan left behind). */
static void test_stop_when_connection_closes_mid_body(void **state)
{
    struct rig *g = rig_new();
    FEED(&g->f, PIPELINED);
    flush(g);
    send_completes(g, 0);
    assert_int_equal(src.proceeds, 1);
    assert_int_equal(rh_resp_on_writable(src.req, on_writable, NULL), -EBUSY);
    conn_close(&g->f.c);
    assert_int_equal(src.stops, 1);
    assert_false(src.conn_at_stop);
    assert_int_equal(src.proceeds, 1);
    assert_null(g->f.c.req);
    assert_null(g->f.w.orphans);
    assert_non_null(g->f.w.free_reqs); /* ended: back in the pool */
    rig_free(g);
}

/* A streaming writer waiting for room is a body source too: a close stops it, which calls
 * the writer with -ECONNRESET at the next flush; its rh_resp_end ends the orphan. */
static void test_stream_writer_is_stopped_on_close(void **state)
{
    struct rig *g = rig_new();
    FEED(&g->f, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(g->f.c.req);
    assert_non_null(g->f.c.req->body_src.ops);
    conn_close(&g->f.c);
    assert_null(g->f.c.req);
    assert_non_null(g->f.w.orphans); /* until its writer ends it */
    assert_int_equal(writer_calls, 0);
    h1_resp_run_writable(&g->f.w);
    assert_int_equal(writer_calls, 1);
    assert_int_equal(writer_status, -ECONNRESET);
    assert_null(g->f.w.orphans);
    rig_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proceed_after_drain_done_resumes_pipeline),
        cmocka_unit_test(test_proceed_below_low_water_mark),
        cmocka_unit_test(test_stop_when_connection_closes_mid_body),
        cmocka_unit_test(test_stream_writer_is_stopped_on_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
