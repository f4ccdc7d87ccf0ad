/* bench/timer_wheel: what arming and cancelling a connection timer costs (uring/timer.h).
 *
 * Every request re-arms its connection's timer (header, body, idle phases), so arm and
 * cancel are on the hot path. N timers, each embedded in a 256-byte connection-sized record
 * as rh_conn embeds its own (so each op touches its own cache line, as in the server), are
 * armed at random expiries 1 ms..60 s ahead (insert), armed again at new expiries while
 * armed (re-arm: the keep-alive pattern), then cancelled. Last, timers due within one
 * revolution are armed and the wheel advanced past them all (fire, per timer).
 *
 * Usage: timer_wheel [timers] [passes_per_rep] */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_common.h"
#include "uring/timer.h"

enum { REPS = 5 };

struct conn_like {
    struct rh_timer timer;
    char rest[256 - sizeof(struct rh_timer)];
};

static uint64_t fired;
static void on_fire(struct rh_timer *t) { fired++; }


static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

static void one_pass(struct rh_wheel *w, struct conn_like *c, const uint32_t *delay, unsigned n,
                     uint64_t now, uint64_t ns[3])
{
    uint64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < n; i++)
        rh_timer_arm(w, &c[i].timer, now + delay[i]);
    uint64_t t1 = bench_now_ns();
    for (unsigned i = 0; i < n; i++)
        rh_timer_arm(w, &c[i].timer, now + delay[n - 1 - i]);
    uint64_t t2 = bench_now_ns();
    for (unsigned i = 0; i < n; i++)
        rh_timer_cancel(w, &c[i].timer);
    uint64_t t3 = bench_now_ns();
    ns[0] += t1 - t0, ns[1] += t2 - t1, ns[2] += t3 - t2;
}

/* Arms every timer within one revolution and advances past them: ns per timer fired. */
static uint64_t fire_pass(struct rh_wheel *w, struct conn_like *c, unsigned n, uint64_t *now)
{
    uint64_t span = (uint64_t)RH_WHEEL_SLOTS * RH_WHEEL_TICK_MS - RH_WHEEL_TICK_MS;
    for (unsigned i = 0; i < n; i++)
        rh_timer_arm(w, &c[i].timer, *now + 1 + (uint64_t)i * span / n);
    uint64_t t0 = bench_now_ns();
    *now += span + RH_WHEEL_TICK_MS;
    rh_wheel_advance(w, *now);
    return bench_now_ns() - t0;
}

static void report(const char *what, double *ns, unsigned n_ops)
{
    double lo = ns[0], hi = ns[0];
    for (unsigned r = 1; r < REPS; r++)
        lo = ns[r] < lo ? ns[r] : lo, hi = ns[r] > hi ? ns[r] : hi;
    printf("  %-30s %6.2f ns/op   (median of %u x %u ops; min %.2f max %.2f)\n", what,
           bench_median(ns, REPS), REPS, n_ops, lo, hi);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 10000;
    unsigned passes = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 100;
    if (n == 0 || passes == 0) {
        fprintf(stderr, "usage: %s [timers > 0] [passes_per_rep > 0]\n", argv[0]);
        return 2;
    }
    struct conn_like *c = calloc(n, sizeof(*c));
    uint32_t *delay = malloc(sizeof(*delay) * n);
    struct rh_wheel *w = malloc(sizeof(*w));
    if (!c || !delay || !w)
        return 1;
    uint32_t seed = 42;
    for (unsigned i = 0; i < n; i++) {
        delay[i] = 1 + lcg(&seed) % 60000;
        c[i].timer.fn = on_fire;
    }
    printf("timer_wheel: rh_timer_arm / rh_timer_cancel on %u timers in connection-sized "
           "records; wheel of %u slots x %u ms\n", n, RH_WHEEL_SLOTS, RH_WHEEL_TICK_MS);
    bench_print_machine();

    double ins[REPS], rearm[REPS], cancel[REPS], fire[REPS];
    uint64_t now = 1000000;
    rh_wheel_init(w, now);
    for (unsigned r = 0; r < REPS; r++) {
        uint64_t ns[3] = {0};
        for (unsigned p = 0; p < passes; p++)
            one_pass(w, c, delay, n, now, ns);
        uint64_t fire_ns = 0, fired_before = fired;
        for (unsigned p = 0; p < passes; p++)
            fire_ns += fire_pass(w, c, n, &now);
        double ops = (double)n * passes;
        ins[r] = (double)ns[0] / ops;
        rearm[r] = (double)ns[1] / ops;
        cancel[r] = (double)ns[2] / ops;
        fire[r] = (double)fire_ns / (double)(fired - fired_before);
        if (fired - fired_before != (uint64_t)n * passes || w->count != 0) {
            fprintf(stderr, "timer_wheel: %llu of %llu timers fired, %u still armed\n",
                    (unsigned long long)(fired - fired_before),
                    (unsigned long long)n * passes, w->count);
            return 1;
        }
    }
    report("insert (arm an idle timer)", ins, n * passes);
    report("re-arm (armed, new expiry)", rearm, n * passes);
    report("cancel", cancel, n * passes);
    report("fire (advance, per timer)", fire, n * passes);
    free(w);
    free(delay);
    free(c);
    bench_print_reproduce("timer_wheel", argc, argv);
    return 0;
}
