/* The application toolkit on a real embedded server, through the in-process test client:
 * error handlers for every error ringhttp generates, middleware scoped to prefixes (after
 * routing), finish hooks with final sizes and early rejections' paths, ring timers (late
 * answers, periodic streams, cancelled when the client leaves), lane start/stop hooks on
 * the lane's thread, decoded parameters, forms and cookies. */
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

static rh_server *srv;
static rh_test_response resp;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[4096]; /* what hooks saw, appended under lock */
static atomic_int timer_fired;

static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&lock);
    size_t n = strlen(log_buf);
    vsnprintf(log_buf + n, sizeof(log_buf) - n, fmt, ap);
    pthread_mutex_unlock(&lock);
    va_end(ap);
}

static bool log_has(const char *s)
{
    pthread_mutex_lock(&lock);
    bool has = strstr(log_buf, s) != NULL;
    if (!has && getenv("TEST_APP_DEBUG"))
        fprintf(stderr, "log: %s\n", log_buf);
    pthread_mutex_unlock(&lock);
    return has;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to 3 s for the log to contain s. */
static bool log_wait(const char *s)
{
    for (int i = 0; i < 300 && !log_has(s); i++)
        sleep_ms(10);
    return log_has(s);
}

/* ---- the application ---- */

static void on_error(rh_req *req, int status, const char *detail, void *u)
{
    if (status == 402) { /* raising an error from the handler: the default page, no loop */
        rh_respond_error(req, 402, "inner");
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof(body), "E%d:%s", status, detail ? detail : "-");
    rh_respond(req, status, "application/x-err", body, (size_t)n);
}

static void echo(rh_req *req, void *u)
{
    char name[64], q[64], body[256];
    rh_str raw = rh_req_param(req, "name");
    int dn = rh_req_param_decoded(req, "name", name, sizeof(name));
    int qn = rh_req_query_decoded(req, "q", q, sizeof(q));
    int n = snprintf(body, sizeof(body), "raw=%.*s dec=%s q=%s", (int)raw.len, raw.ptr,
                     dn >= 0 ? name : "ERR", qn >= 0 ? q : "NONE");
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

static void form(rh_req *req, void *u)
{
    char a[64];
    int n = rh_req_form(req, "a", a, sizeof(a));
    if (n == -EMEDIUMTYPE)
        rh_respond_error(req, 415, "not a form");
    else
        rh_respond(req, 200, "text/plain", n >= 0 ? a : "ABSENT", n >= 0 ? (size_t)n : 6);
}

static void cookie(rh_req *req, void *u)
{
    rh_str sid = {0}, other = {0};
    char body[128];
    int a = rh_req_cookie(req, "sid", &sid), b = rh_req_cookie(req, "other", &other);
    int n = snprintf(body, sizeof(body), "sid=%.*s(%d) other=%.*s(%d)", (int)sid.len,
                     sid.ptr ? sid.ptr : "", a, (int)other.len, other.ptr ? other.ptr : "", b);
    rh_cookie_options o = {.path = "/", .max_age = 3600, .secure = true, .http_only = true,
                           .same_site = "Lax"};
    assert_int_equal(rh_resp_cookie(req, "sid", "new;bad", &o), -EINVAL);
    assert_int_equal(rh_resp_cookie(req, "bad name", "v", NULL), -EINVAL);
    static char huge[5000];
    memset(huge, 'v', sizeof(huge) - 1);
    assert_int_equal(rh_resp_cookie(req, "sid", huge, &o), -EINVAL); /* too long: refused */
    rh_cookie_options del = {.max_age = -1};
    assert_int_equal(rh_resp_cookie(req, "old", "", &del), 0);
    assert_int_equal(rh_resp_cookie(req, "sid", "v2", &o), 0);
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

static void late_fire(rh_req *req, void *arg)
{
    atomic_fetch_add(&timer_fired, 1);
    rh_respond(req, 200, "text/plain", "late", 4);
}

static void later(rh_req *req, void *u)
{
    assert_int_equal(rh_req_timer(req, 150, late_fire, NULL), 0);
}

static void tick(rh_req *req, void *arg)
{
    intptr_t left = (intptr_t)arg;
    rh_resp_write(req, "tick\n", 5);
    if (left > 1)
        rh_req_timer(req, 30, tick, (void *)(left - 1));
    else
        rh_resp_end(req);
}

static void ticks(rh_req *req, void *u)
{
    rh_resp_start(req, 200, "text/plain");
    rh_req_timer(req, 30, tick, (void *)(intptr_t)3);
}

static void never(rh_req *req, void *arg) { atomic_fetch_add(&timer_fired, 100); }
static void hang(rh_req *req, void *u) { rh_req_timer(req, 10000, never, NULL); }

static void pay(rh_req *req, void *u) { rh_respond_error(req, 402, "outer"); }

static void plain(rh_req *req, void *u) { rh_respond(req, 200, "text/plain", "ok", 2); }

static void sleeper(rh_req *req, void *u) /* blocking route: ignores its deadline */
{
    sleep_ms(300);
    rh_respond(req, 200, "text/plain", "slept", 5);
}

static void checker(rh_req *req, void *u) /* blocking route: stops at its deadline */
{
    for (int i = 0; i < 300 && rh_offload_check() == 0; i++)
        sleep_ms(10);
}

static void lane_task(rh_req *req, void *u)
{
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    logf_("[task %s]", name);
    rh_respond(req, 200, "text/plain", "lane", 4);
}

static void lane_start(void *u)
{
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    sleep_ms(50); /* a task queued meanwhile must still wait for the hook */
    logf_("[start %s %s]", name, (char *)u);
}

static void lane_stop(void *u)
{
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    logf_("[stop %s %s]", name, (char *)u);
}

/* Scoped middleware: "/admin" needs X-Key; "/admin/:id" logs; one that claims an answer. */
static rh_mw_result need_key(rh_req *req, void *u)
{
    logf_("[key %s]", (char *)u);
    if (rh_req_header(req, "X-Key").ptr)
        return RH_MW_NEXT;
    rh_respond_error(req, 401, "no key");
    return RH_MW_DONE;
}

static void add_header(rh_req *req, int status, void *u) { rh_resp_header(req, "X-Scoped", u); }

static rh_mw_result liar(rh_req *req, void *u) { return RH_MW_DONE; }

static void resume_on_pool_done(rh_req *req, int status, void *arg) { rh_next(req); }
static void nothing(rh_req *req, void *arg) {}
static rh_mw_result suspend(rh_req *req, void *u)
{
    return rh_offload(req, nothing, resume_on_pool_done, NULL) == 0 ? RH_MW_SUSPEND : RH_MW_DONE;
}

static void after_all(rh_req *req, int status, void *u)
{
    rh_str p = rh_req_path(req);
    if (status == 413)
        logf_("[after %.*s %d]", (int)p.len, p.ptr, status);
}

static void finish(rh_req *req, int status, void *u)
{
    rh_str p = rh_req_path(req);
    if (p.len == 6 && memcmp(p.ptr, "/ticks", 6) == 0 && rh_req_elapsed_ms(req) >= 50)
        logf_("[ticks took >= 50 ms]"); /* three 30 ms timers */
    logf_("[fin %.*s %d %llu]", p.len > 20 ? 20 : (int)p.len, p.ptr, status,
          (unsigned long long)rh_resp_body_bytes(req));
}

static char *lane_udata = "L";

static void start_server(void)
{
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.quiet = true;
    cfg.max_body = 1024;
    cfg.header_timeout_ms = 300;
    cfg.pool_threads = 1;
    cfg.pool_timeout_ms = 100;
    assert_int_equal(rh_server_new(&cfg, &srv), 0);
    assert_int_equal(rh_on_error(srv, on_error, NULL), 0);
    rh_middleware fin = {.name = "fin", .after = after_all, .finish = finish,
                         .flags = RH_MW_ALL_RESPONSES};
    assert_int_equal(rh_use(srv, &fin), 0);
    rh_middleware key = {.name = "key", .before = need_key, .after = add_header, .udata = "admin"};
    rh_middleware key2 = {.name = "key2", .before = need_key, .udata = "admin-id"};
    rh_middleware bad = {.name = "liar", .before = liar};
    rh_middleware sus = {.name = "suspend", .before = suspend};
    assert_int_equal(rh_use_prefix(srv, "/admin/", &key), 0);
    assert_int_equal(rh_use_prefix(srv, "/admin/:id", &key2), 0);
    assert_int_equal(rh_use_prefix(srv, "/liar", &bad), 0);
    assert_int_equal(rh_use_prefix(srv, "/susp", &sus), 0);
    assert_int_equal(rh_use_prefix(srv, "admin", &key), -EINVAL);
    assert_int_equal(rh_route(srv, "GET", "/echo/:name", echo, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/pay", pay, NULL), 0);
    assert_int_equal(rh_route(srv, "POST", "/form", form, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/cookie", cookie, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/later", later, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/ticks", ticks, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/hang", hang, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/admin", plain, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/admin/:id", plain, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/adminx", plain, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/liar", plain, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/susp", plain, NULL), 0);
    assert_int_equal(rh_route(srv, "POST", "/body", plain, NULL), 0);
    assert_int_equal(rh_route_blocking(srv, "GET", "/sleep", sleeper, NULL, NULL), 0);
    assert_int_equal(rh_route_blocking(srv, "GET", "/check", checker, NULL, NULL), 0);
    assert_int_equal(rh_lane_declare(srv, "L", 0), 0);
    assert_int_equal(rh_lane_hooks(srv, "nope", lane_start, lane_stop, lane_udata), -ENOENT);
    assert_int_equal(rh_lane_hooks(srv, "L", lane_start, lane_stop, lane_udata), 0);
    assert_int_equal(rh_lane_hooks(srv, "L", lane_start, lane_stop, lane_udata), -EEXIST);
    assert_int_equal(rh_route_blocking(srv, "GET", "/lane", lane_task, NULL, "L"), 0);
    assert_int_equal(rh_static_route(srv, "/files", "/tmp", NULL), 0);
    assert_int_equal(rh_server_start(srv), 0);
}

static int setup(void **state)
{
    log_buf[0] = 0;
    atomic_store(&timer_fired, 0);
    start_server();
    return 0;
}

static int teardown(void **state)
{
    rh_test_response_free(&resp);
    rh_server_free(srv);
    return 0;
}

static int get(const char *target, const char *headers)
{
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, "GET", target, headers, NULL, 0, 0, &resp), 0);
    return resp.status;
}

static int req(const char *method, const char *target, const char *headers, const char *body,
               size_t len)
{
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, method, target, headers, body, len, 0, &resp), 0);
    return resp.status;
}

static void assert_app_error(int status)
{
    char ct[64], want[16];
    assert_int_equal(resp.status, status);
    assert_true(rh_test_header(&resp, "Content-Type", ct, sizeof(ct)) > 0);
    assert_string_equal(ct, "application/x-err");
    snprintf(want, sizeof(want), "E%d:", status);
    assert_memory_equal(resp.body, want, strlen(want));
}

/* A raw exchange for what the test client cannot send (a head that never ends). */
static int raw_status(const char *data, int wait_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(rh_server_port(srv))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_true(write(fd, data, strlen(data)) > 0);
    char buf[512] = "";
    ssize_t n = wait_ms < 0 ? read(fd, buf, sizeof(buf) - 1) : 0;
    if (wait_ms >= 0)
        sleep_ms(wait_ms);
    close(fd);
    int status = 0;
    if (n > 0)
        sscanf(buf, "HTTP/1.1 %d", &status);
    if (n > 0)
        assert_non_null(strstr(buf, "application/x-err"));
    return status;
}

/* Sends data on one keep-alive connection and reads until `answers` responses came. */
static void raw_pipeline(const char *data, int answers, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(rh_server_port(srv))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_true(write(fd, data, strlen(data)) > 0);
    size_t len = 0;
    out[0] = 0;
    for (;;) {
        int seen = 0;
        for (const char *p = out; (p = strstr(p, "HTTP/1.1 ")); p++)
            seen++;
        const char *last = strstr(out + (len > 200 ? len - 200 : 0), "\r\n\r\n");
        if (seen >= answers && last)
            break;
        ssize_t n = read(fd, out + len, cap - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        out[len] = 0;
    }
    close(fd);
}

/* ---- error handlers ---- */

static void keep_alive_survives_app_errors_and_timers(void **state)
{
    char out[4096];
    raw_pipeline("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /adminx HTTP/1.1\r\nHost: x\r\n\r\n", 3, out, sizeof(out));
    const char *a = strstr(out, "HTTP/1.1 404"), *b = strstr(out, "late");
    const char *c = strstr(out, "HTTP/1.1 200 OK");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < c && c < b); /* in order: the 200 "late" comes second */
    assert_non_null(strstr(b, "HTTP/1.1 200 OK")); /* then /adminx */
    assert_null(strstr(out, "Connection: close"));
}

static void errors_go_through_the_handler(void **state)
{
    get("/nope", NULL);
    assert_app_error(404);
    req("POST", "/echo/x", NULL, NULL, 0);
    assert_app_error(405);
    char allow[32];
    assert_true(rh_test_header(&resp, "Allow", allow, sizeof(allow)) > 0); /* still set */
    req("G(T", "/echo/x", NULL, NULL, 0);
    assert_app_error(400);
    char big[9000]; /* over the 8 KiB target limit */
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = 0;
    get(big, NULL);
    assert_app_error(414);
    char hdr[13000]; /* over the 12 KiB head limit */
    snprintf(hdr, sizeof(hdr), "X-Big: %012990d\r\n", 0);
    get("/echo/x", hdr);
    assert_app_error(431);
    char body[2000] = {0};
    req("POST", "/body", NULL, body, sizeof(body));
    assert_app_error(413);
    assert_true(log_wait("[fin /body 413 ")); /* an early rejection still has its path */
    assert_true(log_has("[after /body 413]"));
    assert_true(log_has("[fin /echo/x 431 "));
    get("/liar", NULL);
    assert_app_error(500);
    get("/check", NULL);
    assert_app_error(504);
    assert_int_equal(raw_status("GET /echo/x HTTP/1.1\r\nHost: x\r\n", -1), 408);
    get("/files/no-such-file-here-rh", NULL); /* a static mount's error page too */
    assert_app_error(404);
    req("POST", "/files/x", NULL, NULL, 0);
    assert_app_error(405);
    assert_int_equal(get("/pay", NULL), 402);
    assert_string_equal(resp.body, "inner");
}

static void *slow_call(void *arg)
{
    rh_test_response r;
    if (rh_test_request(srv, "GET", "/sleep", NULL, NULL, 0, 0, &r) == 0) {
        logf_("[slow %d]", r.status);
        rh_test_response_free(&r);
    }
    return NULL;
}

static void pool_overload_503_goes_through_the_handler(void **state)
{
    pthread_t t;
    pthread_create(&t, NULL, slow_call, NULL); /* holds the one pool thread for 300 ms */
    sleep_ms(50);
    get("/sleep", NULL); /* waits past the 100 ms pool timeout: 503 */
    assert_app_error(503);
    char ra[8];
    assert_true(rh_test_header(&resp, "Retry-After", ra, sizeof(ra)) > 0);
    pthread_join(t, NULL);
    assert_true(log_has("[slow 200]"));
}

/* ---- scoped middleware ---- */

static void scoped_middleware_runs_after_routing(void **state)
{
    get("/admin/nothing/here", NULL); /* no route: 404 before any key check */
    assert_app_error(404);
    req("POST", "/admin", NULL, NULL, 0);
    assert_app_error(405);
    assert_false(log_has("[key"));
    get("/admin", NULL);
    assert_app_error(401);
    assert_true(log_has("[key admin]"));
    assert_false(log_has("[key admin-id]"));
    assert_int_equal(get("/adminx", NULL), 200); /* segment boundary: not covered */
    assert_int_equal(get("/admin/7", "X-Key: 1\r\n"), 200);
    assert_true(log_has("[key admin][key admin-id][fin /admin/7 200 2]")); /* in order added */
    char v[16];
    assert_true(rh_test_header(&resp, "X-Scoped", v, sizeof(v)) > 0); /* after hook */
    assert_string_equal(v, "admin");
    assert_int_equal(get("/susp", NULL), 200); /* suspended on the pool, resumed by rh_next */
}

/* ---- finish hooks ---- */

static void finish_sees_final_sizes_and_early_paths(void **state)
{
    assert_int_equal(get("/ticks", NULL), 200);
    assert_string_equal(resp.body, "tick\ntick\ntick\n");
    assert_true(log_wait("[fin /ticks 200 15]"));
    assert_true(log_has("[ticks took >= 50 ms]"));
    assert_int_equal(get("/echo/abc", NULL), 200);
    assert_true(log_wait("[fin /echo/abc 200 22]")); /* "raw=abc dec=abc q=NONE" */
}

/* ---- ring timers ---- */

static void timer_answers_later(void **state)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(get("/later", NULL), 200);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(resp.body, "late");
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 120);
    assert_int_equal(atomic_load(&timer_fired), 1);
}

static void timer_is_cancelled_when_the_client_leaves(void **state)
{
    raw_status("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n", 100);
    assert_true(log_wait("[fin /hang 0 0]")); /* ended without an answer */
    assert_int_equal(atomic_load(&timer_fired), 0);
}

/* ---- lanes ---- */

static void lane_hooks_run_first_and_last_on_the_lane(void **state)
{
    assert_int_equal(get("/lane", NULL), 200);
    rh_test_response_free(&resp);
    rh_server_free(srv);
    srv = NULL;
    assert_string_equal(log_buf + strspn(log_buf, ""), log_buf);
    const char *start = strstr(log_buf, "[start rh-lane-L L]");
    const char *task = strstr(log_buf, "[task rh-lane-L]");
    const char *stop = strstr(log_buf, "[stop rh-lane-L L]");
    assert_non_null(start);
    assert_non_null(task);
    assert_non_null(stop);
    assert_true(start < task && task < stop);
    start_server(); /* for teardown */
}

/* ---- parameters, forms, cookies ---- */

static void params_are_decoded_raw_still_there(void **state)
{
    assert_int_equal(get("/echo/a%20b%2B?q=x+y%26z", NULL), 200);
    assert_string_equal(resp.body, "raw=a%20b%2B dec=a b+ q=x y&z");
    assert_int_equal(get("/echo/a%zz", NULL), 200);
    assert_string_equal(resp.body, "raw=a%zz dec=ERR q=NONE");
}

static void forms_and_cookies(void **state)
{
    const char *ct = "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n";
    assert_int_equal(req("POST", "/form", ct, "b=1&a=h%C3%A9+llo", 17), 200);
    assert_string_equal(resp.body, "h\xc3\xa9 llo");
    req("POST", "/form", "Content-Type: text/plain\r\n", "a=1", 3);
    assert_app_error(415);
    assert_int_equal(get("/cookie", "Cookie: a=1; sid=\"s1\"\r\nCookie: other=o\r\n"), 200);
    assert_string_equal(resp.body, "sid=s1(0) other=o(0)");
    char sc[128];
    assert_true(rh_test_header(&resp, "Set-Cookie", sc, sizeof(sc)) > 0);
    assert_string_equal(sc, "old=; Max-Age=0"); /* the first Set-Cookie: a deletion */
    assert_non_null(strstr(resp.head, "\r\nSet-Cookie: sid=v2; Path=/; Max-Age=3600; Secure; "
                                      "HttpOnly; SameSite=Lax\r\n"));
    assert_int_equal(get("/cookie", NULL), 200);
    assert_string_equal(resp.body, "sid=(-2) other=(-2)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(errors_go_through_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(keep_alive_survives_app_errors_and_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(pool_overload_503_goes_through_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(scoped_middleware_runs_after_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(finish_sees_final_sizes_and_early_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(timer_answers_later, setup, teardown),
        cmocka_unit_test_setup_teardown(timer_is_cancelled_when_the_client_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(lane_hooks_run_first_and_last_on_the_lane, setup, teardown),
        cmocka_unit_test_setup_teardown(params_are_decoded_raw_still_there, setup, teardown),
        cmocka_unit_test_setup_teardown(forms_and_cookies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
