/* uring/mimalloc_local.c: ringhttp's mi_* calls reach mimalloc (loaded privately), while the
 * program's malloc stays libc's (or the sanitizer's), never mimalloc's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <mimalloc.h>

static bool (*owned_by_mimalloc)(const void *p);

static int find_mimalloc(void **state)
{
    void *lib = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_NOLOAD); /* loaded by the shim */
    if (!lib)
        return -1;
    owned_by_mimalloc = (bool (*)(const void *))dlsym(lib, "mi_check_owned");
    dlclose(lib);
    return owned_by_mimalloc ? 0 : -1;
}

static void test_mi_calls_reach_mimalloc(void **state)
{
    void *blocks[] = {mi_malloc(100), mi_zalloc(64), mi_calloc(3, 40), mi_strdup("abc"),
                      mi_strndup("abcdef", 3), mi_zalloc_aligned(256, 64),
                      mi_malloc_aligned(32, 128)};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
        assert_non_null(blocks[i]);
        assert_true(owned_by_mimalloc(blocks[i]));
    }
    assert_true(((uintptr_t)blocks[5] & 63) == 0 && ((uintptr_t)blocks[6] & 127) == 0);
    assert_int_equal(((char *)blocks[1])[63], 0);
    assert_string_equal(blocks[4], "abc");
    blocks[0] = mi_realloc(blocks[0], 10000);
    assert_true(owned_by_mimalloc(blocks[0]));
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++)
        mi_free(blocks[i]);
}

static void test_program_malloc_is_not_mimalloc(void **state)
{
    void *p = malloc(100);
    assert_non_null(p);
    assert_false(owned_by_mimalloc(p));
    free(p);
    Dl_info info;
    assert_true(dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info) && info.dli_fname);
    assert_null(strstr(info.dli_fname, "mimalloc"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mi_calls_reach_mimalloc),
        cmocka_unit_test(test_program_malloc_is_not_mimalloc),
    };
    return cmocka_run_group_tests(tests, find_mimalloc, NULL);
}
