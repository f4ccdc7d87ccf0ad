/* pool/: the bounded blocking-task pool (our sync_to_async).
 *
 * Owns: a fixed set of worker threads serving "groups" (bulkheads), plus "lanes": each lane
 * is one dedicated thread with its own bounded FIFO queue, so tasks of a lane run strictly
 * one at a time, in order, always on the same thread (thread_sensitive). Each group of the
 * shared pool has its own bounded FIFO queue and may hold at most its share of the threads;
 * the threads take from the groups' queues round-robin, so a flood on one group delays only
 * that group. A task that waited at least shed_target_ms, once waits in its group (or lane)
 * have stayed that long for shed_interval_ms, is shed (delivered RH_TASK_SHED, not run).
 * Every thread and every queue slot is made at rh_pool_new; nothing is allocated
 * afterwards, so memory does not grow with load: past the bound, submission fails.
 *
 * Never touches a ring: a finished (or expired, or cancelled) task is handed back exactly
 * once through the delivery function given at creation (the server passes rh_loop_post, so
 * the task's msg.fn then runs on the owning ring's thread).
 *
 * Thread rules: rh_pool_submit*, rh_task_cancel and rh_pool_get_stats are safe from any thread
 * and never block (no locks, no unbounded waits: a full queue fails at once with -EAGAIN);
 * the only system call a submit can make is one futex wake, and only when a pool thread is
 * parked. rh_task_check, rh_pool_current_task and rh_task_call_on_owner are for work
 * functions, on the pool thread running the task. rh_pool_new and rh_pool_free are for the
 * thread that owns the pool, and the owners must keep accepting deliveries until
 * rh_pool_free has returned (it runs what is queued). */
#ifndef RH_POOL_POOL_H
#define RH_POOL_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "uring/loop.h" /* struct rh_msg only: the delivery envelope */

enum rh_task_state {
    RH_TASK_QUEUED = 0,
    RH_TASK_RUNNING,
    RH_TASK_DONE,      /* work ran to its end */
    RH_TASK_EXPIRED,   /* waited in the queue past its deadline: not run */
    RH_TASK_CANCELLED, /* cancelled before it started, or the pool stopped: not run */
    RH_TASK_SHED,      /* its group's queueing delay stayed above target: not run */
};

/* Embedded by the submitter in its own object; the pool allocates nothing per task. The
 * submitter sets msg.fn, work, owner and (optionally) deadline_ns, then submits; from
 * submission until delivery the pool owns the link fields, and after delivery it never
 * touches the task again, so the owner may free or resubmit it from msg.fn. Submit resets
 * state, cancel_requested and stop_reason, so a task object can be reused. On an error
 * return the pool never saw the task (only submitted_ns and expires_ns were written). */
struct rh_task {
    struct rh_msg msg;               /* delivered to owner; msg.fn runs on the owner's thread */
    void (*work)(struct rh_task *t); /* runs on a pool or lane thread */
    void *owner;                     /* opaque target for the delivery function */
    uint64_t deadline_ns;            /* CLOCK_MONOTONIC; 0: the pool's default timeout */
    unsigned group;                  /* shared pool only: 0 the default group, else
                                      * rh_pool_group_find's index */
    uint64_t submitted_ns;           /* set by submit */
    uint64_t expires_ns;             /* set by submit: the deadline in force (deadline_ns, or
                                      * submitted_ns + timeout_ms), 0: none. Kept apart from
                                      * deadline_ns so a reused task never inherits the
                                      * default computed for its previous run. */
    _Atomic int state;               /* enum rh_task_state; final (release) before delivery */
    atomic_bool cancel_requested;
    int stop_reason;                 /* 0, -ECANCELED or -ETIMEDOUT: what rh_task_check saw */
};

struct rh_lane_config {
    const char *name; /* unique, non-empty; copied */
    unsigned queue_cap; /* exact bound, at least 2 (1 is taken as 2); 0: 1024 */
};

/* A group (bulkhead) of the shared pool. */
struct rh_pool_group_config {
    const char *name;     /* unique, non-empty, not "default"; copied */
    unsigned max_threads; /* at most this many threads at once; 0: the pool's share */
    unsigned queue_cap;   /* its queue bound (at least 2); 0: the pool's share of queue_cap */
};

struct rh_pool_config {
    unsigned threads;    /* worker threads; 0: 2x online CPUs, at least 4 */
    unsigned queue_cap;  /* the queue bound of each group without its own; 0: 1024 */
    unsigned timeout_ms; /* default deadline from submission; 0: none */
    const struct rh_lane_config *lanes;
    unsigned nlanes;
    /* Groups besides "default" (index 0, rh_pool_submit's group for t->group == 0). */
    const struct rh_pool_group_config *groups;
    unsigned ngroups;
    unsigned group_share_pct; /* a group's default share of threads and of queue_cap, in %
                               * (rounded up, at least 1 thread); 0: 100, no bulkheads */
    unsigned shed_target_ms;   /* queueing delay that counts as overload; 0: no shedding */
    unsigned shed_interval_ms; /* how long it must last before tasks are shed; 0: 100 */
    unsigned spin_us; /* a thread that just ran a task looks for more this long before
                       * parking (no futex on either side for a busy stream), while its
                       * last sleep was shorter than that; 0: none */
    uint64_t (*now_ns)(void); /* the clock of queueing delays (a fake one in tests); NULL:
                               * rh_pool_now_ns */
    /* Hands a task back to its owner (e.g. rh_loop_post(owner, msg)). Called once per
     * accepted task, always from a pool or lane thread (rh_pool_free lets them drain their
     * queues rather than delivering on its own thread). Also carries rh_task_call_on_owner's
     * messages. Must not block for long. */
    void (*deliver)(void *owner, struct rh_msg *msg);
    /* Optional, both or neither: deliver without waking the owner, and wake it. With them a
     * pool thread hands back a run of finished tasks quietly and wakes each owner once,
     * when the run ends (no task left to take), after 64 deliveries, or before a task of a
     * group whose tasks typically run over 50 us, so a slow task never holds back an
     * answer. Same thread rules as deliver. */
    void (*post)(void *owner, struct rh_msg *msg);
    void (*wake)(void *owner);
};

struct rh_pool_stats {
    uint64_t queued;  /* now waiting */
    uint64_t running; /* now running (threads held) */
    uint64_t completed, rejected, expired, cancelled; /* totals; rejected: queue was full */
    uint64_t shed;        /* total shed for queueing delay */
    uint64_t dequeued;    /* total taken off the queue (run or not) */
    uint64_t wait_ns;     /* their summed time in the queue */
    uint64_t max_threads; /* the group's share of threads (1 for a lane) */
    bool shedding;        /* the last task taken was shed */
};

struct rh_pool;

/* 0 or -EINVAL (no deliver, a lane or group without a name, two with one name), -ENOMEM,
 * or the error of a failed pthread_create (negated). Pool threads block every signal. */
int rh_pool_new(const struct rh_pool_config *cfg, struct rh_pool **out);
/* Stops accepting (submits now fail with -ESHUTDOWN), runs what is queued (expired and
 * cancelled tasks are still delivered as such), joins every thread, frees. NULL is a no-op. */
void rh_pool_free(struct rh_pool *pool);

/* On the shared pool, in group t->group. 0, -EAGAIN (the group's queue is full: answer
 * 503), -ESHUTDOWN (pool stopping), -EINVAL (no work), -ENOENT (no such group). */
int rh_pool_submit(struct rh_pool *pool, struct rh_task *t);
/* Producer-side batching for the calling thread: while held, a submit that would wake a
 * parked pool thread leaves it to rh_pool_flush_wakes, so a burst of submits costs one
 * wake-up per crew instead of one per task. A thread that holds must flush before it
 * blocks, or its tasks wait (a ring: once per loop iteration). hold false also flushes. */
void rh_pool_hold_wakes(bool hold);
void rh_pool_flush_wakes(void);
/* Same, on lane `lane` (index from rh_pool_lane_find); -ENOENT for a bad index. */
int rh_pool_submit_lane(struct rh_pool *pool, int lane, struct rh_task *t);
/* Lane index by name, or -ENOENT. */
int rh_pool_lane_find(const struct rh_pool *pool, const char *name);
unsigned rh_pool_lane_count(const struct rh_pool *pool);
/* NULL for a bad index. */
const char *rh_pool_lane_name(const struct rh_pool *pool, unsigned lane);
/* Groups of the shared pool: index by name ("default" is 0), or -ENOENT. */
int rh_pool_group_find(const struct rh_pool *pool, const char *name);
unsigned rh_pool_group_count(const struct rh_pool *pool);
const char *rh_pool_group_name(const struct rh_pool *pool, unsigned group);

/* Asks that t not run (client gone). A task not yet started is delivered CANCELLED without
 * running; a running one sees it through rh_task_check. Any thread; harmless after delivery
 * (the next submit clears it). */
void rh_task_cancel(struct rh_task *t);

/* For work functions: 0 to go on, -ECANCELED if cancelled, -ETIMEDOUT past the deadline
 * (cancellation wins when both hold). Records the answer in t->stop_reason. */
int rh_task_check(struct rh_task *t);
/* The task the calling pool thread is running, or NULL on any other thread. */
struct rh_task *rh_pool_current_task(void);

/* async_to_sync: from a work function, runs fn(arg) on the task's owner thread (through the
 * delivery function) and blocks this pool thread until it has returned. The message is on
 * this thread's stack, so delivery must not outlive the call. The owner must be running its
 * loop, or this never returns. */
void rh_task_call_on_owner(struct rh_task *t, void (*fn)(void *arg), void *arg);

/* lane < 0: the shared pool (its groups summed); a bad lane index gives zeros. Each counter
 * is read on its own (relaxed), so a snapshot taken under load is approximate. */
void rh_pool_get_stats(const struct rh_pool *pool, int lane, struct rh_pool_stats *out);
/* One group of the shared pool; a bad index gives zeros. */
void rh_pool_get_group_stats(const struct rh_pool *pool, unsigned group,
                             struct rh_pool_stats *out);

/* CLOCK_MONOTONIC in ns: the clock of deadline_ns. */
uint64_t rh_pool_now_ns(void);

#endif
