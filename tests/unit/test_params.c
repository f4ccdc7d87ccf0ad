/* Percent-decoding and urlencoded lookups (server/params.c): pure functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "include/ringhttp.h"

static rh_str S(const char *s) { return (rh_str){s, strlen(s)}; }

static void decode_escapes_and_plus(void **state)
{
    char out[32];
    assert_int_equal(rh_url_decode("a%20b%2Fc", 9, false, out, sizeof(out)), 5);
    assert_string_equal(out, "a b/c");
    assert_int_equal(rh_url_decode("a+b", 3, true, out, sizeof(out)), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(rh_url_decode("a+b", 3, false, out, sizeof(out)), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(rh_url_decode("caf%c3%A9", 9, false, out, sizeof(out)), 5);
    assert_string_equal(out, "caf\xc3\xa9");
    assert_int_equal(rh_url_decode("", 0, false, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

static void decode_rejects_bad_escapes_and_nul(void **state)
{
    char out[32];
    assert_int_equal(rh_url_decode("%zz", 3, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(rh_url_decode("ab%4", 4, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(rh_url_decode("ab%", 3, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(rh_url_decode("a%00b", 5, false, out, sizeof(out)), -EINVAL);
    assert_int_equal(rh_url_decode("a\0b", 3, false, out, sizeof(out)), -EINVAL);
}

static void decode_respects_capacity(void **state)
{
    char out[4];
    assert_int_equal(rh_url_decode("abc", 3, false, out, sizeof(out)), 3); /* 3 + NUL fit */
    assert_int_equal(rh_url_decode("abcd", 4, false, out, sizeof(out)), -ENOSPC);
    assert_int_equal(rh_url_decode("%41%42%43", 9, false, out, sizeof(out)), 3);
    assert_string_equal(out, "ABC");
    assert_int_equal(rh_url_decode("", 0, false, out, 0), -ENOSPC);
}

static void urlencoded_lookup(void **state)
{
    char out[32];
    rh_str t = S("a=1&b=x+y%26z&f%6Fo=bar&flag&a=2&=v&e=");
    assert_int_equal(rh_urlencoded_get(t, "a", out, sizeof(out)), 1);
    assert_string_equal(out, "1"); /* the first wins */
    assert_int_equal(rh_urlencoded_get(t, "b", out, sizeof(out)), 5);
    assert_string_equal(out, "x y&z");
    assert_int_equal(rh_urlencoded_get(t, "foo", out, sizeof(out)), 3); /* decoded name */
    assert_string_equal(out, "bar");
    assert_int_equal(rh_urlencoded_get(t, "flag", out, sizeof(out)), 0);
    assert_int_equal(rh_urlencoded_get(t, "e", out, sizeof(out)), 0);
    assert_int_equal(rh_urlencoded_get(t, "missing", out, sizeof(out)), -ENOENT);
    assert_int_equal(rh_urlencoded_get(t, "", out, sizeof(out)), -ENOENT);
    assert_int_equal(rh_urlencoded_get(S("x=%G1"), "x", out, sizeof(out)), -EINVAL);
    assert_int_equal(rh_urlencoded_get((rh_str){NULL, 0}, "x", out, sizeof(out)), -ENOENT);
    assert_int_equal(rh_urlencoded_get(S("&&x=1&&"), "x", out, sizeof(out)), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_escapes_and_plus),
        cmocka_unit_test(decode_rejects_bad_escapes_and_nul),
        cmocka_unit_test(decode_respects_capacity),
        cmocka_unit_test(urlencoded_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
