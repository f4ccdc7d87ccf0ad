/* Ring-fault regressions on a real embedded server: the request's connection pointer is not
 * raced by a pool thread (rh_req_peer / rh_req_elapsed_ms from a blocking handler while the
 * client leaves and the ring clears it: run under TSan by make test), and request ids stay
 * unique across more rings than one hex digit can name (they repeated past 16). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "include/ringhttp.h"
#include "tests/unit/unit_client.h"
#include "conn/conn.h"
#include "obs/obs.h"

static atomic_int handlers_started, handlers_done;
static atomic_bool peer_was_dash = true;

/* Reads the request's peer and age over and over while the client goes away underneath. */
static void peeking_handler(rh_req *req, void *udata)
{
    atomic_fetch_add(&handlers_started, 1);
    for (int i = 0; i < 2000; i++) {
        const char *peer = rh_req_peer(req);
        if (strcmp(peer, "-") != 0)
            atomic_store(&peer_was_dash, false);
        (void)rh_req_elapsed_ms(req);
        if (i % 100 == 0)
            sleep_ms(1);
    }
    rh_respond(req, 200, "text/plain", "ok", 2);
    atomic_fetch_add(&handlers_done, 1);
}

static void test_peer_from_pool_while_client_leaves(void **state)
{
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.pool_threads = 4;
    cfg.quiet = true;
    rh_server *srv;
    assert_int_equal(rh_server_new(&cfg, &srv), 0);
    assert_int_equal(rh_route_blocking(srv, "GET", "/peek", peeking_handler, NULL, NULL), 0);
    assert_int_equal(rh_server_start(srv), 0);
    static const char get[] = "GET /peek HTTP/1.1\r\nHost: t\r\n\r\n";
    for (int round = 0; round < 8; round++) {
        int fd = dial(rh_server_port(srv));
        assert_int_equal(write(fd, get, sizeof(get) - 1), (ssize_t)(sizeof(get) - 1));
        while (atomic_load(&handlers_started) <= round)
            sleep_ms(1);
        struct linger lg = {1, 0}; /* leave with a reset: the ring clears req->conn now */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    for (int i = 0; i < 1000 && atomic_load(&handlers_done) < 8; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&handlers_done), 8);
    assert_true(atomic_load(&peer_was_dash)); /* the ring's connection is never read there */
    rh_server_free(srv);
}

/* Every (ring, counter) pair gives a distinct id, for any number of rings. */
static void test_request_ids_unique_across_rings(void **state)
{
    enum { RINGS = 300, PER_RING = 40 };
    static char ids[RINGS * PER_RING][40];
    unsigned n = 0;
    for (uint32_t ring = 0; ring < RINGS; ring++)
        for (uint64_t k = 1; k <= PER_RING; k++) {
            /* counters far apart too: a counter that a fixed width would wrap */
            uint64_t count = k < PER_RING / 2 ? k : (k << 44) + ring;
            obs_request_id_format(ids[n], 0x5f3a1c2bu, ring, count);
            assert_true(strlen(ids[n]) <= 36); /* fits a client id's limit, and logs */
            n++;
        }
    qsort(ids, n, sizeof(ids[0]), (int (*)(const void *, const void *))strcmp);
    for (unsigned i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate request id %s", ids[i]);
    char one[40];
    obs_request_id_format(one, 0xabcu, 17, 5);
    assert_string_equal(one, "00000abc-11-000000000005");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_from_pool_while_client_leaves),
        cmocka_unit_test(test_request_ids_unique_across_rings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
