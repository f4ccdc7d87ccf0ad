/* Context slots and the middleware chain: counts of set/get/destroy, isolation between two
 * requests interleaved on one ring, suspend/resume, short-circuit and after hooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "tests/unit/fake_conn.h"

static int destroyed;
static char destroyed_log[256];
static void destroy_str(void *v)
{
    destroyed++;
    strncat(destroyed_log, (const char *)v, sizeof(destroyed_log) - strlen(destroyed_log) - 1);
    free(v);
}

static rh_ctx_key k_user, k_plain;

static int register_keys(void **state)
{
    k_user = rh_ctx_key_new("user", destroy_str);
    k_plain = rh_ctx_key_new("plain", NULL);
    assert_true(k_user >= 0 && k_plain >= 0 && k_user != k_plain);
    return 0;
}

static void test_slot_set_get_destroy(void **state)
{
    struct rh_ctx c;
    ctx_init(&c);
    destroyed = 0;
    destroyed_log[0] = 0;
    assert_null(ctx_slot_get(&c, k_user));
    assert_int_equal(ctx_slot_set(&c, k_user, strdup("a")), 0);
    assert_string_equal(ctx_slot_get(&c, k_user), "a");
    assert_int_equal(ctx_slot_set(&c, k_user, strdup("b")), 0); /* replaces: "a" destroyed */
    assert_int_equal(destroyed, 1);
    assert_int_equal(ctx_slot_set(&c, k_plain, (void *)7), 0);
    ctx_release(&c);
    assert_int_equal(destroyed, 2);
    assert_string_equal(destroyed_log, "ab");
    ctx_release(&c); /* exactly once */
    assert_int_equal(destroyed, 2);
    assert_null(ctx_slot_get(&c, k_user));
    assert_int_equal(ctx_slot_set(&c, 999, NULL), -EINVAL);
}

static void test_no_current_outside_requests(void **state)
{
    assert_null(rh_current_req());
    assert_null(rh_ctx_get(k_user));
    assert_int_equal(rh_ctx_set(k_user, NULL), -ESRCH);
}

/* ---- two requests interleaved on one worker ---- */

static rh_req *parked_a;
static char seen_by_a[64], seen_by_b[64];

static void h_a(rh_req *req, void *u)
{
    rh_ctx_set(k_user, strdup("A"));
    parked_a = req; /* suspends: answered later, like an offload */
}

static void h_b(rh_req *req, void *u)
{
    snprintf(seen_by_b, sizeof(seen_by_b), "%s", rh_ctx_get(k_user) ? "leak" : "none");
    rh_ctx_set(k_user, strdup("B"));
    snprintf(seen_by_b + 4, sizeof(seen_by_b) - 4, "|%s", (char *)rh_ctx_get(k_user));
    rh_respond(req, 200, NULL, "b", 1);
}

static void resume_a(void)
{
    /* What the ring does for a done callback: make the request current, run, leave. */
    struct rh_ctx *prev = h1_req_enter(parked_a);
    snprintf(seen_by_a, sizeof(seen_by_a), "%s", (char *)rh_ctx_get(k_user));
    assert_ptr_equal(rh_current_req(), parked_a);
    rh_respond(parked_a, 200, NULL, "a", 1);
    h1_req_leave(parked_a, prev);
}

static void test_interleaved_requests_are_isolated(void **state)
{
    struct fake *fa = malloc(sizeof(*fa)), *fb = malloc(sizeof(*fb));
    fake_init(fa, NULL);
    fake_init(fb, NULL);
    app_router_add(fa->srv.routes, "GET", "/x", h_a, NULL, false);
    app_router_add(fb->srv.routes, "GET", "/x", h_b, NULL, false);
    destroyed = 0;
    destroyed_log[0] = 0;
    FEED(fa, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(parked_a);
    assert_null(rh_current_req()); /* cleared once A's handler returned */
    FEED(fb, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_string_equal(seen_by_b, "none|B");
    assert_int_equal(destroyed, 1); /* B's value, at B's end */
    resume_a();
    assert_string_equal(seen_by_a, "A");
    assert_int_equal(destroyed, 2);
    assert_string_equal(destroyed_log, "BA");
    assert_null(rh_current_req());
    fake_free(fa);
    fake_free(fb);
    free(fa);
    free(fb);
}

/* Destructors run when the connection goes away under a suspended request, once it ends. */
static void test_destroy_on_orphan(void **state)
{
    struct fake *f = malloc(sizeof(*f));
    fake_init(f, NULL);
    app_router_add(f->srv.routes, "GET", "/x", h_a, NULL, false);
    destroyed = 0;
    FEED(f, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    rh_req *r = parked_a;
    /* What conn_finish_close does for a paused request: orphan it. */
    f->c.req = NULL;
    r->conn = NULL;
    h1_req_detach_head(r);
    assert_int_equal(destroyed, 0);
    struct rh_ctx *prev = h1_req_enter(r);
    assert_int_equal(rh_respond(r, 200, NULL, NULL, 0), 0); /* dropped, but ends it */
    h1_req_leave(r, prev);
    assert_int_equal(destroyed, 1);
    fake_free(f);
    free(f);
}

/* ---- middleware ---- */

static char trace[256];
static rh_req *suspended;

static rh_mw_result mw_one(rh_req *req, void *u)
{
    strcat(trace, "1<");
    rh_ctx_set(k_plain, (void *)11);
    return RH_MW_NEXT;
}
static void mw_one_after(rh_req *req, int status, void *u)
{
    strcat(trace, ">1");
    rh_resp_header(req, "X-One", "yes");
}
static rh_mw_result mw_auth(rh_req *req, void *u)
{
    strcat(trace, "auth<");
    rh_str p = rh_req_path(req);
    if (p.len == 7 && memcmp(p.ptr, "/secret", 7) == 0) {
        rh_respond(req, 403, "text/plain", "no\n", 3);
        return RH_MW_DONE;
    }
    if (p.len == 5 && memcmp(p.ptr, "/slow", 5) == 0) {
        suspended = req;
        return RH_MW_SUSPEND;
    }
    return RH_MW_NEXT;
}
static void mw_auth_after(rh_req *req, int status, void *u) { strcat(trace, ">auth"); }
static void h_ok(rh_req *req, void *u)
{
    strcat(trace, (intptr_t)rh_ctx_get(k_plain) == 11 ? "H" : "H?");
    rh_respond(req, 200, "text/plain", "ok", 2);
}
static int log_count;
static void mw_log_after(rh_req *req, int status, void *u) { log_count++; }

static struct fake *mw_fake(void)
{
    struct fake *f = malloc(sizeof(*f));
    fake_init(f, NULL);
    rh_middleware log = {.name = "log", .after = mw_log_after, .flags = RH_MW_ALL_RESPONSES};
    rh_middleware one = {.name = "one", .before = mw_one, .after = mw_one_after};
    rh_middleware auth = {.name = "auth", .before = mw_auth, .after = mw_auth_after};
    assert_int_equal(rh_use(&f->srv, &log), 0);
    assert_int_equal(rh_use(&f->srv, &one), 0);
    assert_int_equal(rh_use(&f->srv, &auth), 0);
    app_router_add(f->srv.routes, "GET", "/*", h_ok, NULL, false);
    trace[0] = 0;
    log_count = 0;
    return f;
}

static void test_chain_order_and_after_headers(void **state)
{
    struct fake *f = mw_fake();
    FEED(f, "GET /page HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_string_equal(trace, "1<auth<H>auth>1");
    assert_non_null(strstr(fake_out(f), "X-One: yes\r\n"));
    assert_int_equal(log_count, 1);
    fake_free(f);
    free(f);
}

static void test_short_circuit(void **state)
{
    struct fake *f = mw_fake();
    FEED(f, "GET /secret HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_string_equal(trace, "1<auth<>auth>1");
    assert_non_null(strstr(fake_out(f), "HTTP/1.1 403 Forbidden"));
    fake_free(f);
    free(f);
}

static void test_suspend_and_resume(void **state)
{
    struct fake *f = mw_fake();
    suspended = NULL;
    FEED(f, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /page HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(suspended);
    assert_string_equal(trace, "1<auth<");
    assert_int_equal(f->c.pbuf.len, 0); /* the pipelined request waits its turn */
    rh_next(suspended); /* from a done callback, on the ring */
    assert_string_equal(trace, "1<auth<H>auth>11<auth<H>auth>1");
    assert_int_equal(count_of(fake_out(f), "200 OK"), 2);
    fake_free(f);
    free(f);
}

static void test_early_errors_reach_all_response_hooks(void **state)
{
    struct fake *f = mw_fake();
    FEED(f, "BAD\x01 / HTTP/1.1\r\n\r\n");
    assert_int_equal(log_count, 1);
    assert_string_equal(trace, ""); /* the others saw nothing */
    fake_free(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_set_get_destroy),
        cmocka_unit_test(test_no_current_outside_requests),
        cmocka_unit_test(test_interleaved_requests_are_isolated),
        cmocka_unit_test(test_destroy_on_orphan),
        cmocka_unit_test(test_chain_order_and_after_headers),
        cmocka_unit_test(test_short_circuit),
        cmocka_unit_test(test_suspend_and_resume),
        cmocka_unit_test(test_early_errors_reach_all_response_hooks),
    };
    return cmocka_run_group_tests(tests, register_keys, NULL);
}
