/* pool/mpmc.h (internal to pool/): the bounded multi-producer multi-consumer queue under the
 * shared pool and under every lane. Dmitry Vyukov's sequence-number ring: each cell carries
 * a sequence number that says whose turn it is (a producer's for lap n, or the consumer's),
 * so producers and consumers each claim a position with one CAS and never take a lock.
 *
 * Why not a mutex: the producers are io_uring loop threads. A mutex the consumer holds can
 * be held by a pool thread that was preempted, and the loop would then stall every
 * connection it serves behind one blocking task. Here a producer only ever waits for a CAS.
 *
 * The bound is exact (cells = cap, any value, index = pos % cap), not rounded to a power of
 * two: the operator configured that number. Positions are 63-bit and never wrap in practice;
 * the top bit of tail is the closed flag, so closing and claiming are ordered by the one
 * atomic producers already CAS, with no extra atomic on the submit path.
 *
 * Not strictly lock-free: a producer preempted between its claim and its publish hides the
 * items behind it from consumers until it runs again (consumers see "empty"). The producer
 * wakes a consumer after publishing, so nothing is lost, only delayed. */
#ifndef RH_POOL_MPMC_H
#define RH_POOL_MPMC_H

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RH_CACHELINE 64
#define RH_MPMC_CLOSED (UINT64_C(1) << 63)

struct rh_mpmc_cell {
    /* pos: free for the producer of position pos; pos + 1: holds that position's item;
     * pos + cap: emptied, free for the producer one lap later. */
    _Atomic uint64_t seq;
    void *item;
};

/* The three groups live on their own cache lines: producers write tail, consumers write
 * head, and both only read cells/cap, so neither side's CAS bounces the other's line. */
struct rh_mpmc {
    alignas(RH_CACHELINE) struct rh_mpmc_cell *cells; /* cap of them, owned by the creator */
    uint64_t cap;
    alignas(RH_CACHELINE) _Atomic uint64_t tail; /* next position to fill | RH_MPMC_CLOSED */
    alignas(RH_CACHELINE) _Atomic uint64_t head; /* next position to take */
};

static inline void rh_mpmc_init(struct rh_mpmc *q, struct rh_mpmc_cell *cells, uint64_t cap)
{
    q->cells = cells;
    q->cap = cap;
    for (uint64_t i = 0; i < cap; i++)
        atomic_init(&cells[i].seq, i);
    atomic_init(&q->tail, 0);
    atomic_init(&q->head, 0);
}

/* 0, -EAGAIN when full, -ESHUTDOWN once closed. Never blocks. */
static inline int rh_mpmc_push(struct rh_mpmc *q, void *item)
{
    uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    for (;;) {
        if (pos & RH_MPMC_CLOSED)
            return -ESHUTDOWN;
        struct rh_mpmc_cell *c = &q->cells[pos % q->cap];
        /* acquire: pairs with the release in rh_mpmc_pop, so the consumer that emptied this
         * cell a lap ago has finished reading its item before we overwrite it. */
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - pos);
        if (diff == 0) {
            /* relaxed: the claim only has to be atomic; the item is published by the seq
             * store below. A concurrent close changes tail, so this CAS then fails and the
             * retry sees the closed bit: no item is claimed after close. */
            if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                c->item = item;
                /* release: the item, and everything the producer wrote into it before the
                 * push, is visible to the consumer that acquires this seq. */
                atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
                return 0;
            }
        } else if (diff < 0) {
            return -EAGAIN; /* the cell still holds the item from one lap ago: full */
        } else {
            pos = atomic_load_explicit(&q->tail, memory_order_relaxed); /* lost a race */
        }
    }
}

/* The oldest item, or NULL if none is published at the head. Never blocks. */
static inline void *rh_mpmc_pop(struct rh_mpmc *q)
{
    uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    for (;;) {
        struct rh_mpmc_cell *c = &q->cells[pos % q->cap];
        /* acquire: pairs with the producer's release, so its item is visible. */
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - (pos + 1));
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                void *item = c->item;
                /* release: our read of item is done before a producer may reuse the cell. */
                atomic_store_explicit(&c->seq, pos + q->cap, memory_order_release);
                return item;
            }
        } else if (diff < 0) {
            return NULL; /* empty, or the producer of this position has not published yet */
        } else {
            pos = atomic_load_explicit(&q->head, memory_order_relaxed); /* lost a race */
        }
    }
}

/* Refuses further pushes; pushes that claimed a position before this still publish it.
 * seq_cst: the close is ordered before the caller's wake-up of parked consumers (see
 * crew_wake_all in pool.c), so a consumer either sees it or is woken. */
static inline void rh_mpmc_close(struct rh_mpmc *q)
{
    atomic_fetch_or_explicit(&q->tail, RH_MPMC_CLOSED, memory_order_seq_cst);
}

/* Closed, and every position claimed before the close has been taken: nothing can arrive. */
static inline bool rh_mpmc_drained(struct rh_mpmc *q)
{
    uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (!(tail & RH_MPMC_CLOSED))
        return false;
    return atomic_load_explicit(&q->head, memory_order_acquire) == (tail & ~RH_MPMC_CLOSED);
}

/* Items claimed and not yet taken (for stats). head never passes tail, so reading head
 * first (acquire keeps the tail load after it) keeps the difference from going negative. */
static inline uint64_t rh_mpmc_size(struct rh_mpmc *q)
{
    uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire) & ~RH_MPMC_CLOSED;
    return tail > head ? tail - head : 0;
}

#endif
