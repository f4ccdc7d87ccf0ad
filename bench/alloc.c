/* bench/alloc: what ringhttp's own allocations cost through uring/mimalloc_local.c (mi_*
 * bound at load time to a privately loaded mimalloc), with libc's malloc of the same
 * program as the peer in the same run.
 *
 * Before/after: the same file linked straight to libmimalloc (as the library did before:
 * `cc -O2 -DNDEBUG -D_GNU_SOURCE -I. bench/alloc.c -lmimalloc`, which also makes mimalloc the program's
 * malloc) against this target (the shim).
 *
 * Usage: alloc [iterations_per_rep] */
#include <dlfcn.h>
#include <mimalloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_common.h"

enum { BATCH = 64 };

static void *blocks[BATCH];

static void mi_pair_32(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        void *p = mi_malloc(32);
        bench_clobber(p);
        mi_free(p);
    }
}

static void mi_pair_4k(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        void *p = mi_malloc(4096);
        bench_clobber(p);
        mi_free(p);
    }
}

static void mi_zalloc_256(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        void *p = mi_zalloc(256);
        bench_clobber(p);
        mi_free(p);
    }
}

/* 64 live blocks of mixed sizes, then freed: closer to a burst of requests than a pair. */
static void mi_batch(uint64_t n)
{
    for (uint64_t i = 0; i < n; i += BATCH) {
        for (unsigned j = 0; j < BATCH; j++)
            blocks[j] = mi_malloc(16 + 48 * (j & 7));
        bench_clobber(blocks);
        for (unsigned j = 0; j < BATCH; j++)
            mi_free(blocks[j]);
    }
}

static void libc_batch(uint64_t n)
{
    for (uint64_t i = 0; i < n; i += BATCH) {
        for (unsigned j = 0; j < BATCH; j++)
            blocks[j] = malloc(16 + 48 * (j & 7));
        bench_clobber(blocks);
        for (unsigned j = 0; j < BATCH; j++)
            free(blocks[j]);
    }
}

/* Which allocator answers mi_* and which answers malloc, so a result says what it measured. */
static void print_binding(void)
{
    void *lib = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
    bool (*owned)(const void *) =
        lib ? (bool (*)(const void *))dlsym(lib, "mi_check_owned") : NULL;
    void *a = mi_malloc(64), *b = malloc(64);
    printf("mi_*: %s; malloc: %s\n", owned && owned(a) ? "mimalloc" : "libc",
           owned && owned(b) ? "mimalloc (overridden)" : "libc");
    mi_free(a);
    free(b);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    if (n < BATCH * 10) {
        fprintf(stderr, "usage: %s [iterations_per_rep >= %d]\n", argv[0], BATCH * 10);
        return 2;
    }
    printf("alloc: ringhttp's mi_* allocations (uring/mimalloc_local.c) and the program's "
           "malloc\n");
    bench_print_machine();
    print_binding();
    bench_measure("mi_malloc(32) + mi_free", mi_pair_32, n);
    bench_measure("mi_malloc(4096) + mi_free", mi_pair_4k, n);
    bench_measure("mi_zalloc(256) + mi_free", mi_zalloc_256, n);
    bench_measure("64 x mi_malloc(16..352), 64 x mi_free", mi_batch, n);
    bench_measure("64 x malloc(16..352), 64 x free (peer)", libc_batch, n);
    bench_print_reproduce("alloc", argc, argv);
    return 0;
}
