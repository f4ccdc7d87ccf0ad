/* conn_bufs.c: the spill (bounded, drained in order, freed once empty) and the starved list
 * (oldest first, removal from anywhere, free buffers counted exactly). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conn/conn.h"

static void test_spill_keeps_order_and_bound(void **state)
{
    struct rh_conn c = {0};
    char in[5000], out[5000];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)('a' + i % 26);
    assert_true(conn_spill_append(&c, in, 3000));
    assert_true(conn_spill_append(&c, in + 3000, 2000));
    assert_int_equal(conn_spill_take(&c, out, 1234), 1234);
    assert_int_equal(conn_spill_take(&c, out + 1234, sizeof(out)), 5000 - 1234);
    assert_memory_equal(in, out, sizeof(in));
    assert_null(c.spill); /* drained: freed, not kept */
    static char big[RH_SPILL_MAX];
    assert_true(conn_spill_append(&c, big, RH_SPILL_MAX));
    assert_false(conn_spill_append(&c, big, 1)); /* past the bound: refused, nothing added */
    assert_int_equal(c.spill_len, RH_SPILL_MAX);
    conn_spill_free(&c);
    assert_int_equal(c.spill_len, 0);
}

static void test_starved_fifo(void **state)
{
    struct rh_worker w = {0};
    struct rh_conn c[4] = {0};
    w.loop.bufs.count = 8;
    w.held_total = 5;
    for (int i = 0; i < 4; i++) {
        c[i].w = &w;
        conn_starved_push(&c[i]);
    }
    conn_starved_push(&c[0]); /* already waiting: stays in its place */
    conn_starved_remove(&c[2]);
    assert_false(c[2].flags & C_STARVED);
    assert_int_equal(conn_starved_free_buffers(&w), 3);
    assert_ptr_equal(conn_starved_pop(&w), &c[0]);
    assert_ptr_equal(conn_starved_pop(&w), &c[1]);
    assert_ptr_equal(conn_starved_pop(&w), &c[3]);
    assert_null(conn_starved_pop(&w));
    assert_null(w.starved_tail);
    for (int i = 0; i < 4; i++)
        assert_false(c[i].flags & C_STARVED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spill_keeps_order_and_bound),
        cmocka_unit_test(test_starved_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
