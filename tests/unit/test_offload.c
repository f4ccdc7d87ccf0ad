/* Offload end to end on a real embedded server: context values cross the thread hop both
 * ways, rh_call_on_ring runs on the ring with the request current, a client that leaves
 * cancels a queued task, destructors run once on disconnect and at shutdown, and the pool's
 * bounds answer 503/504. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "include/ringhttp.h"
#include "tests/unit/unit_client.h"

static rh_ctx_key k_a, k_b;
static atomic_int destroyed, work_ran, work_started;
static void destroy_count(void *v) { atomic_fetch_add(&destroyed, 1); }

/* ---- a tiny blocking HTTP client ---- */

/* The whole answer of a Connection: close request. */
static char *get(uint16_t port, const char *path)
{
    static char buf[8192];
    int fd = dial(port);
    send_get(fd, path);
    return read_all(fd, buf, sizeof(buf));
}

static int status_of(const char *resp)
{
    int st = 0;
    return sscanf(resp, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

/* ---- routes ---- */

/* Written by server threads, read by the test after the answer: atomics, because TSan
 * cannot see the socket round trip that orders them. */
static _Atomic pid_t ring_tid, pool_tid, call_tid;
static atomic_bool call_saw_req;
static rh_req *_Atomic call_req;

static void ctx_work(rh_req *req, void *arg)
{
    pool_tid = gettid();
    const char *a = rh_ctx_get(k_a);               /* set on the ring */
    rh_ctx_set(k_b, (a && !strcmp(a, "ring")) ? "pool-saw-ring" : "pool-missed");
}

static void ctx_done(rh_req *req, int status, void *arg)
{
    const char *b = rh_ctx_get(k_b); /* set on the pool thread */
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s %d", status, b ? b : "-", gettid() == ring_tid);
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

static void on_ctx(rh_req *req, void *u)
{
    ring_tid = gettid();
    rh_ctx_set(k_a, "ring");
    rh_offload(req, ctx_work, ctx_done, NULL);
}

static void on_ring(void *arg)
{
    call_tid = gettid();
    call_saw_req = rh_current_req() == call_req && !strcmp(rh_ctx_get(k_a), "ring");
}

static void call_work(rh_req *req, void *arg)
{
    call_req = req;
    assert_int_equal(rh_call_on_ring(on_ring, NULL), 0);
}

static void call_done(rh_req *req, int status, void *arg)
{
    rh_respond(req, 200, "text/plain", "called", 6);
}

static void on_call(rh_req *req, void *u)
{
    ring_tid = gettid();
    rh_ctx_set(k_a, "ring");
    rh_offload(req, call_work, call_done, NULL);
}

/* Holds its pool thread for ms=..., cooperatively. */
static void slow_work(rh_req *req, void *arg)
{
    atomic_fetch_add(&work_started, 1);
    rh_ctx_set(k_b, "slow");
    for (int i = 0; i < 60 && rh_offload_check() == 0; i++)
        sleep_ms(5);
    atomic_fetch_add(&work_ran, 1);
}

static void slow_done(rh_req *req, int status, void *arg)
{
    if (status == 0)
        rh_respond(req, 200, "text/plain", "slow", 4);
}

static void on_slow(rh_req *req, void *u) { rh_offload(req, slow_work, slow_done, NULL); }

/* Holds its pool thread 250 ms without looking at its deadline. */
static void stubborn_work(rh_req *req, void *arg)
{
    atomic_fetch_add(&work_started, 1);
    sleep_ms(250);
}

static void on_stubborn(rh_req *req, void *u) { rh_offload(req, stubborn_work, slow_done, NULL); }

/* In the bulkhead "g" (one thread at most), or in a group nobody declared. */
static void on_grp(rh_req *req, void *u) { rh_offload_group(req, "g", slow_work, slow_done, NULL); }
static void on_nogrp(rh_req *req, void *u)
{
    rh_offload_group(req, "nope", slow_work, slow_done, NULL);
}

static void blocking_handler(rh_req *req, void *u)
{
    char body[32];
    int n = snprintf(body, sizeof(body), "blocking %d", gettid() != ring_tid);
    rh_respond(req, 201, "text/plain", body, (size_t)n);
}

/* ---- fixture ---- */

static rh_server *start(unsigned pool_threads, unsigned queue, unsigned timeout_ms)
{
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.pool_threads = pool_threads;
    cfg.pool_queue = queue;
    cfg.pool_timeout_ms = timeout_ms;
    cfg.quiet = true;
    rh_server *srv;
    assert_int_equal(rh_server_new(&cfg, &srv), 0);
    assert_int_equal(rh_route(srv, "GET", "/ctx", on_ctx, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/call", on_call, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/slow", on_slow, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/stubborn", on_stubborn, NULL), 0);
    assert_int_equal(rh_route_blocking(srv, "GET", "/blocking", blocking_handler, NULL, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/grp", on_grp, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/nogrp", on_nogrp, NULL), 0);
    assert_int_equal(rh_pool_group(srv, "default", 1, 0), -EINVAL);
    assert_int_equal(rh_pool_group(srv, "g", 1, 4), 0);
    assert_int_equal(rh_server_start(srv), 0);
    assert_int_equal(rh_pool_group(srv, "late", 1, 0), -EBUSY);
    atomic_store(&destroyed, 0);
    atomic_store(&work_ran, 0);
    atomic_store(&work_started, 0);
    return srv;
}

static int register_keys(void **state)
{
    k_a = rh_ctx_key_new("a", NULL);
    k_b = rh_ctx_key_new("b", destroy_count);
    return 0;
}

static void test_values_cross_both_ways(void **state)
{
    rh_server *srv = start(2, 16, 0);
    char *resp = get(rh_server_port(srv), "/ctx");
    assert_int_equal(status_of(resp), 200);
    assert_non_null(strstr(resp, "\r\n\r\n0 pool-saw-ring 1"));
    assert_true(pool_tid != ring_tid);
    sleep_ms(20);
    assert_int_equal(atomic_load(&destroyed), 1); /* b's destructor, once, at request end */
    rh_server_free(srv);
    assert_int_equal(atomic_load(&destroyed), 1);
}

static void test_call_on_ring(void **state)
{
    rh_server *srv = start(2, 16, 0);
    assert_int_equal(status_of(get(rh_server_port(srv), "/call")), 200);
    assert_int_equal(call_tid, ring_tid);
    assert_true(call_saw_req);
    assert_int_equal(rh_call_on_ring(on_ring, NULL), -EPERM); /* not on a pool thread */
    rh_server_free(srv);
}

static void test_blocking_route(void **state)
{
    rh_server *srv = start(2, 16, 0);
    ring_tid = 0;
    get(rh_server_port(srv), "/ctx"); /* learn the ring's thread id */
    char *resp = get(rh_server_port(srv), "/blocking");
    assert_int_equal(status_of(resp), 201);
    assert_non_null(strstr(resp, "blocking 1"));
    rh_server_free(srv);
}

/* One pool thread busy; a second request queued behind it; its client leaves: the queued
 * task never runs, and its request's destructors still run. */
static void test_client_gone_cancels_queued(void **state)
{
    rh_server *srv = start(1, 16, 0);
    uint16_t port = rh_server_port(srv);
    int busy = dial(port);
    send_get(busy, "/slow");
    while (atomic_load(&work_started) == 0)
        sleep_ms(1);
    int gone = dial(port);
    send_get(gone, "/slow");
    sleep_ms(20);
    close(gone); /* leaves while its task waits in the queue */
    char buf[512];
    ssize_t n = read(busy, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_int_equal(status_of(buf), 200);
    close(busy);
    sleep_ms(100);
    assert_int_equal(atomic_load(&work_ran), 1); /* only the first ran */
    assert_int_equal(atomic_load(&work_started), 1);
    rh_server_free(srv);
}

/* The client leaves while its work runs: the work sees -ECANCELED, destructors run once. */
static void test_client_gone_mid_work(void **state)
{
    rh_server *srv = start(1, 16, 0);
    int fd = dial(rh_server_port(srv));
    send_get(fd, "/slow");
    while (atomic_load(&work_started) == 0)
        sleep_ms(1);
    close(fd);
    for (int i = 0; i < 200 && atomic_load(&destroyed) == 0; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&destroyed), 1);
    rh_server_free(srv);
    assert_int_equal(atomic_load(&destroyed), 1);
}

/* The server stops with work in flight: it finishes, the request ends, destructors run once. */
static void test_shutdown_mid_work(void **state)
{
    rh_server *srv = start(1, 16, 0);
    int fd = dial(rh_server_port(srv));
    send_get(fd, "/slow");
    while (atomic_load(&work_started) == 0)
        sleep_ms(1);
    rh_server_free(srv);
    assert_int_equal(atomic_load(&destroyed), 1);
    close(fd);
}

static void test_full_queue_is_503(void **state)
{
    rh_server *srv = start(1, 2, 0);
    uint16_t port = rh_server_port(srv);
    int a = dial(port), b = dial(port), c = dial(port);
    send_get(a, "/slow");
    while (atomic_load(&work_started) == 0)
        sleep_ms(1);
    send_get(b, "/slow"); /* these two fill the queue of two */
    send_get(c, "/slow");
    sleep_ms(20);
    char *resp = get(port, "/slow");
    assert_int_equal(status_of(resp), 503);
    assert_non_null(strstr(resp, "Retry-After: 1\r\n"));
    close(a);
    close(b);
    close(c);
    rh_server_free(srv);
}

/* Group g may hold one thread: its second task waits though a thread is free, and that
 * thread serves the default group at once. */
static void test_group_holds_only_its_share(void **state)
{
    rh_server *srv = start(2, 16, 0);
    uint16_t port = rh_server_port(srv);
    int a = dial(port), b = dial(port);
    send_get(a, "/grp");
    while (atomic_load(&work_started) == 0)
        sleep_ms(1);
    send_get(b, "/grp");
    sleep_ms(50);
    assert_int_equal(atomic_load(&work_started), 1); /* b waits for g's one thread */
    char *resp = get(port, "/ctx");                  /* the other thread is free for it */
    assert_int_equal(status_of(resp), 200);
    assert_int_equal(atomic_load(&work_started), 1);
    resp = get(port, "/nogrp");
    assert_int_equal(status_of(resp), 500);
    assert_non_null(strstr(resp, "no such group"));
    char buf[512];
    ssize_t n = read(b, buf, sizeof(buf) - 1); /* after a's 300 ms */
    assert_true(n > 0);
    buf[n] = 0;
    assert_int_equal(status_of(buf), 200);
    assert_int_equal(atomic_load(&work_started), 2);
    close(a);
    close(b);
    rh_server_free(srv);
}

static void test_overrun_is_504(void **state)
{
    rh_server *srv = start(1, 16, 100);
    /* runs 300 ms unless stopped: its check sees the deadline at 100 ms -> 504 */
    assert_int_equal(status_of(get(rh_server_port(srv), "/slow")), 504);
    rh_server_free(srv);
}

static void test_expired_in_queue_is_503(void **state)
{
    rh_server *srv = start(1, 16, 100);
    uint16_t port = rh_server_port(srv);
    int a = dial(port);
    send_get(a, "/stubborn"); /* holds the only thread 250 ms, deaf to its deadline */
    while (atomic_load(&work_started) == 0)
        sleep_ms(1);
    int b = dial(port);
    send_get(b, "/slow"); /* waits past 100 ms in the queue -> 503, never runs */
    char buf[512];
    ssize_t n = read(b, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_int_equal(status_of(buf), 503);
    n = read(a, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_int_equal(status_of(buf), 200);
    assert_int_equal(atomic_load(&work_started), 1);
    close(a);
    close(b);
    rh_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_cross_both_ways),
        cmocka_unit_test(test_call_on_ring),
        cmocka_unit_test(test_blocking_route),
        cmocka_unit_test(test_client_gone_cancels_queued),
        cmocka_unit_test(test_client_gone_mid_work),
        cmocka_unit_test(test_shutdown_mid_work),
        cmocka_unit_test(test_full_queue_is_503),
        cmocka_unit_test(test_group_holds_only_its_share),
        cmocka_unit_test(test_overrun_is_504),
        cmocka_unit_test(test_expired_in_queue_is_503),
    };
    return cmocka_run_group_tests(tests, register_keys, NULL);
}
