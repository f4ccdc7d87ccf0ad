/* JSON bodies (server/json.c) on a real embedded server: 415 and 400 with a clear detail,
 * documents answered compact as application/json; charset=utf-8, from the ring and from a
 * pool thread, small and large. Built only with RH_JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/ringhttp.h"

static rh_server *srv;
static rh_test_response resp;

static void echo(rh_req *req, void *u)
{
    json_t *doc;
    int ret = rh_req_json(req, &doc);
    if (ret == 0)
        rh_respond_json(req, 200, json_pack("{so}", "got", doc));
    else /* answered already */
        assert_int_equal(rh_respond(req, 200, NULL, NULL, 0), -EALREADY);
}

static void big(rh_req *req, void *u)
{
    json_t *arr = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(arr, json_integer(i));
    rh_respond_json(req, 200, arr);
}

static void null_doc(rh_req *req, void *u) { rh_respond_json(req, 200, NULL); }

static int setup(void **state)
{
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.quiet = true;
    assert_int_equal(rh_server_new(&cfg, &srv), 0);
    assert_int_equal(rh_route(srv, "POST", "/echo", echo, NULL), 0);
    assert_int_equal(rh_route_blocking(srv, "POST", "/pool/echo", echo, NULL, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/big", big, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/null", null_doc, NULL), 0);
    assert_int_equal(rh_server_start(srv), 0);
    return 0;
}

static int teardown(void **state)
{
    rh_test_response_free(&resp);
    rh_server_free(srv);
    return 0;
}

static int post(const char *target, const char *ctype, const char *body, size_t len)
{
    char h[128];
    snprintf(h, sizeof(h), "Content-Type: %s\r\n", ctype);
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, "POST", target, h, body, len, 0, &resp), 0);
    return resp.status;
}

static void assert_json_answer(void)
{
    char ct[64];
    assert_true(rh_test_header(&resp, "Content-Type", ct, sizeof(ct)) > 0);
    assert_string_equal(ct, "application/json; charset=utf-8");
}

static void parses_and_answers(void **state)
{
    const char *targets[] = {"/echo", "/pool/echo"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(post(targets[i], "application/json", "{\"a\": [1, \"\xc3\xa9\"]}", 16), 200);
        assert_json_answer();
        assert_string_equal(resp.body, "{\"got\":{\"a\":[1,\"\xc3\xa9\"]}}");
        assert_int_equal(post(targets[i], "Application/JSON; charset=utf-8", "7", 1), 200);
        assert_string_equal(resp.body, "{\"got\":7}");
        assert_int_equal(post(targets[i], "application/problem+json", "null", 4), 200);
    }
}

static void wrong_media_type_is_415(void **state)
{
    assert_int_equal(post("/echo", "text/plain", "{}", 2), 415);
    assert_non_null(strstr(resp.body, "application/json"));
    assert_int_equal(post("/echo", "application/jsonx", "{}", 2), 415);
    assert_int_equal(post("/pool/echo", "application/x-www-form-urlencoded", "a=1", 3), 415);
}

static void malformed_is_400_with_detail(void **state)
{
    assert_int_equal(post("/echo", "application/json", "{\"a\": }", 7), 400);
    assert_non_null(strstr(resp.body, "invalid JSON"));
    assert_non_null(strstr(resp.body, "line 1"));
    assert_int_equal(post("/echo", "application/json", "", 0), 400);
    assert_int_equal(post("/echo", "application/json", "\"\\u0000\"", 8), 400); /* no NUL */
    assert_int_equal(post("/echo", "application/json", "\"\xff\"", 3), 400); /* not UTF-8 */
    assert_int_equal(post("/pool/echo", "application/json", "[1,", 3), 400);
}

static void large_and_missing_documents(void **state)
{
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, "GET", "/big", NULL, NULL, 0, 0, &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_json_answer();
    json_t *doc = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_int_equal(json_array_size(doc), 2000);
    json_decref(doc);
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, "GET", "/null", NULL, NULL, 0, 0, &resp), 0);
    assert_int_equal(resp.status, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_and_answers),
        cmocka_unit_test(wrong_media_type_is_415),
        cmocka_unit_test(malformed_is_400_with_detail),
        cmocka_unit_test(large_and_missing_documents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
