/* The blocking-task pool: crews (the threads serving a set of bulkheads: the shared pool is
 * one crew of N threads over its groups, each lane a crew of one over one bulkhead), the
 * futex parking that lets idle threads sleep without making submitters pay for it, the
 * round-robin take across bulkheads, the task lifecycle (run, expire, cancel, shed, deliver
 * exactly once), rh_task_call_on_owner, and orderly shutdown. */
#include "pool/pool.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <mimalloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pool/internal.h"


/* Set on pool threads only: which crew the thread serves, and the task it is running. */
static _Thread_local struct crew *tls_crew;
static _Thread_local struct rh_task *tls_task;

/* A spin-wait hint: lets a sibling hyperthread run and saves power while spinning. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* This thread's spin: none when it may run on one CPU only, where the producer it waits
 * for cannot run while it spins. Adaptive, as glibc's adaptive mutexes are: a thread
 * spins only while its last sleep was shorter than the spin (work came back that soon, so
 * spinning would have caught it); a long sleep turns spinning off until a short one. A
 * spin that finds nothing costs its whole length in CPU; a park and wake-up costs a few us. */
static _Thread_local uint64_t tls_spin_ns, tls_last_sleep_ns = UINT64_MAX;

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
 * A thread that finds no task it may take announces itself in idle, looks once more, and
 * then sleeps on tokens, a counting semaphore. A producer, after publishing, looks at idle:
 * if it is 0 nobody sleeps and the submit makes no system call; otherwise it claims one
 * idle thread (idle - 1) and grants it a token (+1 and FUTEX_WAKE). Since a claim removes
 * the thread from idle, a burst of submits wakes each parked thread once, not once per task.
 *
 * Every announced thread leaves either by unregistering itself (idle - 1) or by taking a
 * token, never both, so idle + tokens always equals the threads between announcing and
 * leaving; counts never drift and no grant is lost. Threads are interchangeable, so it
 * does not matter which one a given token wakes.
 *
 * A producer whose bulkhead has every slot held wakes nobody: a thread holding a slot
 * looks at the queues again after it gives the slot back (pool_bulkhead_unclaim's fence). */

static void tokens_grant(struct crew *c, uint32_t n)
{
    /* relaxed: tokens carry no data (tasks are published by the queue's own release); the
     * futex compares the word atomically, so a waiter that read 0 before this add either
     * sees the new value in FUTEX_WAIT or is already queued when FUTEX_WAKE runs. */
    atomic_fetch_add_explicit(&c->tokens, n, memory_order_relaxed);
    futex_wake(&c->tokens, n);
}

static void tokens_take(struct crew *c)
{
    uint32_t n = atomic_load_explicit(&c->tokens, memory_order_relaxed);
    for (;;) {
        if (n == 0) {
            futex_wait(&c->tokens, 0);
            n = atomic_load_explicit(&c->tokens, memory_order_relaxed);
        } else if (atomic_compare_exchange_weak_explicit(&c->tokens, &n, n - 1,
                                                         memory_order_relaxed,
                                                         memory_order_relaxed)) {
            return;
        }
    }
}

/* Removes one announced thread from idle if any is left; false: all were claimed. */
static bool idle_take(struct crew *c)
{
    uint32_t n = atomic_load_explicit(&c->idle, memory_order_relaxed);
    while (n > 0)
        if (atomic_compare_exchange_weak_explicit(&c->idle, &n, n - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* Wakes one parked thread, if any (no fence: for callers that hold no fresh publish). */
static void crew_wake_idle(struct crew *c)
{
    if (idle_take(c))
        tokens_grant(c, 1);
}

/* Producer side, after a successful push into b. false: nobody was woken (none parked, or
 * b holds every slot it may). */
static bool crew_wake_one(struct crew *c, struct bulkhead *b)
{
    /* seq_cst fence, one half of a Dekker handshake with crew_park: our publish (the
     * queue's seq store) then our load of idle, against the parker's store to idle then its
     * load of the queue. Without it the store could sit in our store buffer while we read a
     * stale idle == 0, and the parker could read the queue as empty: a lost wake-up. The
     * same fence orders the publish before our load of b's slots (see pool_bulkhead_unclaim). */
    atomic_thread_fence(memory_order_seq_cst);
    if (!pool_bulkhead_has_slot(b) || !idle_take(c))
        return false;
    tokens_grant(c, 1);
    return true;
}

/* After a close, and by each thread that leaves, so none sleeps through the end. */
static void crew_wake_all(struct crew *c)
{
    atomic_thread_fence(memory_order_seq_cst); /* as in crew_wake_one, against the close */
    uint32_t n = atomic_exchange_explicit(&c->idle, 0, memory_order_relaxed);
    if (n)
        tokens_grant(c, n);
}

/* ---- batched wake-ups -------------------------------------------------------------------
 * Both directions of a hop pay a wake-up (a futex for a parked pool thread, an eventfd
 * write for a sleeping ring) and the context switches behind it. Per burst instead of per
 * task: a producer thread that holds its wakes (a ring, between two waits) wakes each crew
 * once at the end of its burst, and a pool thread hands finished tasks back quietly (post)
 * and wakes each owner once when its run of tasks ends. */

enum { HELD_OWNERS = 8, HELD_POSTS = 64, HELD_WAKES = 8 };
/* A delivery is held across the next task only if that task is typically this short. */
#define HOLD_ACROSS_RUN_NS 50000u

/* Pool threads: owners posted to and not yet woken. */
static _Thread_local void *tls_owners[HELD_OWNERS];
static _Thread_local unsigned tls_nowners, tls_nposts;

/* Producer threads: crews owed a wake-up, while holding. */
static _Thread_local bool tls_holding;
static _Thread_local struct held_wake {
    struct crew *crew;
    struct bulkhead *bulkhead;
    unsigned n;
} tls_wakes[HELD_WAKES];
static _Thread_local unsigned tls_nwakes;

static void owners_wake(const struct rh_pool *pool)
{
    for (unsigned i = 0; i < tls_nowners; i++)
        pool->wake(tls_owners[i]);
    tls_nowners = tls_nposts = 0;
}

/* Hands msg to owner: quietly when the pool can (the owner is woken by owners_wake). */
static void owner_hand_back(const struct rh_pool *pool, void *owner, struct rh_msg *msg)
{
    if (!pool->post) {
        pool->deliver(owner, msg);
        return;
    }
    unsigned i = 0;
    while (i < tls_nowners && tls_owners[i] != owner)
        i++;
    if (i == HELD_OWNERS)
        owners_wake(pool), i = 0;
    if (i == tls_nowners)
        tls_owners[tls_nowners++] = owner;
    pool->post(owner, msg);
    if (++tls_nposts >= HELD_POSTS)
        owners_wake(pool); /* a long burst still comes back in steps */
}

void rh_pool_hold_wakes(bool hold)
{
    if (!hold)
        rh_pool_flush_wakes();
    tls_holding = hold;
}

void rh_pool_flush_wakes(void)
{
    for (unsigned i = 0; i < tls_nwakes; i++) {
        struct held_wake *h = &tls_wakes[i];
        while (h->n-- > 0 && crew_wake_one(h->crew, h->bulkhead))
            ;
    }
    tls_nwakes = 0;
}

/* After a push while holding: remember to wake for it. false: no room, wake now. */
static bool wake_hold(struct crew *c, struct bulkhead *b)
{
    for (unsigned i = 0; i < tls_nwakes; i++)
        if (tls_wakes[i].bulkhead == b) {
            tls_wakes[i].n++;
            return true;
        }
    if (tls_nwakes == HELD_WAKES)
        return false;
    tls_wakes[tls_nwakes++] = (struct held_wake){c, b, 1};
    return true;
}

/* ---- taking --------------------------------------------------------------------------- */

/* One pass over the crew's bulkheads, starting at the round-robin cursor: the first task
 * whose bulkhead has a free slot. The slot stays held (in *from) until the task is over.
 * The cursor moves to just past the bulkhead served, so among backlogged bulkheads each
 * gets one task per round however many empty ones sit between them (threads racing on the
 * cursor may serve one twice in a round: fairness is per round, not per task). */
static struct rh_task *crew_scan(struct crew *c, struct bulkhead **from)
{
    unsigned n = c->nbulkheads;
    unsigned start = n > 1 ? atomic_load_explicit(&c->next, memory_order_relaxed) : 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = (start + i) % n;
        struct bulkhead *b = &c->bulkheads[k];
        if (rh_mpmc_size(&b->queue) == 0 || !pool_bulkhead_claim(b))
            continue;
        struct rh_task *t = rh_mpmc_pop(&b->queue);
        if (t) {
            if (n > 1)
                atomic_store_explicit(&c->next, (k + 1) % n, memory_order_relaxed);
            *from = b;
            return t;
        }
        pool_bulkhead_unclaim(b);
    }
    return NULL;
}

/* Closed, and nothing claimed before the close is left: no task can arrive. */
static bool crew_drained(struct crew *c)
{
    for (unsigned i = 0; i < c->nbulkheads; i++)
        if (!rh_mpmc_drained(&c->bulkheads[i].queue))
            return false;
    return true;
}

/* Consumer side: sleeps until granted a wake-up, unless work (or the end) shows up while
 * announcing. Returns a task found on the way, else NULL (the caller looks again). */
static struct rh_task *crew_park(struct crew *c, struct bulkhead **from)
{
    atomic_fetch_add_explicit(&c->idle, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* the other half: see crew_wake_one */
    struct rh_task *t = crew_scan(c, from);
    if (t || crew_drained(c)) {
        if (!idle_take(c))
            tokens_take(c); /* a producer claimed us already: take its grant (at once,
                             * or as soon as it lands) so the counts stay exact */
        return t;
    }
    uint64_t t0 = rh_pool_now_ns();
    tokens_take(c);
    tls_last_sleep_ns = rh_pool_now_ns() - t0;
    return NULL;
}


static uint64_t spin_for_this_thread(const struct rh_pool *pool)
{
    cpu_set_t cpus;
    if (pool->spin_ns && sched_getaffinity(0, sizeof(cpus), &cpus) == 0 &&
        CPU_COUNT(&cpus) < 2)
        return 0;
    return pool->spin_ns;
}

/* A thread that just ran a task is likely to find another soon (the ring is mid-burst):
 * looking for it a little while, without announcing itself idle, spares both the producer's
 * FUTEX_WAKE and this thread's FUTEX_WAIT and the two context switches. */
static struct rh_task *crew_spin(struct crew *c, struct bulkhead **from)
{
    uint64_t spin_ns = tls_spin_ns;
    if (!spin_ns)
        return NULL;
    uint64_t until = rh_pool_now_ns() + spin_ns;
    do {
        for (int i = 0; i < 16; i++)
            cpu_relax();
        struct rh_task *t = crew_scan(c, from);
        if (t || crew_drained(c))
            return t;
    } while (rh_pool_now_ns() < until);
    return NULL;
}

/* The next task for this thread with its bulkhead's slot held, or NULL once the crew is
 * closed and drained. busy: the thread has just run a task. */
static struct rh_task *crew_take(struct crew *c, struct bulkhead **from, bool busy)
{
    for (;;) {
        struct rh_task *t = crew_scan(c, from);
        if (t)
            return t;
        if (tls_nowners)
            owners_wake(c->pool); /* the burst is over: its owners learn of it now */
        if (crew_drained(c))
            return NULL;
        if (busy && tls_last_sleep_ns < tls_spin_ns && (t = crew_spin(c, from)))
            return t;
        busy = false;
        if (crew_drained(c))
            return NULL;
        t = crew_park(c, from);
        if (t)
            return t;
    }
}

/* ---- tasks ---------------------------------------------------------------------------- */

/* Hands t back. From here on t belongs to its owner again: nothing touches it after. */
static void task_deliver(struct crew *c, struct rh_task *t, enum rh_task_state state,
                         _Atomic uint64_t *counter)
{
    /* Counted before delivery, so an owner that has seen its delivery sees the count. */
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    /* release: the work's writes are visible to whoever acquires state. (rh_loop_post
     * orders them too, with its release CAS and the loop's acquire exchange.) */
    void *owner = t->owner; /* read before the hand-back: t is the owner's after it */
    atomic_store_explicit(&t->state, state, memory_order_release);
    owner_hand_back(c->pool, owner, &t->msg);
}

/* Runs (or expires, cancels, sheds) t, taken from b with a slot held; gives the slot back
 * before delivering, so the running count never includes a finished task. */
static void task_run(struct crew *c, struct bulkhead *b, struct rh_task *t)
{
    const struct rh_pool *pool = c->pool;
    uint64_t now = pool->now_ns();
    uint64_t waited = now > t->submitted_ns ? now - t->submitted_ns : 0;
    bool shed = pool_bulkhead_should_shed(b, &pool->shed, waited, now,
                                     rh_mpmc_size(&b->queue) == 0);
    enum rh_task_state state = RH_TASK_DONE;
    _Atomic uint64_t *counter = &b->completed;
    /* The check here is the point where a task "starts": a cancel after it is seen only
     * through rh_task_check. acquire pairs with rh_task_cancel's release. */
    if (atomic_load_explicit(&t->cancel_requested, memory_order_acquire)) {
        state = RH_TASK_CANCELLED, counter = &b->cancelled;
    } else if (t->expires_ns && now > t->expires_ns) {
        state = RH_TASK_EXPIRED, counter = &b->expired;
    } else if (shed) {
        state = RH_TASK_SHED, counter = &b->shed;
    } else {
        /* Held deliveries wait for this task only if it is typically short. */
        if (tls_nowners && pool_bulkhead_run_avg(b) > HOLD_ACROSS_RUN_NS)
            owners_wake(pool);
        atomic_store_explicit(&t->state, RH_TASK_RUNNING, memory_order_relaxed);
        tls_task = t;
        uint64_t t0 = rh_pool_now_ns();
        t->work(t);
        pool_bulkhead_ran(b, rh_pool_now_ns() - t0);
        tls_task = NULL;
    }
    pool_bulkhead_unclaim(b);
    task_deliver(c, t, state, counter);
}

static void *crew_thread(void *arg)
{
    struct crew *c = arg;
    tls_crew = c;
    tls_spin_ns = spin_for_this_thread(c->pool);
    struct bulkhead *b = NULL, *last = NULL;
    bool busy = false;
    for (struct rh_task *t; (t = crew_take(c, &b, busy)); busy = true, last = b) {
        /* We left last with a free slot and queued work to serve another bulkhead: a
         * parked sibling may take it now rather than after this task. */
        if (last && last != b && rh_mpmc_size(&last->queue))
            crew_wake_idle(c);
        task_run(c, b, t);
    }
    if (tls_nowners)
        owners_wake(c->pool);
    /* Siblings may have parked while the last claimed positions were still being
     * published; only one of them was woken for that item. Wake the rest to see the end. */
    crew_wake_all(c);
    return NULL;
}

/* Fills in what the pool owns in t before it is published by the push. */
static void task_prepare(const struct rh_pool *pool, struct rh_task *t)
{
    t->submitted_ns = pool->now_ns();
    t->expires_ns = t->deadline_ns;
    if (!t->expires_ns && pool->timeout_ns)
        t->expires_ns = t->submitted_ns + pool->timeout_ns;
    t->stop_reason = 0;
    atomic_store_explicit(&t->state, RH_TASK_QUEUED, memory_order_relaxed);
    atomic_store_explicit(&t->cancel_requested, false, memory_order_relaxed);
}

static int crew_submit(const struct rh_pool *pool, struct crew *c, unsigned bh,
                       struct rh_task *t)
{
    if (!t || !t->work)
        return -EINVAL;
    if (bh >= c->nbulkheads)
        return -ENOENT;
    struct bulkhead *b = &c->bulkheads[bh];
    task_prepare(pool, t);
    int ret = rh_mpmc_push(&b->queue, t);
    if (ret == 0 && !(tls_holding && wake_hold(c, b)))
        crew_wake_one(c, b);
    else if (ret == -EAGAIN)
        atomic_fetch_add_explicit(&b->rejected, 1, memory_order_relaxed);
    return ret;
}

int rh_pool_submit(struct rh_pool *pool, struct rh_task *t)
{
    return crew_submit(pool, &pool->crews[0], t ? t->group : 0, t);
}

int rh_pool_submit_lane(struct rh_pool *pool, int lane, struct rh_task *t)
{
    if (lane < 0 || (unsigned)lane >= pool->nlanes)
        return -ENOENT;
    return crew_submit(pool, &pool->crews[1 + lane], 0, t);
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
    struct crew *c = tls_crew;
    assert(c && "rh_task_call_on_owner is for work functions");
    if (!c)
        return;
    if (tls_nowners)
        owners_wake(c->pool); /* what this thread handed back goes ahead of the call */
    struct owner_call call = {.msg = {.fn = owner_call_run}, .fn = fn, .arg = arg};
    c->pool->deliver(t->owner, &call.msg);
    while (atomic_load_explicit(&call.done, memory_order_acquire) == 0)
        futex_wait(&call.done, 0);
}

/* ---- creation and shutdown ------------------------------------------------------------ */

static bool name_bad(const char *name) { return !name || !*name; }

static int config_check(const struct rh_pool_config *cfg)
{
    if (!cfg || !cfg->deliver || (cfg->nlanes && !cfg->lanes) ||
        (cfg->ngroups && !cfg->groups) || cfg->group_share_pct > 100)
        return -EINVAL;
    for (unsigned i = 0; i < cfg->nlanes; i++) {
        const char *name = cfg->lanes[i].name;
        if (name_bad(name))
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(cfg->lanes[j].name, name) == 0)
                return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->ngroups; i++) {
        const char *name = cfg->groups[i].name;
        if (name_bad(name) || strcmp(name, "default") == 0)
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(cfg->groups[j].name, name) == 0)
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

/* pct of n, rounded up, at least 1. */
static unsigned share_of(unsigned n, unsigned pct)
{
    unsigned v = (unsigned)(((uint64_t)n * pct + 99) / 100);
    return v ? v : 1;
}

/* Allocates the crew's bulkheads and thread handles (owned by the crew until crew_release)
 * and copies its name. */
static int crew_init(struct crew *c, struct rh_pool *pool, const char *name, unsigned nthreads,
                     unsigned nbulkheads)
{
    c->pool = pool;
    c->nthreads = nthreads;
    c->bulkheads = mi_zalloc_aligned(nbulkheads * sizeof(*c->bulkheads), RH_CACHELINE);
    c->threads = mi_calloc(nthreads, sizeof(*c->threads));
    c->name = name ? mi_strdup(name) : NULL;
    if (!c->bulkheads || !c->threads || (name && !c->name))
        return -ENOMEM;
    c->nbulkheads = nbulkheads;
    return 0;
}

static void crew_release(struct crew *c)
{
    for (unsigned i = 0; c->bulkheads && i < c->nbulkheads; i++)
        pool_bulkhead_release(&c->bulkheads[i]);
    mi_free(c->bulkheads);
    mi_free(c->threads);
    mi_free(c->name);
}

/* The shared crew: "default" plus the configured groups, each capped at its share. */
static int shared_init(struct rh_pool *pool, const struct rh_pool_config *cfg)
{
    struct crew *c = &pool->crews[0];
    unsigned threads = cfg->threads ? cfg->threads : default_threads();
    unsigned pct = cfg->group_share_pct ? cfg->group_share_pct : 100;
    unsigned cap = cfg->queue_cap ? cfg->queue_cap : DEFAULT_QUEUE_CAP;
    int ret = crew_init(c, pool, NULL, threads, 1 + cfg->ngroups);
    for (unsigned i = 0; ret == 0 && i <= cfg->ngroups; i++) {
        const struct rh_pool_group_config *g = i ? &cfg->groups[i - 1] : NULL;
        unsigned max = g && g->max_threads ? g->max_threads : share_of(threads, pct);
        unsigned qcap = g && g->queue_cap ? g->queue_cap : share_of(cap, pct);
        ret = pool_bulkhead_init(&c->bulkheads[i], g ? g->name : "default", qcap,
                            max < threads ? max : threads);
    }
    return ret;
}

/* Thread names show up in top, perf and gdb: "rh-pool-3", "rh-lane-<name>" (15 chars). */
static void thread_name(const struct crew *c, unsigned i, char out[16])
{
    if (c->name)
        snprintf(out, 16, "rh-lane-%s", c->name);
    else
        snprintf(out, 16, "rh-pool-%u", i);
}

/* Pool threads start with every signal blocked: SIGINT/SIGTERM belong to the main thread,
 * and a blocking task interrupted by a handler would see EINTR it never asked for. */
static int crew_start(struct crew *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int ret = 0;
    while (c->nstarted < c->nthreads) {
        ret = -pthread_create(&c->threads[c->nstarted], NULL, crew_thread, c);
        if (ret)
            break;
        char name[16];
        thread_name(c, c->nstarted, name);
        pthread_setname_np(c->threads[c->nstarted], name);
        c->nstarted++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

/* Closes every queue first, so the whole pool refuses new work at once, then lets each
 * crew drain and joins it. */
static void pool_stop(struct rh_pool *pool)
{
    unsigned ncrews = 1 + pool->nlanes;
    for (unsigned i = 0; i < ncrews; i++)
        for (unsigned j = 0; j < pool->crews[i].nbulkheads; j++)
            if (pool->crews[i].bulkheads[j].queue.cells)
                rh_mpmc_close(&pool->crews[i].bulkheads[j].queue);
    for (unsigned i = 0; i < ncrews; i++) {
        struct crew *c = &pool->crews[i];
        crew_wake_all(c);
        for (unsigned j = 0; j < c->nstarted; j++)
            pthread_join(c->threads[j], NULL);
    }
}

static void pool_release(struct rh_pool *pool)
{
    for (unsigned i = 0; pool->crews && i < 1 + pool->nlanes; i++)
        crew_release(&pool->crews[i]);
    mi_free(pool->crews);
    mi_free(pool);
}

static int pool_build(struct rh_pool *pool, const struct rh_pool_config *cfg)
{
    pool->crews = mi_zalloc_aligned((1 + (size_t)cfg->nlanes) * sizeof(struct crew),
                                    RH_CACHELINE);
    if (!pool->crews)
        return -ENOMEM;
    pool->nlanes = cfg->nlanes;
    int ret = shared_init(pool, cfg);
    for (unsigned i = 0; ret == 0 && i < cfg->nlanes; i++) {
        struct crew *c = &pool->crews[1 + i];
        const struct rh_lane_config *l = &cfg->lanes[i];
        ret = crew_init(c, pool, l->name, 1, 1);
        ret = ret ? ret
                  : pool_bulkhead_init(&c->bulkheads[0], l->name,
                                  l->queue_cap ? l->queue_cap : DEFAULT_QUEUE_CAP, 1);
    }
    return ret;
}

/* Everything but the threads (unit tests drive a pool built this way by hand). */
static int pool_layout(struct rh_pool *pool, const struct rh_pool_config *cfg)
{
    pool->deliver = cfg->deliver;
    if (cfg->post && cfg->wake) {
        pool->post = cfg->post;
        pool->wake = cfg->wake;
    }
    pool->now_ns = cfg->now_ns ? cfg->now_ns : rh_pool_now_ns;
    pool->timeout_ns = (uint64_t)cfg->timeout_ms * 1000000u;
    pool->spin_ns = (uint64_t)cfg->spin_us * 1000u;
    pool->shed.target_ns = (uint64_t)cfg->shed_target_ms * 1000000u;
    pool->shed.interval_ns = (uint64_t)(cfg->shed_interval_ms ? cfg->shed_interval_ms
                                                              : DEFAULT_SHED_INTERVAL_MS) *
                             1000000u;
    return pool_build(pool, cfg);
}

int rh_pool_new(const struct rh_pool_config *cfg, struct rh_pool **out)
{
    int ret = config_check(cfg);
    if (ret)
        return ret;
    struct rh_pool *pool = mi_zalloc(sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    ret = pool_layout(pool, cfg);
    for (unsigned i = 0; ret == 0 && i < 1 + cfg->nlanes; i++)
        ret = crew_start(&pool->crews[i]);
    if (ret) {
        if (pool->crews)
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
