/* The thread rules include/ringhttp.h states, on a real embedded server: what work (a pool
 * thread) and a function run by rh_call_on_ring may and may not call, what the ring-only
 * and work-only calls return elsewhere, and what a middleware sees after a failed offload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "include/ringhttp.h"
#include "tests/unit/unit_client.h"

static char *get(uint16_t port, const char *path)
{
    static char buf[4096];
    int fd = dial(port);
    send_get(fd, path);
    return read_all(fd, buf, sizeof(buf));
}

/* Results recorded on server threads, read after the answer (atomics for TSan). */
static atomic_int start_in_call, start_in_work, check_on_ring, call_on_ring_on_ring;
static atomic_bool peer_dash_in_call, started_after_respond, done_ran, handler_ran;
static atomic_int mw_offload_ret, held, release_holds;

/* ---- rh_call_on_ring and work ---- */

static void in_call(void *arg)
{
    rh_req *req = rh_current_req();
    start_in_call = rh_resp_start(req, 200, "text/plain");
    peer_dash_in_call = strcmp(rh_req_peer(req), "-") == 0;
    rh_respond(req, 200, "text/plain", "from call_on_ring\n", 18); /* kept for the ring */
    started_after_respond = rh_resp_started(req);
}

static void call_work(rh_req *req, void *arg)
{
    start_in_work = rh_resp_start(req, 200, "text/plain");
    assert_int_equal(rh_call_on_ring(in_call, NULL), 0);
}

static void call_done(rh_req *req, int status, void *arg)
{
    check_on_ring = rh_offload_check();
    call_on_ring_on_ring = rh_call_on_ring(in_call, NULL);
    assert_int_equal(rh_respond(req, 200, "text/plain", "x", 1), -EALREADY);
}

static void on_call(rh_req *req, void *u) { rh_offload(req, call_work, call_done, NULL); }

/* ---- a middleware whose offload is refused ---- */

static void hold_work(rh_req *req, void *arg)
{
    atomic_fetch_add(&held, 1);
    for (int i = 0; i < 5000 && !atomic_load(&release_holds); i++)
        sleep_ms(1);
}

static void hold_done(rh_req *req, int status, void *arg)
{
    rh_respond(req, 200, "text/plain", "held\n", 5);
}

static void on_hold(rh_req *req, void *u) { rh_offload(req, hold_work, hold_done, NULL); }

static void mw_work(rh_req *req, void *arg) {}

static void mw_done(rh_req *req, int status, void *arg)
{
    done_ran = true;
    rh_next(req);
}

static rh_mw_result mw_before(rh_req *req, void *udata)
{
    rh_str path = rh_req_path(req);
    if (path.len != 3 || memcmp(path.ptr, "/mw", 3) != 0)
        return RH_MW_NEXT;
    int ret = rh_offload(req, mw_work, mw_done, NULL);
    mw_offload_ret = ret;
    return ret < 0 ? RH_MW_DONE : RH_MW_SUSPEND; /* as the header says */
}

static void on_mw(rh_req *req, void *u)
{
    handler_ran = true;
    rh_respond(req, 200, "text/plain", "handler\n", 8);
}

static rh_server *start(void)
{
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.pool_threads = 1;
    cfg.pool_queue = 2;
    cfg.quiet = true;
    rh_server *srv;
    assert_int_equal(rh_server_new(&cfg, &srv), 0);
    assert_int_equal(rh_use(srv, &(rh_middleware){.name = "offloads", .before = mw_before}), 0);
    assert_int_equal(rh_route(srv, "GET", "/call", on_call, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/hold", on_hold, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/mw", on_mw, NULL), 0);
    assert_int_equal(rh_server_start(srv), 0);
    return srv;
}

static void test_call_on_ring_is_still_work(void **state)
{
    rh_server *srv = start();
    char *resp = get(rh_server_port(srv), "/call");
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(resp, "\r\n\r\nfrom call_on_ring\n"));
    assert_int_equal(start_in_work, -ENOTSUP);
    assert_int_equal(start_in_call, -ENOTSUP);
    assert_true(peer_dash_in_call);
    assert_true(started_after_respond);
    assert_int_equal(check_on_ring, 0);           /* work only: 0 elsewhere */
    assert_int_equal(call_on_ring_on_ring, -EPERM); /* work only */
    rh_server_free(srv);
}

static void test_middleware_after_refused_offload(void **state)
{
    rh_server *srv = start();
    uint16_t port = rh_server_port(srv);
    int a = dial(port), b = dial(port), c = dial(port);
    send_get(a, "/hold"); /* the one pool thread */
    for (int i = 0; i < 5000 && atomic_load(&held) == 0; i++)
        sleep_ms(1);
    assert_int_equal(atomic_load(&held), 1);
    send_get(b, "/hold"); /* these two fill the queue of two */
    send_get(c, "/hold");
    sleep_ms(50);
    char *resp = get(port, "/mw");
    assert_non_null(strstr(resp, "HTTP/1.1 503"));
    assert_non_null(strstr(resp, "Retry-After: "));
    assert_int_equal(mw_offload_ret, -EAGAIN);
    atomic_store(&release_holds, 1);
    char buf[1024];
    assert_non_null(strstr(read_all(a, buf, sizeof(buf)), "held"));
    assert_non_null(strstr(read_all(b, buf, sizeof(buf)), "held"));
    assert_non_null(strstr(read_all(c, buf, sizeof(buf)), "held"));
    assert_false(done_ran);
    assert_false(handler_ran);
    rh_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_on_ring_is_still_work),
        cmocka_unit_test(test_middleware_after_refused_offload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
