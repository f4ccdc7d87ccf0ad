/* pool/bulkhead.h (internal to pool/): one group's share of a set of pool threads.
 *
 * A bulkhead is a bounded queue plus a cap on how many of the serving threads may hold its
 * tasks at once (slots), plus the CoDel-like state that sheds its work when its queueing
 * delay has stayed above a target for an interval. The shared pool serves several
 * bulkheads (one per route group) round-robin; a lane is one bulkhead served by its one
 * thread. Nothing here parks or wakes threads: pool.c does that.
 *
 * Producers (ring threads) only push; consumers (pool threads) claim a slot, pop, and
 * release the slot when the task is over. Every field is an atomic or written once at
 * creation, so the counters can be read from any thread. */
#ifndef RH_POOL_BULKHEAD_H
#define RH_POOL_BULKHEAD_H

#include <stdbool.h>
#include <stdint.h>

#include "pool/mpmc.h"

struct bulkhead {
    struct rh_mpmc queue;
    char *name; /* owned */
    uint32_t max_running; /* slots; at least 1 */

    /* Consumers' line: slots and the delay state. */
    alignas(RH_CACHELINE) _Atomic uint32_t running; /* slots held (claimed or running) */
    _Atomic uint64_t above_until; /* 0: last wait under target; else when shedding may start */
    atomic_bool shedding;         /* waits stayed above target for an interval (a gauge) */
    _Atomic uint64_t run_avg_ns;  /* moving average of a task's run time (1/8 per task) */

    /* Totals, written as tasks end; rejected by producers on a full queue. */
    alignas(RH_CACHELINE) _Atomic uint64_t completed, rejected, expired, cancelled, shed;
    _Atomic uint64_t dequeued, wait_ns; /* tasks taken off the queue and their summed waits */
};

/* When to shed: a task that waited at least target_ns is shed once waits have stayed at or
 * above target_ns for interval_ns. target_ns 0: never. */
struct shed_policy {
    uint64_t target_ns, interval_ns;
};

/* 0 or -ENOMEM. cap < 2 is taken as 2 (the sequence scheme needs two cells). */
int pool_bulkhead_init(struct bulkhead *b, const char *name, unsigned cap, unsigned max_running);
void pool_bulkhead_release(struct bulkhead *b);

/* Takes a slot if fewer than max_running are held. */
bool pool_bulkhead_claim(struct bulkhead *b);
/* Gives a slot back; a full fence follows, so the caller's next look at the queues is
 * ordered after it (pairs with the producer's fence in pool.c: see group_wake_one). */
void pool_bulkhead_unclaim(struct bulkhead *b);
/* Producers: could a thread take a task from b now? (a slot is free) */
bool pool_bulkhead_has_slot(const struct bulkhead *b);

/* A task of b ran for ns. */
void pool_bulkhead_ran(struct bulkhead *b, uint64_t ns);
/* Typical run time: until measured, taken as long (BULKHEAD_RUN_UNKNOWN_NS). */
static inline uint64_t pool_bulkhead_run_avg(const struct bulkhead *b)
{
    return atomic_load_explicit(&b->run_avg_ns, memory_order_relaxed);
}
#define BULKHEAD_RUN_UNKNOWN_NS (1000000u)

/* Records the wait of a task just taken off b at now_ns and says whether to shed it.
 * now_empty: the pop left the queue empty, which ends an overload (as CoDel does). */
bool pool_bulkhead_should_shed(struct bulkhead *b, const struct shed_policy *p, uint64_t waited_ns,
                          uint64_t now_ns, bool now_empty);

#endif
