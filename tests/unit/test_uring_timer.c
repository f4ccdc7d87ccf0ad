/* Timer wheel: arming, cancelling, firing order and far-future expiries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "uring/timer.h"




struct tagged { struct rh_timer t; int id; };
static int order[16], norder;
static void on_tagged(struct rh_timer *t) { order[norder++] = ((struct tagged *)t)->id; }

static void test_fires_when_due_not_before(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 1000);
    struct tagged a = {.t = {.fn = on_tagged}, .id = 1};
    norder = 0;
    rh_timer_arm(&w, &a.t, 1000 + 100);
    assert_int_equal(rh_wheel_advance(&w, 1050), 0);
    assert_true(rh_timer_armed(&a.t));
    assert_int_equal(rh_wheel_advance(&w, 1100), 1);
    assert_false(rh_timer_armed(&a.t));
    assert_int_equal(w.count, 0);
}

static void test_cancel_prevents_firing(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    struct tagged a = {.t = {.fn = on_tagged}, .id = 1};
    norder = 0;
    rh_timer_arm(&w, &a.t, 50);
    rh_timer_cancel(&w, &a.t);
    rh_timer_cancel(&w, &a.t); /* twice is harmless */
    assert_int_equal(rh_wheel_advance(&w, 1000), 0);
    assert_int_equal(norder, 0);
}

static void test_rearm_moves_expiry(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    struct tagged a = {.t = {.fn = on_tagged}, .id = 7};
    norder = 0;
    rh_timer_arm(&w, &a.t, 100);
    rh_timer_arm(&w, &a.t, 400);
    assert_int_equal(w.count, 1);
    assert_int_equal(rh_wheel_advance(&w, 300), 0);
    assert_int_equal(rh_wheel_advance(&w, 400), 1);
    assert_int_equal(order[0], 7);
}

static void test_beyond_one_revolution(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    uint64_t far = (uint64_t)RH_WHEEL_SLOTS * RH_WHEEL_TICK_MS * 3 + 10;
    struct tagged a = {.t = {.fn = on_tagged}, .id = 3};
    norder = 0;
    rh_timer_arm(&w, &a.t, far);
    for (uint64_t now = 0; now < far; now += RH_WHEEL_TICK_MS)
        assert_int_equal(rh_wheel_advance(&w, now), 0);
    assert_int_equal(rh_wheel_advance(&w, far + RH_WHEEL_TICK_MS), 1);
}

static void test_long_sleep_fires_everything_due(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    struct tagged t[5];
    norder = 0;
    for (int i = 0; i < 5; i++) {
        t[i] = (struct tagged){.t = {.fn = on_tagged}, .id = i};
        rh_timer_arm(&w, &t[i].t, 100 + (uint64_t)i * 1000);
    }
    assert_int_equal(rh_wheel_advance(&w, 1000000), 5);
    assert_int_equal(w.count, 0);
}

static struct rh_wheel *rearm_wheel;
static void on_rearm_self(struct rh_timer *t)
{
    norder++;
    if (norder < 3)
        rh_timer_arm(rearm_wheel, t, t->expires_ms + 100);
}

static void test_callback_may_rearm(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    rearm_wheel = &w;
    struct rh_timer t = {.fn = on_rearm_self};
    norder = 0;
    rh_timer_arm(&w, &t, 100);
    rh_wheel_advance(&w, 100);
    assert_int_equal(norder, 1);
    rh_wheel_advance(&w, 200);
    rh_wheel_advance(&w, 300);
    assert_int_equal(norder, 3);
    assert_false(rh_timer_armed(&t));
}

/* A callback may cancel another timer that is due in the same pass: it must not fire. */
static struct tagged *victim;
static struct rh_wheel *cancel_wheel;
static void on_cancel_victim(struct rh_timer *t)
{
    order[norder++] = ((struct tagged *)t)->id;
    rh_timer_cancel(cancel_wheel, &victim->t);
}

static void test_callback_may_cancel_a_due_timer(void **state)
{
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    cancel_wheel = &w;
    struct tagged a = {.t = {.fn = on_cancel_victim}, .id = 1};
    struct tagged b = {.t = {.fn = on_tagged}, .id = 2};
    victim = &b;
    norder = 0;
    rh_timer_arm(&w, &a.t, 100);
    rh_timer_arm(&w, &b.t, 100);
    assert_int_equal(rh_wheel_advance(&w, 100), 1);
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 1);
    assert_false(rh_timer_armed(&b.t));
    assert_int_equal(w.count, 0);
}

/* A wave: thousands due in a slot shared with far-future timers, all fired in one advance,
 * the far ones left armed. */
static int nfired;
static void on_count(struct rh_timer *t) { nfired++; }

static void test_wave_sharing_slots_with_far_timers(void **state)
{
    enum { N = 4000 };
    static struct tagged due[N], far[N];
    struct rh_wheel w;
    rh_wheel_init(&w, 0);
    norder = 0;
    for (int i = 0; i < N; i++) {
        far[i] = (struct tagged){.t = {.fn = on_count}, .id = 100};
        rh_timer_arm(&w, &far[i].t, 100 + RH_WHEEL_SLOTS * RH_WHEEL_TICK_MS * 3);
        due[i] = (struct tagged){.t = {.fn = on_count}, .id = 1};
        rh_timer_arm(&w, &due[i].t, 100);
    }
    nfired = 0;
    assert_int_equal(rh_wheel_advance(&w, 100), N);
    assert_int_equal(nfired, N);
    assert_int_equal(w.count, N);
    for (int i = 0; i < N; i++)
        assert_true(rh_timer_armed(&far[i].t) && !rh_timer_armed(&due[i].t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_when_due_not_before),
        cmocka_unit_test(test_cancel_prevents_firing),
        cmocka_unit_test(test_rearm_moves_expiry),
        cmocka_unit_test(test_beyond_one_revolution),
        cmocka_unit_test(test_long_sleep_fires_everything_due),
        cmocka_unit_test(test_callback_may_rearm),
        cmocka_unit_test(test_callback_may_cancel_a_due_timer),
        cmocka_unit_test(test_wave_sharing_slots_with_far_timers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
