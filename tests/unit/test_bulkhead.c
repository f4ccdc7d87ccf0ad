/* pool/ bulkheads: fair round-robin between groups, each group's cap on threads and queue,
 * and shedding by queueing delay, driven by hand on a pool built without threads
 * (pool_layout) and with a fake clock, so every order and every decision is deterministic.
 * One threaded test then checks the caps hold, and every task is delivered once, with real
 * threads racing (under TSan in make test). Includes the .c files under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pool/bulkhead.c"
#include "pool/pool.c"

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }
#define MS (1000000ull)

/* ---- a pool without threads, and its deliveries ---- */

struct rec {
    struct rh_task task;
    char name[8];
};

static const char *delivered[64];
static enum rh_task_state delivered_state[64];
static unsigned ndelivered;

static void record(void *owner, struct rh_msg *msg)
{
    struct rec *r = (struct rec *)msg; /* msg is first in the task, the task first in rec */
    delivered_state[ndelivered] = atomic_load(&r->task.state);
    delivered[ndelivered++] = r->name;
}

static void nop_work(struct rh_task *t) {}

static struct rh_pool *manual_pool(const struct rh_pool_config *cfg)
{
    ndelivered = 0;
    fake_now = 0;
    struct rh_pool *pool = mi_zalloc(sizeof(*pool));
    assert_non_null(pool);
    assert_int_equal(config_check(cfg), 0);
    assert_int_equal(pool_layout(pool, cfg), 0);
    return pool;
}

static void manual_free(struct rh_pool *pool)
{
    pool_stop(pool); /* no threads: closes the queues */
    pool_release(pool);
}

static void submit(struct rh_pool *pool, struct rec *r, const char *name, unsigned group)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->task.work = nop_work;
    r->task.group = group;
    assert_int_equal(rh_pool_submit(pool, &r->task), 0);
}

/* What a pool thread does for one task: take (slot held), then run and give the slot back.
 * NULL if no task may be taken now. */
static struct rh_task *take(struct rh_pool *pool, struct bulkhead **from)
{
    return crew_scan(&pool->crews[0], from);
}

static bool step(struct rh_pool *pool)
{
    struct bulkhead *b;
    struct rh_task *t = take(pool, &b);
    if (t)
        task_run(&pool->crews[0], b, t);
    return t != NULL;
}

static const struct rh_pool_group_config two_groups[] = {
    {.name = "A"},
    {.name = "B"},
};

/* ---- fair queueing ---- */

static void test_backlogged_groups_take_turns(void **state)
{
    struct rh_pool_config cfg = {.threads = 1, .deliver = record, .groups = two_groups,
                                 .ngroups = 2, .now_ns = fake_clock};
    struct rh_pool *pool = manual_pool(&cfg);
    struct rec r[7];
    /* A floods first; B and the default group arrive behind it. In one FIFO, B would
     * wait for all of A. */
    submit(pool, &r[0], "a1", 1);
    submit(pool, &r[1], "a2", 1);
    submit(pool, &r[2], "a3", 1);
    submit(pool, &r[3], "a4", 1);
    submit(pool, &r[4], "b1", 2);
    submit(pool, &r[5], "b2", 2);
    submit(pool, &r[6], "d1", 0);
    while (step(pool))
        ;
    const char *want[] = {"d1", "a1", "b1", "a2", "b2", "a3", "a4"};
    assert_int_equal(ndelivered, 7);
    for (unsigned i = 0; i < 7; i++)
        assert_string_equal(delivered[i], want[i]);
    manual_free(pool);
}

static void test_group_never_holds_more_than_its_threads(void **state)
{
    /* 4 threads, 50 %: each group may hold 2. */
    struct rh_pool_config cfg = {.threads = 4, .group_share_pct = 50, .deliver = record,
                                 .groups = two_groups, .ngroups = 2, .now_ns = fake_clock};
    struct rh_pool *pool = manual_pool(&cfg);
    struct rec r[5];
    submit(pool, &r[0], "a1", 1);
    submit(pool, &r[1], "a2", 1);
    submit(pool, &r[2], "a3", 1);
    submit(pool, &r[3], "a4", 1);
    struct bulkhead *b[3];
    struct rh_task *t0 = take(pool, &b[0]), *t1 = take(pool, &b[1]);
    assert_ptr_equal(t0, &r[0].task);
    assert_ptr_equal(t1, &r[1].task);
    /* Two threads are still free, but A holds its share: nothing for them from A. */
    assert_null(take(pool, &b[2]));
    struct rh_pool_stats s;
    rh_pool_get_group_stats(pool, 1, &s);
    assert_int_equal(s.running, 2);
    assert_int_equal(s.max_threads, 2);
    assert_int_equal(s.queued, 2);
    /* B's work is taken at once by a free thread. */
    submit(pool, &r[4], "b1", 2);
    assert_ptr_equal(take(pool, &b[2]), &r[4].task);
    task_run(&pool->crews[0], b[2], &r[4].task);
    /* One of A's finishes: its slot serves A's next. */
    task_run(&pool->crews[0], b[0], t0);
    assert_ptr_equal(take(pool, &b[0]), &r[2].task);
    task_run(&pool->crews[0], b[0], &r[2].task);
    task_run(&pool->crews[0], b[1], t1);
    while (step(pool))
        ;
    assert_int_equal(ndelivered, 5);
    manual_free(pool);
}

static void test_group_queue_share_rejects_only_that_group(void **state)
{
    static const struct rh_pool_group_config groups[] = {
        {.name = "A", .queue_cap = 2},
        {.name = "B"},
    };
    /* queue 10 at 50 %: B gets 5 cells; A asked for 2. */
    struct rh_pool_config cfg = {.threads = 2, .queue_cap = 10, .group_share_pct = 50,
                                 .deliver = record, .groups = groups, .ngroups = 2,
                                 .now_ns = fake_clock};
    struct rh_pool *pool = manual_pool(&cfg);
    struct rec r[8];
    submit(pool, &r[0], "a1", 1);
    submit(pool, &r[1], "a2", 1);
    memset(&r[2], 0, sizeof(r[2]));
    r[2].task.work = nop_work;
    r[2].task.group = 1;
    assert_int_equal(rh_pool_submit(pool, &r[2].task), -EAGAIN);
    for (unsigned i = 3; i < 8; i++)
        submit(pool, &r[i], "b", 2);
    r[2].task.group = 2;
    assert_int_equal(rh_pool_submit(pool, &r[2].task), -EAGAIN); /* B's 5 are full too */
    r[2].task.group = 3;
    assert_int_equal(rh_pool_submit(pool, &r[2].task), -ENOENT);
    struct rh_pool_stats s;
    rh_pool_get_group_stats(pool, 1, &s);
    assert_int_equal(s.rejected, 1);
    rh_pool_get_stats(pool, -1, &s);
    assert_int_equal(s.rejected, 2);
    assert_int_equal(s.queued, 7);
    while (step(pool))
        ;
    assert_int_equal(ndelivered, 7);
    manual_free(pool);
}

static void test_group_names(void **state)
{
    struct rh_pool_config cfg = {.threads = 1, .deliver = record, .groups = two_groups,
                                 .ngroups = 2};
    struct rh_pool *pool = manual_pool(&cfg);
    assert_int_equal(rh_pool_group_count(pool), 3);
    assert_int_equal(rh_pool_group_find(pool, "default"), 0);
    assert_int_equal(rh_pool_group_find(pool, "B"), 2);
    assert_int_equal(rh_pool_group_find(pool, "C"), -ENOENT);
    assert_string_equal(rh_pool_group_name(pool, 1), "A");
    assert_null(rh_pool_group_name(pool, 3));
    manual_free(pool);
    static const struct rh_pool_group_config bad[][2] = {
        {{.name = "x"}, {.name = "x"}},
        {{.name = "default"}, {.name = "y"}},
        {{.name = ""}, {.name = "y"}},
    };
    for (unsigned i = 0; i < 3; i++) {
        cfg.groups = bad[i];
        assert_int_equal(config_check(&cfg), -EINVAL);
    }
    cfg.groups = two_groups;
    cfg.group_share_pct = 101;
    assert_int_equal(config_check(&cfg), -EINVAL);
}

/* ---- shedding by queueing delay ---- */

static void test_standing_delay_sheds_a_burst_does_not(void **state)
{
    /* target 10 ms, interval 100 ms */
    struct rh_pool_config cfg = {.threads = 1, .deliver = record, .groups = two_groups,
                                 .ngroups = 2, .shed_target_ms = 10, .shed_interval_ms = 100,
                                 .now_ns = fake_clock};
    struct rh_pool *pool = manual_pool(&cfg);
    struct rec r[8];
    for (unsigned i = 0; i < 4; i++)
        submit(pool, &r[i], "a", 1);
    /* t=50: waited 50 ms, over target, but only just now: runs, and the interval starts. */
    fake_now = 50 * MS;
    assert_true(step(pool));
    assert_int_equal(delivered_state[0], RH_TASK_DONE);
    /* t=149: still inside the interval: runs. */
    fake_now = 149 * MS;
    assert_true(step(pool));
    assert_int_equal(delivered_state[1], RH_TASK_DONE);
    /* t=150: waits have stayed over target for the interval: shed, not run. */
    fake_now = 150 * MS;
    assert_true(step(pool));
    assert_int_equal(delivered_state[2], RH_TASK_SHED);
    struct rh_pool_stats s;
    rh_pool_get_group_stats(pool, 1, &s);
    assert_true(s.shedding);
    /* Another group at the same moment, with short waits, is not shed. */
    submit(pool, &r[4], "b", 2);
    fake_now = 151 * MS;
    assert_true(step(pool));
    assert_string_equal(delivered[3], "b");
    assert_int_equal(delivered_state[3], RH_TASK_DONE);
    /* A's last one empties its queue: shed, and the overload is over. */
    assert_true(step(pool));
    assert_int_equal(delivered_state[4], RH_TASK_SHED);
    rh_pool_get_group_stats(pool, 1, &s);
    assert_false(s.shedding);
    /* So one long wait after it starts a new interval instead of being shed. */
    submit(pool, &r[5], "a", 1);
    fake_now = 400 * MS;
    assert_true(step(pool));
    assert_int_equal(delivered_state[5], RH_TASK_DONE);
    /* And a short wait ends it too. */
    submit(pool, &r[6], "a", 1);
    submit(pool, &r[7], "a", 1);
    fake_now = 401 * MS;
    assert_true(step(pool));
    fake_now = 600 * MS;
    assert_true(step(pool));
    assert_int_equal(delivered_state[6], RH_TASK_DONE); /* waited 1 ms: resets */
    assert_int_equal(delivered_state[7], RH_TASK_DONE); /* 199 ms, but a new interval */
    rh_pool_get_group_stats(pool, 1, &s);
    assert_int_equal(s.shed, 2);
    assert_int_equal(s.completed, 5);
    assert_int_equal(s.dequeued, 7);
    assert_int_equal(s.wait_ns, (50 + 149 + 150 + 151 + 249 + 1 + 200) * MS);
    manual_free(pool);
}

static void test_no_target_never_sheds(void **state)
{
    struct rh_pool_config cfg = {.threads = 1, .deliver = record, .now_ns = fake_clock};
    struct rh_pool *pool = manual_pool(&cfg);
    struct rec r[3];
    for (unsigned i = 0; i < 3; i++)
        submit(pool, &r[i], "d", 0);
    for (unsigned i = 0; i < 3; i++) {
        fake_now = (i + 1) * 10000 * MS;
        assert_true(step(pool));
        assert_int_equal(delivered_state[i], RH_TASK_DONE);
    }
    manual_free(pool);
}

static void test_lane_sheds_on_its_own_delay(void **state)
{
    static const struct rh_lane_config lane = {.name = "db"};
    struct rh_pool_config cfg = {.threads = 1, .deliver = record, .lanes = &lane, .nlanes = 1,
                                 .shed_target_ms = 5, .shed_interval_ms = 20,
                                 .now_ns = fake_clock};
    struct rh_pool *pool = manual_pool(&cfg);
    struct rec r[3];
    for (unsigned i = 0; i < 3; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].task.work = nop_work;
        assert_int_equal(rh_pool_submit_lane(pool, 0, &r[i].task), 0);
    }
    struct crew *c = &pool->crews[1];
    struct bulkhead *b;
    struct rh_task *t;
    fake_now = 10 * MS;
    t = crew_scan(c, &b);
    task_run(c, b, t);
    fake_now = 30 * MS;
    t = crew_scan(c, &b);
    task_run(c, b, t);
    assert_int_equal(delivered_state[0], RH_TASK_DONE);
    assert_int_equal(delivered_state[1], RH_TASK_SHED);
    struct rh_pool_stats s;
    rh_pool_get_stats(pool, 0, &s);
    assert_int_equal(s.shed, 1);
    t = crew_scan(c, &b);
    task_run(c, b, t);
    manual_free(pool);
}

/* ---- with threads ---- */

enum { GROUPS = 3, PER_GROUP = 300, THREADS = 4 };
static _Atomic int live[GROUPS], peak[GROUPS];
static _Atomic unsigned done_count;

struct counted {
    struct rh_task task;
    _Atomic int deliveries;
};

static void counted_work(struct rh_task *t)
{
    int g = (int)t->group;
    int n = atomic_fetch_add(&live[g], 1) + 1;
    int p = atomic_load(&peak[g]);
    while (n > p && !atomic_compare_exchange_weak(&peak[g], &p, n))
        ;
    for (volatile int i = 0; i < 2000; i++)
        ;
    atomic_fetch_sub(&live[g], 1);
}

static void counted_deliver(void *owner, struct rh_msg *msg)
{
    struct counted *c = (struct counted *)msg;
    atomic_fetch_add(&c->deliveries, 1);
    atomic_fetch_add_explicit(&done_count, 1, memory_order_release);
}

static void test_threads_respect_caps_and_deliver_once(void **state)
{
    static const struct rh_pool_group_config groups[] = {{.name = "A", .max_threads = 1},
                                                         {.name = "B"}};
    struct rh_pool_config cfg = {.threads = THREADS, .group_share_pct = 50,
                                 .queue_cap = PER_GROUP * 2, .groups = groups, .ngroups = 2,
                                 .spin_us = 20, .deliver = counted_deliver};
    struct rh_pool *pool;
    assert_int_equal(rh_pool_new(&cfg, &pool), 0);
    static struct counted tasks[GROUPS * PER_GROUP];
    memset(tasks, 0, sizeof(tasks));
    for (unsigned i = 0; i < GROUPS * PER_GROUP; i++) {
        tasks[i].task.work = counted_work;
        tasks[i].task.group = i % GROUPS;
        assert_int_equal(rh_pool_submit(pool, &tasks[i].task), 0);
    }
    uint64_t until = rh_pool_now_ns() + 20000 * MS;
    while (atomic_load_explicit(&done_count, memory_order_acquire) < GROUPS * PER_GROUP &&
           rh_pool_now_ns() < until)
        sched_yield();
    rh_pool_free(pool);
    for (unsigned i = 0; i < GROUPS * PER_GROUP; i++)
        assert_int_equal(atomic_load(&tasks[i].deliveries), 1);
    assert_true(atomic_load(&peak[1]) <= 1); /* A: its own cap */
    assert_true(atomic_load(&peak[0]) <= 2); /* default and B: half of 4 */
    assert_true(atomic_load(&peak[2]) <= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backlogged_groups_take_turns),
        cmocka_unit_test(test_group_never_holds_more_than_its_threads),
        cmocka_unit_test(test_group_queue_share_rejects_only_that_group),
        cmocka_unit_test(test_group_names),
        cmocka_unit_test(test_standing_delay_sheds_a_burst_does_not),
        cmocka_unit_test(test_no_target_never_sheds),
        cmocka_unit_test(test_lane_sheds_on_its_own_delay),
        cmocka_unit_test(test_threads_respect_caps_and_deliver_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
