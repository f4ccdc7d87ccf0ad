/* A ring that stops while a static transfer still waits for an op that never completes (an
 * open the kernel never answered, a cold read stuck in io-wq): the request must be ended
 * exactly once. The server's order after the final drain is static_worker_abandon, then
 * conn_abandon_requests (which ends orphans through h1_req_release_orphans), then
 * static_worker_stop; ending the transfer's request in two of them pushed it on the free
 * list twice, a cycle that made freeing the request pool loop for ever. A real ring hands
 * out the SQEs (never submitted), so the open stays in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "static/static.h"
#include "tests/unit/fake_conn.h"

static void one_slot(rh_config *cfg) { cfg->max_conns = 1; }

static unsigned free_list_length(struct rh_req *head)
{
    unsigned n = 0;
    for (struct rh_req *r = head; r && n < 100; r = r->next_free)
        n++;
    return n; /* 100: a cycle */
}

static void test_transfer_request_ended_once_at_stop(void **state)
{
    (void)state;
    char dir[] = "/tmp/rh_static_shutdown_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/f.txt", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("hello", fp);
    fclose(fp);

    struct fake *f = calloc(1, sizeof(*f));
    fake_init(f, one_slot);
    uint32_t free_idx[1];
    assert_int_equal(rh_static_route(&f->srv, "/s", dir, NULL), 0);
    assert_int_equal(io_uring_queue_init(64, &f->w.loop.ring, 0), 0);
    conn_register_ops(&f->w.loop);
    f->w.conns = &f->c;
    f->w.free_idx = free_idx;
    f->w.open_conns = 1;
    static_worker_start(&f->w);

    static const char req[] = "GET /s/f.txt HTTP/1.1\r\nHost: a\r\n\r\n";
    fake_feed(f, req, sizeof(req) - 1);
    assert_non_null(f->c.req); /* the open is out: the request waits for it */
    assert_true(f->c.flags & C_PAUSED);

    static_worker_abandon(&f->w); /* the server's order (server.c, worker_loop's end) */
    conn_abandon_requests(&f->w);
    static_worker_stop(&f->w);
    f->c.in = NULL; /* conn_abandon_requests returned it to the worker's free list */

    assert_null(f->c.req);
    assert_null(f->w.orphans);
    assert_int_equal(free_list_length(f->w.free_reqs), 1);

    io_uring_queue_exit(&f->w.loop.ring);
    fake_free(f);
    static_free(&f->srv);
    free(f);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_request_ended_once_at_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
