/* pool/internal.h (internal to pool/): the pool's and its crews' layout, shared by pool.c
 * (threads, taking, running, lifecycle) and info.c (names and figures). */
#ifndef RH_POOL_INTERNAL_H
#define RH_POOL_INTERNAL_H

#include <pthread.h>

#include "pool/bulkhead.h"
#include "pool/mpmc.h"
#include "pool/pool.h"

enum { DEFAULT_QUEUE_CAP = 1024, MIN_DEFAULT_THREADS = 4, DEFAULT_SHED_INTERVAL_MS = 100 };

/* Threads and the bulkheads they serve. */
struct crew {
    /* Parking (see crew_park). Its own line: producers read idle on every submit, and
     * only parking threads and the producers that wake them write these. */
    alignas(RH_CACHELINE) _Atomic uint32_t idle; /* announced parked, not yet claimed */
    _Atomic uint32_t tokens;                      /* futex word: wake-ups granted, not taken */

    /* Consumers only: the round-robin cursor, the bulkhead to look at first. */
    alignas(RH_CACHELINE) _Atomic uint32_t next;

    alignas(RH_CACHELINE) struct rh_pool *pool;
    struct bulkhead *bulkheads; /* owned; one for a lane */
    unsigned nbulkheads;
    char *name; /* lanes only, owned; NULL for the shared crew */
    pthread_t *threads;
    unsigned nthreads, nstarted;
};

/* crews[0] is the shared pool, crews[1 + i] is lane i. Everything here is written only
 * by rh_pool_new and rh_pool_free; pool threads and submitters read it. */
struct rh_pool {
    void (*deliver)(void *owner, struct rh_msg *msg);
    void (*post)(void *owner, struct rh_msg *msg); /* with wake, or both NULL */
    void (*wake)(void *owner);
    uint64_t (*now_ns)(void);
    uint64_t timeout_ns, spin_ns;
    struct shed_policy shed;
    unsigned nlanes;
    struct crew *crews;
};

#endif
