/* The blocking-task pool: groups (a bounded queue plus the threads that serve it; the shared
 * pool is one group of N threads, each lane a group of one), the futex parking that lets
 * idle threads sleep without making submitters pay for it, the task lifecycle (run, expire,
 * cancel, deliver exactly once), rh_task_call_on_owner, and orderly shutdown. */
#include "pool/pool.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <mimalloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pool/mpmc.h"

enum { DEFAULT_QUEUE_CAP = 1024, MIN_DEFAULT_THREADS = 4 };

/* A queue and the threads that serve it. */
struct group {
    struct rh_mpmc queue;

    /* Parking (see group_park). Its own line: producers read idle on every submit, and
     * only parking threads and the producers that wake them write these. */
    alignas(RH_CACHELINE) _Atomic uint32_t idle; /* announced parked, not yet claimed */
    _Atomic uint32_t tokens;                      /* futex word: wake-ups granted, not taken */

    /* Written by pool threads as tasks finish; rejected by producers only on failure. */
    alignas(RH_CACHELINE) _Atomic uint64_t running;
    _Atomic uint64_t completed, rejected, expired, cancelled;

    alignas(RH_CACHELINE) struct rh_pool *pool;
    char *name; /* lanes only, owned; NULL for the shared group */
    pthread_t *threads;
    unsigned nthreads, nstarted;
};

/* groups[0] is the shared pool, groups[1 + i] is lane i. Everything here is written only
 * by rh_pool_new and rh_pool_free; pool threads and submitters read it. */
struct rh_pool {
    void (*deliver)(void *owner, struct rh_msg *msg);
    uint64_t timeout_ns;
    unsigned nlanes;
    struct group *groups;
};

/* Set on pool threads only: which group the thread serves, and the task it is running. */
static _Thread_local struct group *tls_group;
static _Thread_local struct rh_task *tls_task;

uint64_t rh_pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- futex ----------------------------------------------------------------------------
 * Private futexes: the kernel keys them by (mm, address) and never reads the word on a
 * wake, which rh_task_call_on_owner relies on. Every wait here re-checks its condition in a
 * loop, so EINTR, EAGAIN and spurious wake-ups need no handling. */

static void futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, uint32_t n)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n > INT_MAX ? INT_MAX : (int)n, NULL, NULL,
            0);
}

/* ---- parking ---------------------------------------------------------------------------
 * A thread that finds its queue empty announces itself in idle, looks once more, and then
 * sleeps on tokens, a counting semaphore. A producer, after publishing, looks at idle: if
 * it is 0 nobody sleeps and the submit makes no system call; otherwise it claims one idle
 * thread (idle - 1) and grants it a token (+1 and FUTEX_WAKE). Since a claim removes the
 * thread from idle, a burst of submits wakes each parked thread once, not once per task.
 *
 * Every announced thread leaves either by unregistering itself (idle - 1) or by taking a
 * token, never both, so idle + tokens always equals the threads between announcing and
 * leaving; counts never drift and no grant is lost. Threads are interchangeable, so it
 * does not matter which one a given token wakes. */

static void tokens_grant(struct group *g, uint32_t n)
{
    /* relaxed: tokens carry no data (tasks are published by the queue's own release); the
     * futex compares the word atomically, so a waiter that read 0 before this add either
     * sees the new value in FUTEX_WAIT or is already queued when FUTEX_WAKE runs. */
    atomic_fetch_add_explicit(&g->tokens, n, memory_order_relaxed);
    futex_wake(&g->tokens, n);
}

static void tokens_take(struct group *g)
{
    uint32_t n = atomic_load_explicit(&g->tokens, memory_order_relaxed);
    for (;;) {
        if (n == 0) {
            futex_wait(&g->tokens, 0);
            n = atomic_load_explicit(&g->tokens, memory_order_relaxed);
        } else if (atomic_compare_exchange_weak_explicit(&g->tokens, &n, n - 1,
                                                         memory_order_relaxed,
                                                         memory_order_relaxed)) {
            return;
        }
    }
}

/* Removes one announced thread from idle if any is left; false: all were claimed. */
static bool idle_take(struct group *g)
{
    uint32_t n = atomic_load_explicit(&g->idle, memory_order_relaxed);
    while (n > 0)
        if (atomic_compare_exchange_weak_explicit(&g->idle, &n, n - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* Producer side, after a successful push. */
static void group_wake_one(struct group *g)
{
    /* seq_cst fence, one half of a Dekker handshake with group_park: our publish (the
     * queue's seq store) then our load of idle, against the parker's store to idle then its
     * load of the queue. Without it the store could sit in our store buffer while we read a
     * stale idle == 0, and the parker could read the queue as empty: a lost wake-up. */
    atomic_thread_fence(memory_order_seq_cst);
    if (idle_take(g))
        tokens_grant(g, 1);
}

/* After a close, and by each thread that leaves, so none sleeps through the end. */
static void group_wake_all(struct group *g)
{
    atomic_thread_fence(memory_order_seq_cst); /* as in group_wake_one, against the close */
    uint32_t n = atomic_exchange_explicit(&g->idle, 0, memory_order_relaxed);
    if (n)
        tokens_grant(g, n);
}

/* Consumer side: sleeps until granted a wake-up, unless work (or the end) shows up while
 * announcing. Returns a task found on the way, else NULL (the caller looks again). */
static struct rh_task *group_park(struct group *g)
{
    atomic_fetch_add_explicit(&g->idle, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* the other half: see group_wake_one */
    struct rh_task *t = rh_mpmc_pop(&g->queue);
    if (t || rh_mpmc_drained(&g->queue)) {
        if (!idle_take(g))
            tokens_take(g); /* a producer claimed us already: take its grant (at once,
                             * or as soon as it lands) so the counts stay exact */
        return t;
    }
    tokens_take(g);
    return NULL;
}

/* The next task for this thread, or NULL once the group is closed and drained. */
static struct rh_task *group_take(struct group *g)
{
    for (;;) {
        struct rh_task *t = rh_mpmc_pop(&g->queue);
        if (t)
            return t;
        if (rh_mpmc_drained(&g->queue))
            return NULL;
        t = group_park(g);
        if (t)
            return t;
    }
}

/* ---- tasks ---------------------------------------------------------------------------- */

/* Hands t back. From here on t belongs to its owner again: nothing touches it after. */
static void task_deliver(struct group *g, struct rh_task *t, enum rh_task_state state,
                         _Atomic uint64_t *counter)
{
    /* Counted before delivery, so an owner that has seen its delivery sees the count. */
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    /* release: the work's writes are visible to whoever acquires state. (rh_loop_post
     * orders them too, with its release CAS and the loop's acquire exchange.) */
    atomic_store_explicit(&t->state, state, memory_order_release);
    g->pool->deliver(t->owner, &t->msg);
}

static void task_run(struct group *g, struct rh_task *t)
{
    /* The check here is the point where a task "starts": a cancel after it is seen only
     * through rh_task_check. acquire pairs with rh_task_cancel's release. */
    if (atomic_load_explicit(&t->cancel_requested, memory_order_acquire)) {
        task_deliver(g, t, RH_TASK_CANCELLED, &g->cancelled);
        return;
    }
    if (t->expires_ns && rh_pool_now_ns() > t->expires_ns) {
        task_deliver(g, t, RH_TASK_EXPIRED, &g->expired);
        return;
    }
    atomic_store_explicit(&t->state, RH_TASK_RUNNING, memory_order_relaxed);
    atomic_fetch_add_explicit(&g->running, 1, memory_order_relaxed);
    tls_task = t;
    t->work(t);
    tls_task = NULL;
    atomic_fetch_sub_explicit(&g->running, 1, memory_order_relaxed);
    task_deliver(g, t, RH_TASK_DONE, &g->completed);
}

static void *group_thread(void *arg)
{
    struct group *g = arg;
    tls_group = g;
    for (struct rh_task *t; (t = group_take(g));)
        task_run(g, t);
    /* Siblings may have parked while the last claimed positions were still being
     * published; only one of them was woken for that item. Wake the rest to see the end. */
    group_wake_all(g);
    return NULL;
}

/* Fills in what the pool owns in t before it is published by the push. */
static void task_prepare(const struct rh_pool *pool, struct rh_task *t)
{
    t->submitted_ns = rh_pool_now_ns();
    t->expires_ns = t->deadline_ns;
    if (!t->expires_ns && pool->timeout_ns)
        t->expires_ns = t->submitted_ns + pool->timeout_ns;
    t->stop_reason = 0;
    atomic_store_explicit(&t->state, RH_TASK_QUEUED, memory_order_relaxed);
    atomic_store_explicit(&t->cancel_requested, false, memory_order_relaxed);
}

static int group_submit(const struct rh_pool *pool, struct group *g, struct rh_task *t)
{
    if (!t || !t->work)
        return -EINVAL;
    task_prepare(pool, t);
    int ret = rh_mpmc_push(&g->queue, t);
    if (ret == 0)
        group_wake_one(g);
    else if (ret == -EAGAIN)
        atomic_fetch_add_explicit(&g->rejected, 1, memory_order_relaxed);
    return ret;
}

int rh_pool_submit(struct rh_pool *pool, struct rh_task *t)
{
    return group_submit(pool, &pool->groups[0], t);
}

int rh_pool_submit_lane(struct rh_pool *pool, int lane, struct rh_task *t)
{
    if (lane < 0 || (unsigned)lane >= pool->nlanes)
        return -ENOENT;
    return group_submit(pool, &pool->groups[1 + lane], t);
}

void rh_task_cancel(struct rh_task *t)
{
    atomic_store_explicit(&t->cancel_requested, true, memory_order_release);
}

int rh_task_check(struct rh_task *t)
{
    int ret = 0;
    if (atomic_load_explicit(&t->cancel_requested, memory_order_acquire))
        ret = -ECANCELED;
    else if (t->expires_ns && rh_pool_now_ns() > t->expires_ns)
        ret = -ETIMEDOUT;
    t->stop_reason = ret;
    return ret;
}

struct rh_task *rh_pool_current_task(void)
{
    return tls_task;
}

/* ---- call on owner -------------------------------------------------------------------- */

/* Lives on the waiting pool thread's stack for the duration of rh_task_call_on_owner. */
struct owner_call {
    struct rh_msg msg; /* first: the loop hands back this pointer */
    void (*fn)(void *arg);
    void *arg;
    _Atomic uint32_t done; /* futex word: 0 until fn has returned */
};

/* Runs on the owner's thread. */
static void owner_call_run(struct rh_loop *loop, struct rh_msg *msg)
{
    struct owner_call *call = (struct owner_call *)msg;
    _Atomic uint32_t *done = &call->done; /* an address: still usable after the store */
    call->fn(call->arg);
    /* release: fn's effects happen before the waiter returns. From this store on, the
     * waiter may return and its stack frame (call) may be reused, so nothing below reads
     * call: FUTEX_WAKE on a private futex uses the address only as a key. At worst the wake
     * lands on a later futex at the same stack address, which re-checks and sleeps again. */
    atomic_store_explicit(done, 1, memory_order_release);
    futex_wake(done, 1);
}

void rh_task_call_on_owner(struct rh_task *t, void (*fn)(void *arg), void *arg)
{
    struct group *g = tls_group;
    assert(g && "rh_task_call_on_owner is for work functions");
    if (!g)
        return;
    struct owner_call call = {.msg = {.fn = owner_call_run}, .fn = fn, .arg = arg};
    g->pool->deliver(t->owner, &call.msg);
    while (atomic_load_explicit(&call.done, memory_order_acquire) == 0)
        futex_wait(&call.done, 0);
}

/* ---- lanes and stats ------------------------------------------------------------------ */

int rh_pool_lane_find(const struct rh_pool *pool, const char *name)
{
    if (!name)
        return -ENOENT;
    for (unsigned i = 0; i < pool->nlanes; i++)
        if (strcmp(pool->groups[1 + i].name, name) == 0)
            return (int)i;
    return -ENOENT;
}

unsigned rh_pool_lane_count(const struct rh_pool *pool)
{
    return pool->nlanes;
}

const char *rh_pool_lane_name(const struct rh_pool *pool, unsigned lane)
{
    return lane < pool->nlanes ? pool->groups[1 + lane].name : NULL;
}

void rh_pool_get_stats(const struct rh_pool *pool, int lane, struct rh_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (lane >= 0 && (unsigned)lane >= pool->nlanes)
        return;
    struct group *g = &pool->groups[lane < 0 ? 0 : 1 + lane];
    out->queued = rh_mpmc_size(&g->queue);
    out->running = atomic_load_explicit(&g->running, memory_order_relaxed);
    out->completed = atomic_load_explicit(&g->completed, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&g->rejected, memory_order_relaxed);
    out->expired = atomic_load_explicit(&g->expired, memory_order_relaxed);
    out->cancelled = atomic_load_explicit(&g->cancelled, memory_order_relaxed);
}

/* ---- creation and shutdown ------------------------------------------------------------ */

static int config_check(const struct rh_pool_config *cfg)
{
    if (!cfg || !cfg->deliver || (cfg->nlanes && !cfg->lanes))
        return -EINVAL;
    for (unsigned i = 0; i < cfg->nlanes; i++) {
        const char *name = cfg->lanes[i].name;
        if (!name || !*name)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(cfg->lanes[j].name, name) == 0)
                return -EINVAL;
    }
    return 0;
}

static unsigned default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cpus > 0 ? 2 * (unsigned)cpus : 0;
    return n < MIN_DEFAULT_THREADS ? MIN_DEFAULT_THREADS : n;
}

/* Allocates the group's cells and thread handles (owned by the group until
 * group_release) and copies its name. */
static int group_init(struct group *g, struct rh_pool *pool, const char *name, unsigned cap,
                      unsigned nthreads)
{
    g->pool = pool;
    g->nthreads = nthreads;
    if (!cap)
        cap = DEFAULT_QUEUE_CAP;
    /* The sequence scheme needs two cells: with one, a full cell's sequence (pos + 1) equals
     * the next producer's position and it would overwrite the queued task. */
    if (cap < 2)
        cap = 2;
    struct rh_mpmc_cell *cells = mi_calloc(cap, sizeof(*cells));
    g->threads = mi_calloc(nthreads, sizeof(*g->threads));
    g->name = name ? mi_strdup(name) : NULL;
    rh_mpmc_init(&g->queue, cells, cells ? cap : 0);
    if (!cells || !g->threads || (name && !g->name))
        return -ENOMEM;
    return 0;
}

static void group_release(struct group *g)
{
    mi_free(g->queue.cells);
    mi_free(g->threads);
    mi_free(g->name);
}

/* Thread names show up in top, perf and gdb: "rh-pool-3", "rh-lane-<name>" (15 chars). */
static void thread_name(const struct group *g, unsigned i, char out[16])
{
    if (g->name)
        snprintf(out, 16, "rh-lane-%s", g->name);
    else
        snprintf(out, 16, "rh-pool-%u", i);
}

/* Pool threads start with every signal blocked: SIGINT/SIGTERM belong to the main thread,
 * and a blocking task interrupted by a handler would see EINTR it never asked for. */
static int group_start(struct group *g)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int ret = 0;
    while (g->nstarted < g->nthreads) {
        ret = -pthread_create(&g->threads[g->nstarted], NULL, group_thread, g);
        if (ret)
            break;
        char name[16];
        thread_name(g, g->nstarted, name);
        pthread_setname_np(g->threads[g->nstarted], name);
        g->nstarted++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

/* Closes every queue first, so the whole pool refuses new work at once, then lets each
 * group drain and joins it. */
static void pool_stop(struct rh_pool *pool)
{
    unsigned ngroups = 1 + pool->nlanes;
    for (unsigned i = 0; i < ngroups; i++)
        if (pool->groups[i].queue.cells)
            rh_mpmc_close(&pool->groups[i].queue);
    for (unsigned i = 0; i < ngroups; i++) {
        struct group *g = &pool->groups[i];
        if (!g->queue.cells)
            continue;
        group_wake_all(g);
        for (unsigned j = 0; j < g->nstarted; j++)
            pthread_join(g->threads[j], NULL);
    }
}

static void pool_release(struct rh_pool *pool)
{
    for (unsigned i = 0; pool->groups && i < 1 + pool->nlanes; i++)
        group_release(&pool->groups[i]);
    mi_free(pool->groups);
    mi_free(pool);
}

static int pool_build(struct rh_pool *pool, const struct rh_pool_config *cfg)
{
    pool->groups = mi_zalloc_aligned((1 + (size_t)cfg->nlanes) * sizeof(struct group),
                                     RH_CACHELINE);
    if (!pool->groups)
        return -ENOMEM;
    pool->nlanes = cfg->nlanes;
    unsigned threads = cfg->threads ? cfg->threads : default_threads();
    int ret = group_init(&pool->groups[0], pool, NULL, cfg->queue_cap, threads);
    for (unsigned i = 0; ret == 0 && i < cfg->nlanes; i++)
        ret = group_init(&pool->groups[1 + i], pool, cfg->lanes[i].name,
                         cfg->lanes[i].queue_cap, 1);
    for (unsigned i = 0; ret == 0 && i < 1 + cfg->nlanes; i++)
        ret = group_start(&pool->groups[i]);
    return ret;
}

int rh_pool_new(const struct rh_pool_config *cfg, struct rh_pool **out)
{
    int ret = config_check(cfg);
    if (ret)
        return ret;
    struct rh_pool *pool = mi_zalloc(sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pool->deliver = cfg->deliver;
    pool->timeout_ns = (uint64_t)cfg->timeout_ms * 1000000u;
    ret = pool_build(pool, cfg);
    if (ret) {
        if (pool->groups)
            pool_stop(pool); /* joins whatever threads did start; their queues are empty */
        pool_release(pool);
        return ret;
    }
    *out = pool;
    return 0;
}

void rh_pool_free(struct rh_pool *pool)
{
    if (!pool)
        return;
    pool_stop(pool);
    pool_release(pool);
}
