/* bench/ctx_getset: what a per-request context access costs a handler.
 *
 * A request-like context (struct rh_ctx, the slot array every request embeds) is made the
 * thread's current one with ctx_enter, as the ring does before it runs a handler; then the
 * public rh_ctx_get / rh_ctx_set are called in a loop. Also: a set that replaces a value
 * with a destructor (the destructor runs), and the ctx_enter + ctx_leave pair the ring pays
 * around every handler, middleware and done callback.
 *
 * Usage: ctx_getset [iterations_per_rep] */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_common.h"
#include "ctx/ctx.h"
#include "include/ringhttp.h"


static uint64_t destroyed;
static void count_destroy(void *v) { destroyed++; }

static int key_plain, key_destroy;
static struct rh_ctx req_ctx; /* stands for the ctx inside a request */
static int vals[2];

static void op_get(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        bench_clobber(rh_ctx_get(key_plain));
}

static void op_set(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        bench_clobber((void *)(intptr_t)rh_ctx_set(key_plain, &vals[i & 1]));
}

static void op_set_destroy(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        bench_clobber((void *)(intptr_t)rh_ctx_set(key_destroy, &vals[i & 1]));
}

static void op_enter_leave(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        struct rh_ctx *prev = ctx_enter(&req_ctx);
        bench_clobber(prev);
        ctx_leave(prev);
    }
}

static void op_get_outside(uint64_t n)
{
    struct rh_ctx *prev = ctx_enter(NULL);
    for (uint64_t i = 0; i < n; i++)
        bench_clobber(rh_ctx_get(key_plain));
    ctx_leave(prev);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000;
    if (n < 10) {
        fprintf(stderr, "usage: %s [iterations_per_rep >= 10]\n", argv[0]);
        return 2;
    }
    key_plain = rh_ctx_key_new("bench.plain", NULL);
    key_destroy = rh_ctx_key_new("bench.destroy", count_destroy);
    if (key_plain < 0 || key_destroy < 0)
        return 1;
    printf("ctx_getset: rh_ctx_get / rh_ctx_set on the current request's slots (ctx_enter on "
           "a request's struct rh_ctx)\n");
    bench_print_machine();

    ctx_init(&req_ctx);
    struct rh_ctx *prev = ctx_enter(&req_ctx);
    rh_ctx_set(key_plain, &vals[0]);
    rh_ctx_set(key_destroy, &vals[0]);
    bench_measure("rh_ctx_get (value set)", op_get, n);
    bench_measure("rh_ctx_set (no destructor)", op_set, n);
    bench_measure("rh_ctx_set (replaces: destructor)", op_set_destroy, n);
    ctx_leave(prev);
    bench_measure("ctx_enter + ctx_leave", op_enter_leave, n);
    bench_measure("rh_ctx_get (no current request)", op_get_outside, n);
    ctx_release(&req_ctx);
    if (destroyed == 0) {
        fprintf(stderr, "ctx_getset: the destructor never ran: the set was not measured\n");
        return 1;
    }
    bench_print_reproduce("ctx_getset", argc, argv);
    return 0;
}
