/* A close that never gets its send's final completion (as when the kernel drops a CQE)
 * must not hold the connection's slot for ever: after the close wait it gives up, frees
 * the slot and counts it. The lost completion is made real by swallowing the close's
 * shutdown(SHUT_RDWR) (linked with --wrap=shutdown), so the send stays stuck on a client
 * that never reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "include/ringhttp.h"
#include "conn/conn.h"

static atomic_int swallowed;

int __real_shutdown(int fd, int how);
int __wrap_shutdown(int fd, int how);
int __wrap_shutdown(int fd, int how)
{
    if (how == SHUT_RDWR) { /* a close with a send out: the send is never woken */
        atomic_fetch_add(&swallowed, 1);
        return 0;
    }
    return __real_shutdown(fd, how);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *big;
enum { BIG = 16 << 20 }; /* far more than both socket buffers hold */

static void on_big(rh_req *req, void *udata) { rh_respond(req, 200, "text/plain", big, BIG); }

static void test_lost_send_completion_frees_the_slot(void **state)
{
    big = calloc(1, BIG);
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.quiet = true;
    cfg.write_timeout_ms = 300; /* the stuck send times out, then the close waits as long */
    rh_server *srv;
    assert_int_equal(rh_server_new(&cfg, &srv), 0);
    assert_int_equal(rh_route(srv, "GET", "/big", on_big, NULL), 0);
    assert_int_equal(rh_server_start(srv), 0);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(rh_server_port(srv))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    static const char get[] = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(write(fd, get, sizeof(get) - 1), (ssize_t)(sizeof(get) - 1));

    const struct rh_stats *st = &srv->workers[0].stats;
    for (int i = 0; i < 400 && (atomic_load(&st->close_forced) == 0 ||
                                atomic_load(&st->open_conns) != 0); i++)
        sleep_ms(10); /* never reading: the write timeout, then the close wait */
    assert_int_equal(atomic_load(&swallowed), 1);
    assert_int_equal(atomic_load(&st->close_forced), 1);
    assert_int_equal(atomic_load(&st->open_conns), 0); /* the slot is free again */

    struct linger lg = {1, 0}; /* the stuck send now fails: its late completion is ignored */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    rh_server_free(srv);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_send_completion_frees_the_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
