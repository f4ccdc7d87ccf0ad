/* Bulkheads: a group's queue, its cap on threads, and the delay-based shedding (in the spirit
 * of CoDel: the standing delay, not a momentary burst, decides). */
#include "pool/bulkhead.h"

#include <errno.h>
#include <mimalloc.h>
#include <stddef.h>

int pool_bulkhead_init(struct bulkhead *b, const char *name, unsigned cap, unsigned max_running)
{
    if (cap < 2)
        cap = 2; /* with one cell a full cell's sequence equals the next producer's position */
    b->max_running = max_running ? max_running : 1;
    atomic_init(&b->run_avg_ns, BULKHEAD_RUN_UNKNOWN_NS);
    struct rh_mpmc_cell *cells = mi_calloc(cap, sizeof(*cells));
    b->name = mi_strdup(name ? name : "");
    rh_mpmc_init(&b->queue, cells, cells ? cap : 0);
    return cells && b->name ? 0 : -ENOMEM;
}

void pool_bulkhead_release(struct bulkhead *b)
{
    mi_free(b->queue.cells);
    mi_free(b->name);
}

bool pool_bulkhead_claim(struct bulkhead *b)
{
    uint32_t n = atomic_load_explicit(&b->running, memory_order_relaxed);
    while (n < b->max_running)
        if (atomic_compare_exchange_weak_explicit(&b->running, &n, n + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

void pool_bulkhead_unclaim(struct bulkhead *b)
{
    atomic_fetch_sub_explicit(&b->running, 1, memory_order_relaxed);
    /* A producer that saw every slot held did not wake anyone for its task: this thread is
     * the one to find it. Store (the release) then load (the caller's scan), against the
     * producer's push then load of running: one fence on each side. */
    atomic_thread_fence(memory_order_seq_cst);
}

/* Racy read-modify-write on purpose (threads of one bulkhead may overwrite each other's
 * update): an estimate, not a count. */
void pool_bulkhead_ran(struct bulkhead *b, uint64_t ns)
{
    uint64_t avg = atomic_load_explicit(&b->run_avg_ns, memory_order_relaxed);
    atomic_store_explicit(&b->run_avg_ns, avg - avg / 8 + ns / 8, memory_order_relaxed);
}

bool pool_bulkhead_has_slot(const struct bulkhead *b)
{
    return atomic_load_explicit(&b->running, memory_order_relaxed) < b->max_running;
}

/* Consumers race on above_until: each writes what its own observation implies, and the
 * worst a lost race does is shift the start of shedding by one task. The state is advisory;
 * the queue bound is the hard limit. */
bool pool_bulkhead_should_shed(struct bulkhead *b, const struct shed_policy *p, uint64_t waited_ns,
                          uint64_t now_ns, bool now_empty)
{
    atomic_fetch_add_explicit(&b->dequeued, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->wait_ns, waited_ns, memory_order_relaxed);
    if (!p->target_ns)
        return false;
    if (waited_ns < p->target_ns) {
        atomic_store_explicit(&b->above_until, 0, memory_order_relaxed);
        atomic_store_explicit(&b->shedding, false, memory_order_relaxed);
        return false;
    }
    uint64_t until = atomic_load_explicit(&b->above_until, memory_order_relaxed);
    bool shed = false;
    if (until == 0)
        atomic_store_explicit(&b->above_until, now_ns + p->interval_ns, memory_order_relaxed);
    else if (now_ns >= until)
        shed = true;
    if (now_empty) /* the backlog is gone: the next wait above target starts a new interval */
        atomic_store_explicit(&b->above_until, 0, memory_order_relaxed);
    atomic_store_explicit(&b->shedding, shed && !now_empty, memory_order_relaxed);
    return shed;
}
