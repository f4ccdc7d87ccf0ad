/* The per-thread ring: setup with feature fallback, the submit/wait/dispatch iteration,
 * the provided-buffer ring, the one timeout op that drives the timer wheel, and the
 * eventfd-backed mailbox other threads post to. */
#include "uring/loop.h"

#include <errno.h>
#include <mimalloc.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
/* Kernel 6.12+: io_uring_getevents_arg's pad field is min_wait_usec (liburing 2.3 predates
 * it): wait for wait_nr completions, but return once min_wait has passed with at least one. */
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
#define RH_BATCH_WAIT_NR 32u

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* vDSO: no system call */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* SINGLE_ISSUER: only this thread submits, which lets the kernel skip locking.
 * DEFER_TASKRUN: completion work runs when we enter the kernel to wait, in a batch, instead
 * of interrupting us mid-iteration. SUBMIT_ALL: a bad SQE does not strand the ones after it.
 * CLAMP: a CQ larger than the kernel's maximum is clamped to it rather than refused.
 * Kernels that refuse the pair get COOP_TASKRUN, which still avoids IPIs. */
static int setup_ring_cq(struct rh_loop *loop, unsigned entries, unsigned cq_entries)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = cq_entries;
    int ret = io_uring_queue_init_params(entries, &loop->ring, &p);
    if (ret == 0) {
        loop->defer_taskrun = true;
        return 0;
    }
    if (ret != -EINVAL)
        return ret;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = cq_entries;
    loop->defer_taskrun = false;
    return io_uring_queue_init_params(entries, &loop->ring, &p);
}

/* The CQ is sized by the layer above for its worst case (a multishot recv per connection
 * and more); if that much ring memory is refused (ENOMEM: memlock or contiguous pages),
 * halve it down to 4x the SQ, say so once, and rely on overflow handling beyond. */
static int setup_ring(struct rh_loop *loop, unsigned entries, unsigned cq_entries)
{
    unsigned floor = entries * 4, cq = floor;
    while (cq < cq_entries && cq < (1u << 20))
        cq <<= 1;
    int ret = setup_ring_cq(loop, entries, cq);
    while (ret == -ENOMEM && cq > floor) {
        cq >>= 1;
        ret = setup_ring_cq(loop, entries, cq);
        if (ret == 0)
            fprintf(stderr, "ringhttp: a completion queue of %u entries was refused (ENOMEM); "
                            "using %u (overflow is handled, but slower)\n", cq_entries, cq);
    }
    return ret;
}

/* liburing 2.3 has no io_uring_setup_buf_ring(): map the ring and the buffers ourselves. */
static int setup_bufring(struct rh_loop *loop, unsigned count, unsigned size)
{
    struct rh_bufring *b = &loop->bufs;
    size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    b->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->br == MAP_FAILED)
        return -errno;
    b->bufs = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->bufs == MAP_FAILED) {
        munmap(b->br, ring_bytes);
        return -errno;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)b->br, .ring_entries = count, .bgid = RH_BUF_GROUP};
    int ret = io_uring_register_buf_ring(&loop->ring, &reg, 0);
    if (ret < 0) {
        munmap(b->bufs, (size_t)count * size);
        munmap(b->br, ring_bytes);
        return ret;
    }
    io_uring_buf_ring_init(b->br);
    b->count = count;
    b->size = size;
    b->mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, rh_loop_buf(loop, i), size, i, b->mask, i);
    io_uring_buf_ring_advance(b->br, count);
    return 0;
}

/* liburing 2.3 keeps its SQ flush private; this is the same publication of the tail. */
static unsigned flush_sq(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail); /* the SQEs before the new tail */
    }
    return tail - *sq->khead;
}

/* One system call: submit, then wait for up to RH_BATCH_WAIT_NR completions but no longer
 * than batch_wait_us once one is there. Under load a wake-up carries a batch instead of one
 * completion; idle, it sleeps until the first completion as usual. */
static int submit_and_wait_batch(struct rh_loop *loop)
{
    static const struct __kernel_timespec forever = {.tv_sec = 3600};
    struct io_uring_getevents_arg arg = {
        .sigmask = 0, .sigmask_sz = _NSIG / 8, .pad = loop->batch_wait_us,
        .ts = (uint64_t)(uintptr_t)&forever};
    unsigned submit = flush_sq(&loop->ring);
    int ret = (int)syscall(__NR_io_uring_enter, loop->ring.ring_fd, submit, RH_BATCH_WAIT_NR,
                           IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
    return ret < 0 ? -errno : ret;
}

static void arm_wake(struct rh_loop *loop)
{
    struct io_uring_sqe *sqe = rh_loop_sqe(loop);
    io_uring_prep_read(sqe, loop->wake_fd, &loop->wake_val, sizeof(loop->wake_val), 0);
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_WAKE, 0, 0));
    loop->inflight++;
}

/* Drains the inbox in posting order. Producers push LIFO; reverse once. */
void rh_loop_drain_inbox(struct rh_loop *loop)
{
    struct rh_msg *list = atomic_exchange_explicit(&loop->inbox, NULL, memory_order_acquire);
    struct rh_msg *fifo = NULL;
    while (list) {
        struct rh_msg *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        struct rh_msg *next = fifo->next;
        fifo->fn(loop, fifo);
        fifo = next;
    }
}

static void on_wake(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    rh_loop_op_done(loop);
    /* Re-arm before draining: a post after the drain then finds an armed read (or a
     * counter the next read returns at once), so no wake-up is lost. */
    if (!loop->finishing)
        arm_wake(loop);
    rh_loop_drain_inbox(loop);
}

static void on_timer(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    rh_loop_op_done(loop);
    loop->timer_armed = false; /* the wheel is advanced after every iteration anyway */
}

static void arm_timer(struct rh_loop *loop)
{
    static const struct __kernel_timespec tick = {.tv_nsec = RH_WHEEL_TICK_MS * 1000000L};
    struct io_uring_sqe *sqe = rh_loop_sqe(loop);
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&tick, 0, 0);
    io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_TIMER, 0, 0));
    loop->inflight++;
    loop->timer_armed = true;
}

int rh_loop_init(struct rh_loop *loop, const struct rh_loop_config *cfg, void *owner)
{
    memset(loop, 0, sizeof(*loop));
    loop->owner = owner;
    loop->wake_fd = -1;
    int ret = setup_ring(loop, cfg->sq_entries,
                         cfg->cq_entries ? cfg->cq_entries : cfg->sq_entries * 4);
    if (ret < 0)
        return ret;
    if (cfg->batch_wait_us && (loop->ring.features & IORING_FEAT_MIN_TIMEOUT) &&
        (loop->ring.features & IORING_FEAT_EXT_ARG))
        loop->batch_wait_us = cfg->batch_wait_us;
    ret = setup_bufring(loop, cfg->buf_count, cfg->buf_size);
    if (ret < 0)
        goto fail_ring;
    if (cfg->iowq_workers) {
        unsigned max[2] = {cfg->iowq_workers, cfg->iowq_workers};
        io_uring_register_iowq_max_workers(&loop->ring, max); /* best effort */
    }
    loop->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (loop->wake_fd < 0) {
        ret = -errno;
        rh_loop_fini(loop); /* the ring and the buffer ring's memory */
        return ret;
    }
    loop->now_ms = monotonic_ms();
    rh_wheel_init(&loop->wheel, loop->now_ms);
    rh_loop_on(loop, RH_OP_WAKE, on_wake);
    rh_loop_on(loop, RH_OP_TIMER, on_timer);
    arm_wake(loop);
    return 0;
fail_ring:
    io_uring_queue_exit(&loop->ring);
    return ret;
}

void rh_loop_fini(struct rh_loop *loop)
{
    struct rh_bufring *b = &loop->bufs;
    io_uring_queue_exit(&loop->ring);
    mi_free(loop->backlog.cqes);
    loop->backlog.cqes = NULL;
    loop->backlog.len = loop->backlog.cap = 0;
    if (b->bufs) {
        munmap(b->bufs, (size_t)b->count * b->size);
        munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
        b->bufs = NULL;
    }
}

void rh_loop_release(struct rh_loop *loop)
{
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    loop->wake_fd = -1;
}

static void ignore_cqe(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        rh_loop_op_done(loop);
}

void rh_loop_on(struct rh_loop *loop, enum rh_op op, rh_cqe_fn fn)
{
    loop->handlers[op] = fn;
}

static void fault_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Moves every completion in the CQ to the backlog, so the kernel has room to post (and to
 * flush its overflow list into). Not dispatched here: rh_loop_sqe is called from inside
 * handlers, which must not be re-entered. Returns how many were moved. */
static unsigned stash_cqes(struct rh_loop *loop)
{
    struct rh_cqe_backlog *b = &loop->backlog;
    unsigned ready = io_uring_cq_ready(&loop->ring);
    if (b->len + ready > b->cap) {
        unsigned cap = b->cap ? b->cap : 256;
        while (cap < b->len + ready)
            cap *= 2;
        struct io_uring_cqe *n = mi_realloc(b->cqes, sizeof(*n) * cap); /* owner: the loop */
        if (!n)
            return 0;
        b->cqes = n;
        b->cap = cap;
    }
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&loop->ring, head, cqe)
    {
        b->cqes[b->len + n] = *cqe;
        n++;
    }
    io_uring_cq_advance(&loop->ring, n);
    b->len += n;
    return n;
}

struct io_uring_sqe *rh_loop_sqe(struct rh_loop *loop)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
    if (sqe)
        return sqe;
    fault_count(&loop->faults.sq_full, 1);
    /* Submitting frees the SQ. If the kernel refuses (EBUSY/EAGAIN: completions it cannot
     * post), take completions off the CQ and retry; if there are none yet, wait for one
     * rather than spin. */
    for (;;) {
        int ret = io_uring_submit(&loop->ring);
        sqe = io_uring_get_sqe(&loop->ring);
        if (sqe)
            return sqe;
        if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN && ret != -EBADR) {
            fprintf(stderr, "ringhttp: submit: %s\n", strerror(-ret));
            abort(); /* the ring is unusable: no SQE can ever be handed out */
        }
        if (!stash_cqes(loop)) {
            struct io_uring_cqe *cqe;
            io_uring_wait_cqe(&loop->ring, &cqe); /* also flushes the kernel's overflow */
            stash_cqes(loop);
        }
    }
}

void rh_loop_buf_recycle(struct rh_loop *loop, unsigned bid)
{
    struct rh_bufring *b = &loop->bufs;
    io_uring_buf_ring_add(b->br, rh_loop_buf(loop, bid), b->size, bid, b->mask, b->pending);
    b->pending++;
}

/* Makes recycled buffers visible to the kernel: one release store per batch. */
static void publish_buffers(struct rh_loop *loop)
{
    if (loop->bufs.pending) {
        io_uring_buf_ring_advance(loop->bufs.br, (int)loop->bufs.pending);
        loop->bufs.pending = 0;
    }
}

static void dispatch(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    enum rh_op op = rh_ud_op(cqe->user_data);
    rh_cqe_fn fn = op < RH_OP_MAX ? loop->handlers[op] : NULL;
    (fn ? fn : ignore_cqe)(loop, cqe);
}

/* Dispatches the completions stashed while the SQ was full, oldest first; handlers may
 * stash more meanwhile (the array may move). */
static unsigned reap_backlog(struct rh_loop *loop)
{
    struct rh_cqe_backlog *b = &loop->backlog;
    unsigned n = 0;
    while (n < b->len) {
        struct io_uring_cqe cqe = b->cqes[n++];
        dispatch(loop, &cqe);
    }
    b->len = 0;
    return n;
}

static unsigned reap(struct rh_loop *loop)
{
    unsigned n = loop->backlog.len ? reap_backlog(loop) : 0;
    struct io_uring_cqe *cqe;
    unsigned head, done = 0;
    io_uring_for_each_cqe(&loop->ring, head, cqe)
    {
        dispatch(loop, cqe);
        done++;
    }
    io_uring_cq_advance(&loop->ring, done);
    return n + done;
}

/* The kernel parks completions it had no CQ room for on an overflow list and sets a flag;
 * only entering the kernel moves them back. Counted: a CQ sized right never overflows. */
static bool flush_overflow(struct rh_loop *loop)
{
    if (!io_uring_cq_has_overflow(&loop->ring))
        return false;
    fault_count(&loop->faults.cq_overflow, 1);
    io_uring_get_events(&loop->ring);
    return true;
}

/* The kernel could not even keep a completion (-EBADR from enter, *koverflow counts them):
 * an op's final completion may be lost. The layer above bounds what waits on one (a
 * closing connection's send has a deadline). */
static void note_dropped(struct rh_loop *loop)
{
    unsigned lost = IO_URING_READ_ONCE(*loop->ring.cq.koverflow);
    uint64_t seen = atomic_load_explicit(&loop->faults.cqe_dropped, memory_order_relaxed);
    if (lost > seen)
        fault_count(&loop->faults.cqe_dropped, lost - seen);
}

/* Before blocking: from here posters must write the eventfd. The seq_cst fence is one half
 * of a Dekker handshake with rh_loop_wake (our store to parked then our load of the inbox,
 * against its push then its load of parked): either it sees parked and writes, or we see
 * its message here. Then we run it instead of sleeping, and do not sleep this iteration at
 * all: what it did (a request answered, the caller's condition met) must not wait for an
 * unrelated completion. false: do not block. */
static bool announce_park(struct rh_loop *loop)
{
    atomic_store_explicit(&loop->parked, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&loop->inbox, memory_order_relaxed))
        return true;
    atomic_store_explicit(&loop->parked, false, memory_order_relaxed);
    rh_loop_drain_inbox(loop);
    if (loop->before_submit)
        loop->before_submit(loop); /* what the messages queued goes out with this submit */
    publish_buffers(loop);
    return false;
}

int rh_loop_run_once(struct rh_loop *loop)
{
    if (loop->before_submit)
        loop->before_submit(loop);
    publish_buffers(loop);
    if (loop->wheel.count && !loop->timer_armed)
        arm_timer(loop);
    /* Stashed work (a full SQ's backlog) is run before any wait; messages that came in while
     * we announced the park are run at once too. */
    int ret = loop->backlog.len ? io_uring_submit(&loop->ring)
              : !announce_park(loop) ? io_uring_submit_and_get_events(&loop->ring)
              : loop->batch_wait_us  ? submit_and_wait_batch(loop)
                                     : io_uring_submit_and_wait(&loop->ring, 1);
    atomic_store_explicit(&loop->parked, false, memory_order_relaxed);
    if (ret == -EBADR)
        note_dropped(loop);
    else if (ret < 0 && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN && ret != -ETIME)
        return ret; /* EBUSY: CQ overflow waiting; we reap below, then retry */
    loop->now_ms = monotonic_ms();
    /* Completions dispatched here may queue more; keep reaping while any are there, and
     * take back what overflowed. */
    for (;;) {
        while (reap(loop))
            ;
        if (!flush_overflow(loop))
            break;
    }
    /* Messages whose poster has not written the eventfd yet (preempted between its push and
     * its write): take them now rather than wait for that thread to run again. */
    if (atomic_load_explicit(&loop->inbox, memory_order_relaxed))
        rh_loop_drain_inbox(loop);
    loop->now_ms = monotonic_ms();
    rh_wheel_advance(&loop->wheel, loop->now_ms);
    return 0;
}

void rh_loop_drain(struct rh_loop *loop, unsigned timeout_ms)
{
    uint64_t until = monotonic_ms() + timeout_ms;
    while (loop->inflight > 0 && monotonic_ms() < until) {
        if (!loop->timer_armed)
            arm_timer(loop); /* so the wait below cannot outlive the deadline by more than a tick */
        if (rh_loop_run_once(loop) < 0)
            break;
    }
}

void rh_loop_post_quiet(struct rh_loop *loop, struct rh_msg *msg)
{
    struct rh_msg *head = atomic_load_explicit(&loop->inbox, memory_order_relaxed);
    do {
        msg->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&loop->inbox, &head, msg,
                                                    memory_order_release,
                                                    memory_order_relaxed));
}

void rh_loop_wake(struct rh_loop *loop)
{
    atomic_thread_fence(memory_order_seq_cst); /* the other half: see announce_park */
    if (atomic_load_explicit(&loop->parked, memory_order_relaxed) &&
        atomic_exchange_explicit(&loop->parked, false, memory_order_relaxed)) {
        uint64_t one = 1;
        ssize_t n = write(loop->wake_fd, &one, sizeof(one));
        (void)n; /* only fails when the counter would overflow: the loop is awake then */
    }
}

void rh_loop_post(struct rh_loop *loop, struct rh_msg *msg)
{
    rh_loop_post_quiet(loop, msg);
    rh_loop_wake(loop);
}

void rh_loop_request_stop(struct rh_loop *loop)
{
    atomic_store_explicit(&loop->stop_requested, true, memory_order_release);
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof(one));
    (void)n;
}
