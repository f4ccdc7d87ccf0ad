/* uring/: one io_uring per thread and everything that hangs off it.
 *
 * Owns: the ring (created on its own thread, SINGLE_ISSUER + DEFER_TASKRUN with a fallback),
 * the provided-buffer ring that multishot recv fills, the timer wheel (one timeout op per
 * ring drives every connection's timer), and the mailbox through which other threads hand
 * work to this ring (an MPSC list plus an eventfd read kept armed on the ring).
 *
 * Knows nothing about HTTP: completions are dispatched by the op type in user_data to the
 * handler the layer above registered with rh_loop_on().
 *
 * Thread rules: every function here runs on the loop's own thread, except rh_loop_post(),
 * its halves rh_loop_post_quiet() and rh_loop_wake(), and rh_loop_request_stop(), which are
 * safe from any thread (and from a signal handler for
 * rh_loop_request_stop). */
#ifndef RH_URING_LOOP_H
#define RH_URING_LOOP_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "uring/timer.h"

/* Op types carried in the top byte of user_data. */
enum rh_op {
    RH_OP_IGNORE = 0, /* completions nobody waits for (cancel, close results) */
    RH_OP_ACCEPT,
    RH_OP_RECV,
    RH_OP_SEND,
    RH_OP_TIMER,
    RH_OP_WAKE,
    RH_OP_FILE, /* static files: openat2/statx/splice/read, decoded by server/ */
    RH_OP_LOG,  /* access log writes */
    RH_OP_MAX = 16,
};

/* user_data = op:8 | gen:24 | idx:32. The generation lets a stale completion for a reused
 * connection slot be recognised and ignored. */
static inline uint64_t rh_ud_make(enum rh_op op, uint32_t idx, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xffffff) << 32) | idx;
}
static inline enum rh_op rh_ud_op(uint64_t ud) { return (enum rh_op)(ud >> 56); }
static inline uint32_t rh_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffff; }
static inline uint32_t rh_ud_idx(uint64_t ud) { return (uint32_t)ud; }

struct rh_loop;
typedef void (*rh_cqe_fn)(struct rh_loop *loop, const struct io_uring_cqe *cqe);

/* A message for a loop from another thread. The sender owns the memory until fn runs on
 * the loop's thread; from then on fn decides (it usually hands it back or frees it). */
struct rh_msg {
    struct rh_msg *next;
    void (*fn)(struct rh_loop *loop, struct rh_msg *msg);
};

struct rh_loop_config {
    unsigned sq_entries;   /* power of two */
    unsigned cq_entries;   /* 0: 4x sq_entries; else rounded up to a power of two (clamped) */
    unsigned buf_count;    /* provided buffers, power of two, <= 32768 */
    unsigned buf_size;     /* bytes each */
    unsigned iowq_workers; /* cap on the kernel's io-wq workers per ring (0: leave) */
    unsigned batch_wait_us; /* wait up to this long for more completions per wake-up (0: off) */
};

struct rh_bufring {
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned count, size, mask;
    unsigned pending; /* recycled since the last advance */
};

/* Ring faults, counted by the loop's thread (relaxed stores), read by whoever renders
 * /metrics. */
struct rh_loop_faults {
    _Atomic uint64_t cq_overflow; /* times the CQ was found overflowed (flushed, nothing lost) */
    _Atomic uint64_t cqe_dropped; /* completions the kernel could not keep (-EBADR) */
    _Atomic uint64_t sq_full;     /* SQ full mid-iteration: submitted early */
};

/* Completions taken off the CQ while the SQ was full and could not be submitted (the CQ
 * was full too): dispatched at the next reap, in order, before the CQ's. */
struct rh_cqe_backlog {
    struct io_uring_cqe *cqes;
    unsigned len, cap;
};

struct rh_loop {
    struct io_uring ring;
    struct rh_loop_faults faults;
    struct rh_cqe_backlog backlog;
    bool defer_taskrun; /* false: set up with the COOP_TASKRUN fallback */
    rh_cqe_fn handlers[RH_OP_MAX];
    void *owner; /* the layer above's per-thread state */
    /* Runs at the start of every iteration, before buffers are published and SQEs submitted:
     * where the layer above batches its sends (one send per connection per iteration). */
    void (*before_submit)(struct rh_loop *loop);

    struct rh_bufring bufs;

    struct rh_wheel wheel;
    bool timer_armed;
    uint64_t now_ms; /* CLOCK_MONOTONIC_COARSE, refreshed once per iteration */

    int wake_fd;
    uint64_t wake_val;
    _Atomic(struct rh_msg *) inbox; /* LIFO pushed by other threads, reversed on drain */
    /* Set while the loop is (about to be) blocked in the kernel: the first poster to see it
     * clears it and writes the eventfd; posts to an awake loop make no system call, since
     * the loop looks at the inbox after each batch and before it blocks again. */
    atomic_bool parked;
    atomic_bool stop_requested;
    bool finishing; /* set by the owner for the final drain: the wake read is not re-armed */

    unsigned batch_wait_us; /* 0 unless asked for and the kernel has IORING_FEAT_MIN_TIMEOUT */
    unsigned inflight;     /* ops whose final completion has not arrived */
};

/* Creates the ring on the calling thread (which becomes its only submitter). -errno. */
int rh_loop_init(struct rh_loop *loop, const struct rh_loop_config *cfg, void *owner);
/* Tears the ring down; call only once inflight is 0 (rh_loop_drain() gets it there). The
 * mailbox stays valid, so late posts from other threads are harmless until
 * rh_loop_release(), which its owner calls once no thread can post any more. */
void rh_loop_fini(struct rh_loop *loop);
void rh_loop_release(struct rh_loop *loop);
/* Runs what is in the inbox now (the loop's own thread, or its owner after the loop ended). */
void rh_loop_drain_inbox(struct rh_loop *loop);

void rh_loop_on(struct rh_loop *loop, enum rh_op op, rh_cqe_fn fn);

/* A fresh SQE; submits what is queued when the SQ is full (and, if the kernel refuses that
 * because the CQ is full, moves completions aside to make room), so it never returns NULL. The
 * caller must fill it before the next call, and count it in inflight when it expects the
 * op's final completion to be seen by a handler. */
struct io_uring_sqe *rh_loop_sqe(struct rh_loop *loop);

/* One iteration: submit everything queued, wait for at least one completion (or the
 * timer), dispatch all completions, advance the timer wheel. Returns -errno on a ring
 * failure, 0 otherwise. */
int rh_loop_run_once(struct rh_loop *loop);

/* Called by handlers on a completion that ends an op (no IORING_CQE_F_MORE). */
static inline void rh_loop_op_done(struct rh_loop *loop) { loop->inflight--; }

/* Runs iterations until inflight reaches 0 or timeout_ms passes. */
void rh_loop_drain(struct rh_loop *loop, unsigned timeout_ms);

/* Provided buffers. */
static inline char *rh_loop_buf(struct rh_loop *loop, unsigned bid)
{
    return loop->bufs.bufs + (size_t)bid * loop->bufs.size;
}
void rh_loop_buf_recycle(struct rh_loop *loop, unsigned bid);
enum { RH_BUF_GROUP = 0 };

/* Timers: see uring/timer.h; the loop arms its one timeout op when the wheel is non-empty. */
static inline void rh_loop_timer_arm(struct rh_loop *loop, struct rh_timer *t, uint64_t delay_ms)
{
    rh_timer_arm(&loop->wheel, t, loop->now_ms + delay_ms);
}

/* Cross-thread: queue msg for the loop and, if the loop is blocked, wake it: one eventfd
 * write per sleep of the loop, none while it is awake. Safe from any thread. */
void rh_loop_post(struct rh_loop *loop, struct rh_msg *msg);
/* The two halves of rh_loop_post, for a thread that posts a burst: queue without waking,
 * then wake once. Every quiet post must be followed by a wake, or the loop may sleep on it. */
void rh_loop_post_quiet(struct rh_loop *loop, struct rh_msg *msg);
void rh_loop_wake(struct rh_loop *loop);
/* Asks the loop's owner to stop (sets a flag and wakes the loop). Async-signal-safe. */
void rh_loop_request_stop(struct rh_loop *loop);
static inline bool rh_loop_stop_requested(struct rh_loop *loop)
{
    return atomic_load_explicit(&loop->stop_requested, memory_order_acquire);
}

#endif
