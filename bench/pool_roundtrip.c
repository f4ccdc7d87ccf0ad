/* bench/pool_roundtrip: what a blocking task costs the ring that hands it off.
 *
 * A real rh_loop runs on its own thread and submits tasks whose work is empty; each task
 * comes back through rh_loop_post (the pool's deliver), and its msg.fn runs on the loop.
 * Measures (1) the round trip submit -> work -> msg.fn on the loop, one task at a time, as
 * median and p99; (2) tasks/s and process CPU per task with a pipeline of outstanding tasks
 * (each completion resubmits its task from msg.fn), through one lane and through the shared
 * pool. Both twice, in the same run: with a wake-up per task (the loop posts with
 * rh_loop_post, no spin, no held wakes), and batched as the server runs it (the ring holds
 * its wakes to the end of its iteration, pool threads post quietly and wake the loop once
 * per run of results, and spin up to 10 us before parking, as the server does).
 *
 * Usage: pool_roundtrip [round_trips] [pipeline_tasks] [pipeline_depth] [threads] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "pool/pool.h"

struct params {
    unsigned round_trips, pipeline_tasks, depth, threads;
};

struct bench;

/* One task in flight; the loop owns it whenever the pool does not. */
struct slot {
    struct rh_task task; /* first: the delivered msg is the slot */
    struct bench *b;
};

struct bench {
    struct rh_loop loop;
    struct params p;
    struct rh_pool *pool, *pools[2]; /* [0] a wake-up per task, [1] batched */
    int lane; /* < 0: the shared pool */
    /* latency phase */
    bool done;
    uint64_t done_ns;
    /* pipeline phase */
    unsigned submitted, completed, total;
    int submit_errors;
};

enum { WARMUP = 1000, QUEUE_CAP = 1024 };

static void work_empty(struct rh_task *t) {}

static int submit(struct bench *b, struct slot *s)
{
    return b->lane < 0 ? rh_pool_submit(b->pool, &s->task)
                       : rh_pool_submit_lane(b->pool, b->lane, &s->task);
}

/* ---- latency -------------------------------------------------------------------------- */

static void on_latency_done(struct rh_loop *loop, struct rh_msg *msg)
{
    struct bench *b = loop->owner;
    b->done_ns = rh_pool_now_ns();
    b->done = true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sequential round trips; returns the sorted samples (ns), owned by the caller. */
static uint64_t *measure_latency(struct bench *b, unsigned n)
{
    uint64_t *ns = malloc(sizeof(*ns) * n);
    struct slot s = {.task = {.msg.fn = on_latency_done, .work = work_empty, .owner = &b->loop},
                     .b = b};
    for (unsigned i = 0; ns && i < WARMUP + n; i++) {
        b->done = false;
        uint64_t t0 = rh_pool_now_ns();
        if (submit(b, &s) < 0) {
            free(ns);
            return NULL;
        }
        while (!b->done)
            rh_loop_run_once(&b->loop);
        if (i >= WARMUP)
            ns[i - WARMUP] = b->done_ns - t0;
    }
    if (ns)
        qsort(ns, n, sizeof(*ns), cmp_u64);
    return ns;
}

static void print_latency(const char *what, struct bench *b, unsigned n)
{
    uint64_t *ns = measure_latency(b, n);
    if (!ns) {
        printf("  %-12s failed\n", what);
        return;
    }
    printf("  %-12s median %7.1f us   p99 %7.1f us   (min %.1f, max %.1f)\n", what,
           ns[n / 2] / 1e3, ns[(size_t)n * 99 / 100] / 1e3, ns[0] / 1e3, ns[n - 1] / 1e3);
    free(ns);
}

/* ---- pipeline ------------------------------------------------------------------------- */

static void on_pipe_done(struct rh_loop *loop, struct rh_msg *msg)
{
    struct bench *b = loop->owner;
    struct slot *s = (struct slot *)msg;
    b->completed++;
    if (b->submitted < b->total) {
        if (submit(b, s) == 0)
            b->submitted++;
        else
            b->submit_errors++;
    }
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void print_pipeline(const char *what, struct bench *b, unsigned total, unsigned depth)
{
    struct slot *slots = calloc(depth, sizeof(*slots));
    if (!slots)
        return;
    b->submitted = b->completed = 0;
    b->total = total;
    b->submit_errors = 0;
    uint64_t t0 = rh_pool_now_ns();
    double cpu0 = cpu_seconds();
    for (unsigned i = 0; i < depth && b->submitted < total; i++) {
        slots[i] = (struct slot){
            .task = {.msg.fn = on_pipe_done, .work = work_empty, .owner = &b->loop}, .b = b};
        if (submit(b, &slots[i]) == 0)
            b->submitted++;
    }
    while (b->completed < b->submitted)
        rh_loop_run_once(&b->loop);
    double secs = (rh_pool_now_ns() - t0) / 1e9;
    double cpu = cpu_seconds() - cpu0;
    printf("  %-12s %10.0f tasks/s   %6.2f us CPU/task   (%u tasks in %.3f s%s)\n", what,
           b->completed / secs, cpu * 1e6 / b->completed, b->completed, secs,
           b->submit_errors ? ", SUBMIT ERRORS" : "");
    free(slots);
}

/* ---- setup ---------------------------------------------------------------------------- */

static void flush_wakes(struct rh_loop *loop) { rh_pool_flush_wakes(); }

static void run_mode(struct bench *b, bool batched)
{
    const struct params *p = &b->p;
    b->pool = b->pools[batched];
    rh_pool_hold_wakes(batched);
    b->loop.before_submit = batched ? flush_wakes : NULL;
    printf("%s:\n", batched ? "batched wake-ups (as the server runs it)"
                            : "a wake-up per task");
    printf(" latency, %u sequential round trips (after %u warm-up):\n", p->round_trips, WARMUP);
    b->lane = -1;
    print_latency("shared pool", b, p->round_trips);
    b->lane = 0;
    print_latency("lane", b, p->round_trips);
    printf(" throughput, pipeline of %u outstanding, %u tasks:\n", p->depth, p->pipeline_tasks);
    b->lane = 0;
    print_pipeline("lane", b, p->pipeline_tasks, p->depth);
    b->lane = -1;
    print_pipeline("shared pool", b, p->pipeline_tasks, p->depth);
    rh_pool_hold_wakes(false);
}

static void *bench_main(void *arg)
{
    struct bench *b = arg;
    struct rh_loop_config cfg = {.sq_entries = 64, .buf_count = 16, .buf_size = 1024};
    int ret = rh_loop_init(&b->loop, &cfg, b); /* here: this thread is the ring's issuer */
    if (ret < 0) {
        fprintf(stderr, "rh_loop_init: %s\n", strerror(-ret));
        return NULL;
    }
    run_mode(b, false);
    run_mode(b, true);
    rh_loop_fini(&b->loop);
    return NULL;
}

static void print_machine(const struct params *p)
{
    bench_print_machine();
    printf("pool: %u worker threads, queue %u; one lane, queue %u%s\n", p->threads, QUEUE_CAP,
           QUEUE_CAP,
#ifdef RH_TSAN
           " (TSan build)"
#else
           ""
#endif
    );
}

static unsigned arg_or(int argc, char **argv, int i, unsigned dflt)
{
    return argc > i ? (unsigned)strtoul(argv[i], NULL, 10) : dflt;
}

int main(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b)); /* the loop is large: not on the stack */
    if (!b)
        return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned dflt_threads = cpus > 2 ? 2 * (unsigned)cpus : 4; /* the pool's own default */
    b->p = (struct params){arg_or(argc, argv, 1, 20000), arg_or(argc, argv, 2, 200000),
                             arg_or(argc, argv, 3, 64), arg_or(argc, argv, 4, dflt_threads)};
    if (!b->p.round_trips || !b->p.depth || b->p.depth > QUEUE_CAP) {
        fprintf(stderr, "usage: %s [round_trips] [pipeline_tasks] [depth<=%u] [threads]\n",
                argv[0], QUEUE_CAP);
        return 2;
    }
    printf("pool_roundtrip: submit -> empty work on a pool thread -> rh_loop_post -> msg.fn on "
           "the loop thread\n");
    print_machine(&b->p);

    struct rh_lane_config lane = {.name = "bench", .queue_cap = QUEUE_CAP};
    for (int batched = 0; batched < 2; batched++) {
        struct rh_pool_config cfg = {
            .threads = b->p.threads, .queue_cap = QUEUE_CAP, .lanes = &lane, .nlanes = 1,
            .deliver = (void (*)(void *, struct rh_msg *))rh_loop_post,
            .post = batched ? (void (*)(void *, struct rh_msg *))rh_loop_post_quiet : NULL,
            .wake = batched ? (void (*)(void *))rh_loop_wake : NULL,
            .spin_us = batched ? 10 : 0};
        int ret = rh_pool_new(&cfg, &b->pools[batched]);
        if (ret < 0) {
            fprintf(stderr, "rh_pool_new: %s\n", strerror(-ret));
            return 1;
        }
    }
    pthread_t th;
    pthread_create(&th, NULL, bench_main, b);
    pthread_join(th, NULL);
    rh_pool_free(b->pools[0]);
    rh_pool_free(b->pools[1]);
    printf("reproduce: cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && "
           "cmake --build build-rel --target pool_roundtrip && "
           "./build-rel/bench/pool_roundtrip %u %u %u %u\n",
           b->p.round_trips, b->p.pipeline_tasks, b->p.depth, b->p.threads);
    free(b);
    return 0;
}
