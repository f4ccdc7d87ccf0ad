/* The todo API's contract, through the in-process test client (rh_test_request): a real
 * server on loopback, real ring, real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "todo.h"

static const char *const tokens[] = {"t0ken", "second"};
static char db_path[64];
static rh_server *srv;
static rh_test_response resp;

static void start(void)
{
    static struct todo_config cfg;
    cfg = (struct todo_config){.db = db_path, .tokens = tokens, .ntokens = 2};
    rh_config rc;
    rh_config_init(&rc);
    rc.port = 0;
    rc.threads = 1;
    rc.quiet = true;
    assert_int_equal(rh_server_new(&rc, &srv), 0);
    assert_int_equal(todo_setup(srv, &cfg), 0);
    assert_int_equal(rh_server_start(srv), 0);
}

static int setup(void **state)
{
    snprintf(db_path, sizeof(db_path), "/tmp/rh_todo_test_%d.db", (int)getpid());
    unlink(db_path);
    start();
    return 0;
}

static int teardown(void **state)
{
    rh_test_response_free(&resp);
    rh_server_free(srv);
    unlink(db_path);
    return 0;
}

/* One request with the first token (auth NULL: none); returns the status. */
static int call(const char *method, const char *target, const char *auth, const char *ctype,
                const char *body)
{
    char headers[512];
    int n = 0;
    if (auth)
        n += snprintf(headers + n, sizeof(headers) - (size_t)n, "Authorization: Bearer %s\r\n",
                      auth);
    if (ctype)
        n += snprintf(headers + n, sizeof(headers) - (size_t)n, "Content-Type: %s\r\n", ctype);
    headers[n] = 0;
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, method, target, headers, body, body ? strlen(body) : 0,
                                     0, &resp), 0);
    return resp.status;
}

static int post(const char *body)
{
    return call("POST", "/todos", "t0ken", "application/json", body);
}

static json_t *body_json(void)
{
    char ct[64];
    assert_true(rh_test_header(&resp, "Content-Type", ct, sizeof(ct)) > 0);
    assert_string_equal(ct, "application/json; charset=utf-8");
    json_t *doc = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY, NULL);
    assert_non_null(doc);
    return doc;
}

static void assert_json_error(int status)
{
    assert_int_equal(resp.status, status);
    json_t *doc = body_json();
    assert_true(json_is_string(json_object_get(doc, "error")));
    json_decref(doc);
}

static void auth_is_required_on_every_route(void **state)
{
    const char *targets[][2] = {{"GET", "/todos"}, {"POST", "/todos"}, {"GET", "/todos/1"},
                                {"PATCH", "/todos/1"}, {"DELETE", "/todos/1"}};
    char hdr[32];
    for (unsigned i = 0; i < 5; i++) {
        call(targets[i][0], targets[i][1], NULL, NULL, NULL);
        assert_json_error(401);
        assert_int_equal(rh_test_header(&resp, "WWW-Authenticate", hdr, sizeof(hdr)), 6);
        assert_string_equal(hdr, "Bearer");
        call(targets[i][0], targets[i][1], "wrong", NULL, NULL);
        assert_json_error(401);
    }
    assert_int_equal(call("GET", "/todos", "second", NULL, NULL), 200);
}

static void unknown_paths_and_methods_come_before_auth(void **state)
{
    call("GET", "/nope", NULL, NULL, NULL);
    assert_json_error(404);
    call("PUT", "/todos/1", NULL, NULL, NULL);
    assert_json_error(405);
    char allow[64];
    assert_true(rh_test_header(&resp, "Allow", allow, sizeof(allow)) > 0);
    assert_non_null(strstr(allow, "PATCH"));
    assert_non_null(strstr(allow, "DELETE"));
}

static void create_returns_201_with_location(void **state)
{
    assert_int_equal(post("{\"title\": \"buy milk\"}"), 201);
    char loc[64];
    assert_true(rh_test_header(&resp, "Location", loc, sizeof(loc)) > 0);
    json_t *doc = body_json();
    char want[64];
    snprintf(want, sizeof(want), "/todos/%lld",
             (long long)json_integer_value(json_object_get(doc, "id")));
    assert_string_equal(loc, want);
    assert_string_equal(json_string_value(json_object_get(doc, "title")), "buy milk");
    assert_true(json_is_false(json_object_get(doc, "done")));
    json_decref(doc);
}

static void create_rejects_bad_input(void **state)
{
    post("{\"title\": ");
    assert_json_error(400);
    post("{\"title\": 7}");
    assert_json_error(422);
    post("{\"title\": \"\"}");
    assert_json_error(422);
    char big[256] = "{\"title\": \"";
    memset(big + 11, 'x', 201);
    strcpy(big + 212, "\"}");
    post(big);
    assert_json_error(422);
    strcpy(big + 211, "\"}"); /* 200 characters: fine */
    assert_int_equal(post(big), 201);
    call("POST", "/todos", "t0ken", "text/plain", "{\"title\": \"x\"}");
    assert_json_error(415);
}

static void utf8_titles_round_trip(void **state)
{
    const char *title = "say \"hi\"\nthen \xf0\x9f\x8e\x89 caf\xc3\xa9 \\ done";
    json_t *in = json_pack("{ss}", "title", title);
    char *body = json_dumps(in, 0);
    assert_int_equal(post(body), 201);
    free(body);
    json_decref(in);
    char loc[64];
    rh_test_header(&resp, "Location", loc, sizeof(loc));
    assert_int_equal(call("GET", loc, "t0ken", NULL, NULL), 200);
    json_t *doc = body_json();
    assert_string_equal(json_string_value(json_object_get(doc, "title")), title);
    json_decref(doc);
}

static void list_filters_by_done_and_decoded_q(void **state)
{
    post("{\"title\": \"alpha one\"}");
    post("{\"title\": \"beta caf\xc3\xa9\"}");
    post("{\"title\": \"gamma one\"}");
    call("PATCH", "/todos/2", "t0ken", "application/json", "{\"done\": true}");
    assert_int_equal(call("GET", "/todos", "t0ken", NULL, NULL), 200);
    json_t *all = body_json();
    assert_int_equal(json_array_size(all), 3);
    for (size_t i = 0; i < 3; i++) /* id order */
        assert_int_equal(json_integer_value(json_object_get(json_array_get(all, i), "id")), i + 1);
    json_decref(all);
    call("GET", "/todos?done=true", "t0ken", NULL, NULL);
    json_t *done = body_json();
    assert_int_equal(json_array_size(done), 1);
    json_decref(done);
    call("GET", "/todos?done=false&q=%20one", "t0ken", NULL, NULL);
    json_t *one = body_json();
    assert_int_equal(json_array_size(one), 2);
    json_decref(one);
    call("GET", "/todos?q=caf%C3%A9", "t0ken", NULL, NULL);
    json_t *cafe = body_json();
    assert_int_equal(json_array_size(cafe), 1);
    json_decref(cafe);
    call("GET", "/todos?done=maybe", "t0ken", NULL, NULL);
    assert_json_error(400);
}

static void get_patch_delete_one(void **state)
{
    post("{\"title\": \"x\"}");
    assert_int_equal(call("GET", "/todos/%31", "t0ken", NULL, NULL), 200); /* decoded: 1 */
    call("GET", "/todos/99", "t0ken", NULL, NULL);
    assert_json_error(404);
    call("GET", "/todos/abc", "t0ken", NULL, NULL);
    assert_json_error(404);
    assert_int_equal(call("PATCH", "/todos/1", "t0ken", "application/json", "{\"done\": true}"),
                     200);
    json_t *doc = body_json();
    assert_true(json_is_true(json_object_get(doc, "done")));
    json_decref(doc);
    call("PATCH", "/todos/1", "t0ken", "application/json", "{\"done\": 1}");
    assert_json_error(422);
    assert_int_equal(call("DELETE", "/todos/1", "t0ken", NULL, NULL), 204);
    assert_int_equal(resp.body_len, 0);
    call("GET", "/todos/1", "t0ken", NULL, NULL);
    assert_json_error(404);
}

static void request_id_is_echoed(void **state)
{
    rh_test_response_free(&resp);
    assert_int_equal(rh_test_request(srv, "GET", "/nope", "X-Request-Id: abc-123\r\n", NULL, 0,
                                     0, &resp), 0);
    char id[64];
    assert_true(rh_test_header(&resp, "X-Request-Id", id, sizeof(id)) > 0);
    assert_string_equal(id, "abc-123");
}

static void data_survives_a_restart(void **state)
{
    post("{\"title\": \"keep me\"}");
    rh_test_response_free(&resp);
    rh_server_free(srv);
    start();
    assert_int_equal(call("GET", "/todos/1", "t0ken", NULL, NULL), 200);
    json_t *doc = body_json();
    assert_string_equal(json_string_value(json_object_get(doc, "title")), "keep me");
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(auth_is_required_on_every_route, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_paths_and_methods_come_before_auth, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(create_returns_201_with_location, setup, teardown),
        cmocka_unit_test_setup_teardown(create_rejects_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(utf8_titles_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(list_filters_by_done_and_decoded_q, setup, teardown),
        cmocka_unit_test_setup_teardown(get_patch_delete_one, setup, teardown),
        cmocka_unit_test_setup_teardown(request_id_is_echoed, setup, teardown),
        cmocka_unit_test_setup_teardown(data_survives_a_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
