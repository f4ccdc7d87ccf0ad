/* Ring faults on a real ring: a full SQ submits early and hands out SQEs again (no spin),
 * a CQ too small for what was submitted overflows and every completion still arrives once,
 * in order, with the overflow counted; the CQ follows the size asked for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>

#include "uring/loop.h"

static unsigned seen, in_order;
static uint32_t next_expected;

static void on_nop(struct rh_loop *loop, const struct io_uring_cqe *cqe)
{
    rh_loop_op_done(loop);
    if (rh_ud_idx(cqe->user_data) == next_expected)
        in_order++;
    next_expected = rh_ud_idx(cqe->user_data) + 1;
    seen++;
}

static int ring_or_skip(struct rh_loop *loop, unsigned sq, unsigned cq)
{
    struct rh_loop_config cfg = {.sq_entries = sq, .cq_entries = cq, .buf_count = 8,
                                 .buf_size = 256};
    int ret = rh_loop_init(loop, &cfg, NULL);
    if (ret == -ENOSYS || ret == -EPERM)
        return ret; /* no io_uring here: skip */
    assert_int_equal(ret, 0);
    rh_loop_on(loop, RH_OP_FILE, on_nop);
    return 0;
}

static void test_full_sq_and_overflowed_cq_lose_nothing(void **state)
{
    struct rh_loop loop;
    if (ring_or_skip(&loop, 8, 0) < 0) /* SQ 8, CQ 32 */
        skip();
    assert_int_equal(loop.ring.cq.ring_entries, 32);
    enum { N = 1000 };
    seen = in_order = next_expected = 0;
    /* NOPs complete at submit: far more than the CQ holds, none reaped in between. */
    for (uint32_t i = 0; i < N; i++) {
        struct io_uring_sqe *sqe = rh_loop_sqe(&loop);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, rh_ud_make(RH_OP_FILE, i, 1));
        loop.inflight++;
    }
    assert_true(atomic_load(&loop.faults.sq_full) > 0);
    for (int i = 0; i < 100 && loop.inflight > 1; i++) /* the wake read stays armed */
        assert_int_equal(rh_loop_run_once(&loop), 0);
    assert_int_equal(seen, N);
    assert_int_equal(in_order, N);
    printf("     sq_full %llu, cq_overflow %llu, dropped %llu\n",
           (unsigned long long)atomic_load(&loop.faults.sq_full),
           (unsigned long long)atomic_load(&loop.faults.cq_overflow),
           (unsigned long long)atomic_load(&loop.faults.cqe_dropped));
    assert_true(atomic_load(&loop.faults.cq_overflow) + loop.backlog.cap > 0);
    assert_int_equal(atomic_load(&loop.faults.cqe_dropped), 0);
    loop.finishing = true;
    struct io_uring_sqe *sqe = rh_loop_sqe(&loop);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, 0);
    loop.inflight++;
    rh_loop_drain(&loop, 1000);
    rh_loop_fini(&loop);
    rh_loop_release(&loop);
}

static void test_cq_sized_as_asked(void **state)
{
    struct rh_loop loop;
    if (ring_or_skip(&loop, 64, 5000) < 0)
        skip();
    assert_int_equal(loop.ring.cq.ring_entries, 8192); /* rounded up to a power of two */
    rh_loop_fini(&loop);
    rh_loop_release(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_sq_and_overflowed_cq_lose_nothing),
        cmocka_unit_test(test_cq_sized_as_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
