/* static/static_cache.c: the open-file cache, without a ring: LRU order and eviction, references that
 * keep an evicted entry's fd open until the last transfer lets go, and the validator header
 * lines at their longest. The ring is "stopping", so fds are closed with close(2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "static/static_cache.c"

struct fixture {
    struct rh_worker w;
    struct static_ring sr;
    struct static_mount m;
    struct static_xfer x;
};

static struct fixture *fixture_new(unsigned cap)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->sr.w = &f->w;
    f->sr.cap = cap;
    f->sr.nbuckets = 16;
    f->sr.buckets = calloc(16, sizeof(*f->sr.buckets));
    f->sr.stopping = true; /* no ring: close(2) */
    f->x.m = &f->m;
    f->x.sr = &f->sr;
    return f;
}

static void fixture_free(struct fixture *f)
{
    while (f->sr.lru_first)
        static_cache_unlink(&f->sr, f->sr.lru_first);
    free(f->sr.buckets);
    free(f);
}

static bool fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* Inserts path as if x had just opened and statted it; returns the new fd. */
static int insert(struct fixture *f, const char *path, uint64_t size)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    f->x.fd = fd;
    memset(&f->x.stx, 0, sizeof(f->x.stx));
    f->x.stx.stx_size = size;
    f->x.stx.stx_ino = 42;
    f->x.stx.stx_mtime.tv_sec = 784111777;
    f->x.path_len = (uint32_t)strlen(path);
    memcpy(f->x.path, path, f->x.path_len + 1);
    assert_non_null(static_cache_insert(&f->sr, &f->x));
    assert_int_equal(f->x.fd, -1); /* the entry owns it now */
    return fd;
}

static struct fentry *find(struct fixture *f, const char *path)
{
    return static_cache_find(&f->sr, &f->m, path, strlen(path));
}

static void test_lru_evicts_the_least_recent(void **state)
{
    struct fixture *f = fixture_new(2);
    int a = insert(f, "a.css", 1), b = insert(f, "b.css", 2);
    struct fentry *ea = find(f, "a.css");
    assert_non_null(ea);
    lru_remove(&f->sr, ea); /* a hit: to the front, as lookup() does */
    lru_push_front(&f->sr, ea);
    int c = insert(f, "c.css", 3);
    assert_null(find(f, "b.css"));
    assert_false(fd_open(b));
    assert_non_null(find(f, "a.css"));
    assert_non_null(find(f, "c.css"));
    assert_true(fd_open(a) && fd_open(c));
    assert_int_equal(f->sr.count, 2);
    fixture_free(f);
    assert_false(fd_open(a) || fd_open(c));
}

static void test_evicted_entry_keeps_its_fd_while_referenced(void **state)
{
    struct fixture *f = fixture_new(1);
    int a = insert(f, "big.bin", 1 << 20);
    struct fentry *ea = static_fentry_get(find(f, "big.bin")); /* a splice in flight */
    insert(f, "other.bin", 5);                         /* evicts big.bin */
    assert_null(find(f, "big.bin"));
    assert_false(ea->linked);
    assert_true(fd_open(a)); /* not closed under the transfer */
    static_fentry_put(&f->sr, ea);   /* the transfer ends */
    assert_false(fd_open(a));
    fixture_free(f);
}

static void test_replacing_a_key_unlinks_the_old_entry(void **state)
{
    struct fixture *f = fixture_new(4);
    int a1 = insert(f, "x.html", 1);
    int a2 = insert(f, "x.html", 2); /* two misses for the same file raced */
    assert_false(fd_open(a1));
    assert_int_equal(find(f, "x.html")->fd, a2);
    assert_int_equal(f->sr.count, 1);
    fixture_free(f);
}

static void test_validators_at_their_longest(void **state)
{
    struct fentry *e = calloc(1, sizeof(*e) + 8);
    e->ino = UINT64_MAX;
    e->size = UINT64_MAX;
    e->mtime = INT64_MAX / 1000000000;
    e->mtime_nsec = 999999999;
    memcpy(e->path, "x.txt", 6);
    e->path_len = 5;
    entry_describe(e);
    assert_true(e->etag_len <= sizeof(e->etag));
    assert_true(e->hdrs_len <= sizeof(e->hdrs));
    assert_memory_equal(e->etag, "\"ffffffffffffffff-ffffffffffffffff-", 35);
    assert_memory_equal(e->hdrs, "Last-Modified: ", 15);
    assert_memory_equal(e->hdrs + e->hdrs_len - 24, "\r\nAccept-Ranges: bytes\r\n", 24);
    assert_string_equal(e->ctype, "text/plain; charset=utf-8");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_evicts_the_least_recent),
        cmocka_unit_test(test_evicted_entry_keeps_its_fd_while_referenced),
        cmocka_unit_test(test_replacing_a_key_unlinks_the_old_entry),
        cmocka_unit_test(test_validators_at_their_longest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
