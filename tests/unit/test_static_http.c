/* The pure parts of the static file server (static/static_http.c): path decoding and
 * normalisation, Range, entity-tag lists, HTTP dates, MIME types, Location encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "static/static.h"

static int norm(const char *raw, bool hidden, char *out, size_t cap, bool *dir)
{
    size_t n = 0;
    int ret = static_path_normalize(raw, strlen(raw), hidden, out, cap, &n, dir);
    if (ret == 0)
        assert_int_equal(n, strlen(out));
    return ret;
}

static void expect_path(const char *raw, const char *want, bool want_dir)
{
    char out[256];
    bool dir = !want_dir;
    int ret = norm(raw, false, out, sizeof(out), &dir);
    if (ret != 0)
        fail_msg("%s: %d", raw, ret);
    if (strcmp(out, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", raw, out, want);
    if (dir != want_dir)
        fail_msg("%s: dir %d", raw, dir);
}

static void expect_err(const char *raw, int err)
{
    char out[256];
    bool dir;
    int ret = norm(raw, false, out, sizeof(out), &dir);
    if (ret != err)
        fail_msg("%s: got %d, want %d", raw, ret, err);
}

static void test_paths_normalise(void **state)
{
    expect_path("", "", true);
    expect_path("/", "", true);
    expect_path("/a.txt", "a.txt", false);
    expect_path("/a/b/c.txt", "a/b/c.txt", false);
    expect_path("/a/", "a", true);
    expect_path("//a///b//", "a/b", true);
    expect_path("/a/./b", "a/b", false);
    expect_path("/a/b/..", "a", true);
    expect_path("/a/b/../c", "a/c", false);
    expect_path("/a/.", "a", true);
    expect_path("/a%20b", "a b", false);
    expect_path("/%41%62c", "Abc", false);
    expect_path("/a%2fb", "a/b", false);  /* %2F is a separator, as in nginx */
    expect_path("/a%2Fb%2f", "a/b", true);
    expect_path("/%252e%252e", "%2e%2e", false); /* decoded once only */
    expect_path("/x%5c..%5cy", "x\\..\\y", false); /* a backslash is an ordinary byte */
    expect_err("/x/...", -ENOENT); /* "..." is just a hidden name */
}

static void test_paths_reject(void **state)
{
    expect_err("/..", -EINVAL);
    expect_err("/../a", -EINVAL);
    expect_err("/a/../../b", -EINVAL);
    expect_err("/%2e%2e/a", -EINVAL);
    expect_err("/%2E%2e", -EINVAL);
    expect_err("/a%2f..%2f..%2fb", -EINVAL);
    expect_err("/.%2e/", -EINVAL);
    expect_err("/%00", -EINVAL);
    expect_err("/a%00b", -EINVAL);
    expect_err("/%", -EINVAL);
    expect_err("/%4", -EINVAL);
    expect_err("/%zz", -EINVAL);
    expect_err("/%g0", -EINVAL);
    expect_err("/.git/config", -ENOENT);
    expect_err("/a/.env", -ENOENT);
    expect_err("/%2ehtpasswd", -ENOENT);
    char out[256];
    bool dir;
    assert_int_equal(norm("/.well-known/x", false, out, sizeof(out), &dir), 0);
    assert_string_equal(out, ".well-known/x");
    assert_int_equal(norm("/.git/config", true, out, sizeof(out), &dir), 0);
    assert_string_equal(out, ".git/config");
}

static void test_paths_fit(void **state)
{
    char out[8];
    bool dir;
    assert_int_equal(norm("/abcdefg", false, out, sizeof(out), &dir), 0); /* 7 + NUL fit */
    assert_int_equal(norm("/abcdefgh", false, out, sizeof(out), &dir), -ENAMETOOLONG);
    assert_int_equal(norm("/abc/def", false, out, sizeof(out), &dir), 0);
    assert_int_equal(norm("/abc/defg", false, out, sizeof(out), &dir), -ENAMETOOLONG);
    assert_int_equal(norm("/ab/cd/", false, out, sizeof(out), &dir), 0);
    assert_string_equal(out, "ab/cd");
    char big[4200];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = 0;
    char wide[4096];
    assert_int_equal(norm(big, false, wide, sizeof(wide), &dir), -ENAMETOOLONG);
}

static enum static_range range(const char *v, uint64_t size, uint64_t *f, uint64_t *l)
{
    *f = *l = 12345;
    return static_range_parse(v, strlen(v), size, f, l);
}

static void test_ranges(void **state)
{
    uint64_t f, l;
    assert_int_equal(range("bytes=0-9", 100, &f, &l), RANGE_ONE);
    assert_true(f == 0 && l == 9);
    assert_int_equal(range("bytes=90-", 100, &f, &l), RANGE_ONE);
    assert_true(f == 90 && l == 99);
    assert_int_equal(range("bytes=-10", 100, &f, &l), RANGE_ONE);
    assert_true(f == 90 && l == 99);
    assert_int_equal(range("bytes=-1000", 100, &f, &l), RANGE_ONE);
    assert_true(f == 0 && l == 99);
    assert_int_equal(range("bytes=50-1000", 100, &f, &l), RANGE_ONE);
    assert_true(f == 50 && l == 99);
    assert_int_equal(range("BYTES = 1-2 ", 100, &f, &l), RANGE_ONE);
    assert_int_equal(range("bytes=,1-2,", 100, &f, &l), RANGE_ONE);
    assert_int_equal(range("bytes=100-", 100, &f, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=-0", 100, &f, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=0-", 0, &f, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=-5", 0, &f, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=200-300,400-", 100, &f, &l), RANGE_UNSATISFIABLE);
    assert_int_equal(range("bytes=0-1,5-6", 100, &f, &l), RANGE_MANY);
    assert_int_equal(range("bytes=200-300,5-6", 100, &f, &l), RANGE_MANY);
    assert_int_equal(range("bytes=5-1", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("bytes=", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("bytes=a-b", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("bytes=1-2-3", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("bytes 1-2", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("items=1-2", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("bytes=99999999999999999999-", 100, &f, &l), RANGE_NONE);
    assert_int_equal(range("bytes=0-18446744073709551615", 100, &f, &l), RANGE_ONE);
    assert_true(f == 0 && l == 99);
}

static bool match(const char *list, bool weak)
{
    static const char etag[] = "\"abc-1\"";
    return static_etag_match(list, strlen(list), etag, sizeof(etag) - 1, weak);
}

static void test_etags(void **state)
{
    assert_true(match("\"abc-1\"", true));
    assert_true(match("\"abc-1\"", false));
    assert_true(match("W/\"abc-1\"", true));
    assert_false(match("W/\"abc-1\"", false)); /* weak never matches strongly */
    assert_true(match("\"x\", \"abc-1\"", true));
    assert_true(match("\"x\",W/\"abc-1\"", true));
    assert_true(match("*", false));
    assert_false(match("\"abc-2\"", true));
    assert_false(match("\"abc-1", true));
    assert_false(match("abc-1", true));
    assert_false(match("", true));
}

static void test_dates(void **state)
{
    char out[30] = {0};
    static_http_date(784111777, out);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    static_http_date(0, out);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    int64_t t;
    static const char *forms[] = {"Sun, 06 Nov 1994 08:49:37 GMT",
                                  "Sunday, 06-Nov-94 08:49:37 GMT",
                                  "Sun Nov  6 08:49:37 1994"};
    for (unsigned i = 0; i < 3; i++) {
        t = 0;
        assert_int_equal(static_parse_http_date(forms[i], strlen(forms[i]), &t), 0);
        assert_int_equal(t, 784111777);
    }
    static const char *bad[] = {"", "yesterday", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Xyz 1994 08:49:37 GMT",
                                "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT",
                                "Sun, 06 Nov 1994 08:49:37 GMTX"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(static_parse_http_date(bad[i], strlen(bad[i]), &t), -EINVAL);
    assert_int_equal(static_parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT", 29, &t), 0);
    assert_int_equal(t, 1709164800);
}

static void test_mime(void **state)
{
    static const struct { const char *name, *type; } cases[] = {
        {"index.html", "text/html; charset=utf-8"}, {"a/b.CSS", "text/css; charset=utf-8"},
        {"x.js", "text/javascript; charset=utf-8"}, {"p.PNG", "image/png"},
        {"p.jpeg", "image/jpeg"}, {"f.woff2", "font/woff2"}, {"m.wasm", "application/wasm"},
        {"archive.tar.gz", "application/gzip"}, {"noext", "application/octet-stream"},
        {".profile", "application/octet-stream"}, {"dir.d/file", "application/octet-stream"},
        {"weird.", "application/octet-stream"}, {"x.unknown", "application/octet-stream"},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(static_mime_type(cases[i].name, strlen(cases[i].name)),
                            cases[i].type);
}

static void test_url_encode(void **state)
{
    char out[64];
    size_t n = static_url_encode("a b/%?#\r\n\xff~", 11, out, sizeof(out));
    out[n] = 0;
    assert_string_equal(out, "a%20b/%25%3F%23%0D%0A%FF~");
    assert_int_equal(static_url_encode("abc", 3, out, 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_normalise), cmocka_unit_test(test_paths_reject),
        cmocka_unit_test(test_paths_fit),       cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_etags),           cmocka_unit_test(test_dates),
        cmocka_unit_test(test_mime),            cmocka_unit_test(test_url_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
