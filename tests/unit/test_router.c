/* The router: precedence (static > parameter > prefix), backtracking, methods. Requests go
 * through the real data path (fake_conn.h); each route answers with its own name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "tests/unit/fake_conn.h"

static void named(rh_req *req, void *udata)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%s", (const char *)udata);
    for (unsigned i = 0; i < req->nparams; i++) {
        rh_str v = rh_req_param(req, req->params[i].name);
        n += snprintf(body + n, sizeof(body) - (size_t)n, " %s=%.*s", req->params[i].name,
                      (int)v.len, v.ptr);
    }
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

static struct fake *f;

static int setup(void **state)
{
    f = malloc(sizeof(*f));
    fake_init(f, NULL);
    struct rh_route_node *r = f->srv.routes;
    assert_int_equal(app_router_add(r, "GET", "/", named, "root", false), 0);
    assert_int_equal(app_router_add(r, "GET", "/users/me", named, "me", false), 0);
    assert_int_equal(app_router_add(r, "GET", "/users/:id", named, "user", false), 0);
    assert_int_equal(app_router_add(r, "GET", "/users/:id/posts/:post", named, "post", false), 0);
    assert_int_equal(app_router_add(r, "GET", "/users/me/settings", named, "settings", false), 0);
    assert_int_equal(app_router_add(r, "GET", "/static/*", named, "static", false), 0);
    assert_int_equal(app_router_add(r, "*", "/any", named, "any", false), 0);
    assert_int_equal(app_router_add(r, "POST", "/form", named, "form-post", false), 0);
    assert_int_equal(app_router_add(r, "PUT", "/form", named, "form-put", false), 0);
    return 0;
}

static int teardown(void **state)
{
    fake_free(f);
    free(f);
    return 0;
}

/* The body of the answer to `method path` on a fresh connection. */
static const char *route(const char *method, const char *path)
{
    static char out[4096];
    char req[512];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, path);
    f->c.pbuf.len = 0;
    h1_input_open(&f->c);
    f->c.flags = 0;
    fake_feed(f, req, (size_t)n);
    const char *all = fake_out(f);
    const char *body = strstr(all, "\r\n\r\n");
    int status = 0;
    sscanf(all, "HTTP/1.1 %d", &status);
    snprintf(out, sizeof(out), "%d %s", status, body ? body + 4 : "");
    return out;
}

static void test_static_beats_param(void **state)
{
    assert_string_equal(route("GET", "/users/me"), "200 me");
    assert_string_equal(route("GET", "/users/42"), "200 user id=42");
}

static void test_backtracks_to_param(void **state)
{
    /* "me" matches a static child, which has no "posts": fall back to the parameter. */
    assert_string_equal(route("GET", "/users/me/posts/7"), "200 post id=me post=7");
    assert_string_equal(route("GET", "/users/me/settings"), "200 settings");
}

static void test_prefix(void **state)
{
    assert_string_equal(route("GET", "/static/css/site.css"), "200 static *=css/site.css");
    assert_string_equal(route("GET", "/static/"), "200 static *=");
    assert_int_equal(atoi(route("GET", "/static")), 404);
}

static void test_root_and_misses(void **state)
{
    assert_string_equal(route("GET", "/"), "200 root");
    assert_int_equal(atoi(route("GET", "/nope")), 404);
    assert_int_equal(atoi(route("GET", "/users/")), 404); /* an empty parameter is no match */
    assert_int_equal(atoi(route("GET", "/users/1/posts")), 404);
}

static void test_methods(void **state)
{
    assert_string_equal(route("DELETE", "/any"), "200 any");
    assert_string_equal(route("PUT", "/form"), "200 form-put");
    assert_int_equal(atoi(route("GET", "/form")), 405);
    assert_non_null(strstr(fake_out(f), "Allow: PUT, POST\r\n"));
    /* HEAD falls back to GET, without the body. */
    assert_string_equal(route("HEAD", "/users/me"), "200 ");
}

static void test_query_not_part_of_path(void **state)
{
    assert_string_equal(route("GET", "/users/9?x=1"), "200 user id=9");
}

/* app_router_match is a function of strings alone: no request, offsets into the path given. */
static rh_str str(const char *s) { return (rh_str){s, strlen(s)}; }

static void test_match_is_pure(void **state)
{
    struct route_match m;
    char allowed[64];
    const char *path = "/users/42/posts/7";
    assert_int_equal(app_router_match(f->srv.routes, str("GET"), false, str(path), &m, allowed,
                                  sizeof(allowed)), 0);
    assert_string_equal(m.entry->h.udata, "post");
    assert_int_equal(m.nparams, 2);
    assert_string_equal(m.params[0].name, "id");
    assert_int_equal(m.params[0].off, 7);
    assert_int_equal(m.params[0].len, 2);
    assert_string_equal(m.params[1].name, "post");
    assert_int_equal(m.params[1].off, 16);
    assert_int_equal(m.params[1].len, 1);
    assert_int_equal(app_router_match(f->srv.routes, str("HEAD"), true, str("/users/me"), &m,
                                  allowed, sizeof(allowed)), 0);
    assert_string_equal(m.entry->h.udata, "me");
    assert_int_equal(app_router_match(f->srv.routes, str("GET"), false, str("/form"), &m, allowed,
                                  sizeof(allowed)), 405);
    assert_null(m.entry);
    assert_string_equal(allowed, "PUT, POST");
    assert_int_equal(app_router_match(f->srv.routes, str("GET"), false, str("/nope"), &m, allowed,
                                  sizeof(allowed)), 404);
    assert_null(m.entry);
}

static void test_add_errors(void **state)
{
    struct rh_route_node *r = f->srv.routes;
    assert_int_equal(app_router_add(r, "GET", "/users/me", named, "dup", false), -EEXIST);
    assert_int_equal(app_router_add(r, "GET", "/users/:other", named, "x", false), -EINVAL);
    assert_int_equal(app_router_add(r, "GET", "no-slash", named, "x", false), -EINVAL);
    assert_int_equal(app_router_add(r, "AVERYLONGMETHODNAME", "/x", named, "x", false), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_beats_param),
        cmocka_unit_test(test_backtracks_to_param),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_root_and_misses),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_query_not_part_of_path),
        cmocka_unit_test(test_match_is_pure),
        cmocka_unit_test(test_add_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
