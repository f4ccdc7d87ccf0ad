/* bench/parse_throughput: requests/s through ringhttp's real data path, without a ring.
 *
 * A buffer of pipelined GET requests goes through conn_feed exactly as a recv would deliver
 * it: llhttp -> request -> router -> a trivial handler (rh_respond "Hello, World!") ->
 * response writer, on the fake worker and connection of tests/unit/fake_conn.h. After each
 * buffer the output is dropped, as a completed send would release it. The figure is what
 * ringhttp spends per request in user space, apart from the ring and the syscalls.
 *
 * Two request shapes: wrk's (request line + Host) and TechEmpower's browser-like request
 * (seven headers, ~350 bytes).
 *
 * Usage: parse_throughput [seconds_per_shape] [pipeline_depth] */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_common.h"
#include "tests/unit/fake_conn.h"

enum { REPS = 5, MAX_DEPTH = 64 };

static const char wrk_req[] = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

static const char browser_req[] =
    "GET /plaintext HTTP/1.1\r\n"
    "Host: server\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20130501 Firefox/30.0 "
    "AppleWebKit/600.00 Chrome/30.0.0000.0 Trident/10.0 Safari/600.00\r\n"
    "Cookie: uid=12345678901234567890; __utma=1.1234567890.1234567890.1234567890.1234567890.12; "
    "wd=2560x1600\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static uint64_t handled; /* requests that reached the handler: every one must */

static void on_plaintext(rh_req *req, void *udata)
{
    handled++;
    rh_respond(req, 200, "text/plain", "Hello, World!", 13);
}

/* depth copies of one request back to back; owned by the caller. */
static char *make_batch(const char *one, unsigned depth, size_t *len)
{
    size_t n = strlen(one);
    char *buf = malloc(n * depth);
    for (unsigned i = 0; buf && i < depth; i++)
        memcpy(buf + i * n, one, n);
    *len = n * depth;
    return buf;
}

/* Feeds one batch and drops its output; false if the connection refused the bytes. */
static bool feed_batch(struct fake *f, const char *batch, size_t len)
{
    if (!conn_feed(&f->c, batch, (uint32_t)len))
        return false;
    f->c.pbuf.len = 0; /* the send took it */
    return true;
}

/* The first batch must produce depth well-formed answers, or the numbers mean nothing. */
static bool check_batch(struct fake *f, const char *batch, size_t len, unsigned depth)
{
    if (!conn_feed(&f->c, batch, (uint32_t)len))
        return false;
    int ok = count_of(fake_out(f), "HTTP/1.1 200 OK\r\n");
    int bodies = count_of(fake_out(f), "\r\n\r\nHello, World!");
    f->c.pbuf.len = 0;
    return ok == (int)depth && bodies == (int)depth && !(f->c.flags & C_CLOSING);
}

static int run_shape(const char *name, const char *one, double secs, unsigned depth)
{
    struct fake *f = malloc(sizeof(*f)); /* the worker embeds a whole loop: not the stack */
    size_t len;
    char *batch = make_batch(one, depth, &len);
    if (!f || !batch)
        return -1;
    fake_init(f, NULL);
    app_router_add(f->srv.routes, "GET", "/plaintext", on_plaintext, NULL, false);
    if (len > RH_IN_BLOCK || !check_batch(f, batch, len, depth)) {
        fprintf(stderr, "parse_throughput: %s: the data path did not answer %u requests\n",
                name, depth);
        return -1;
    }
    double rps[REPS];
    uint64_t total = 0;
    for (unsigned r = 0; r < REPS; r++) {
        uint64_t before = handled, t0 = bench_now_ns(), t1;
        uint64_t budget = (uint64_t)(secs / REPS * 1e9);
        do {
            for (int i = 0; i < 64; i++) /* check the clock every 64 batches */
                if (!feed_batch(f, batch, len))
                    return -1;
            t1 = bench_now_ns();
        } while (t1 - t0 < budget);
        rps[r] = (double)(handled - before) / ((double)(t1 - t0) / 1e9);
        total += handled - before;
    }
    double lo = rps[0], hi = rps[0];
    for (unsigned r = 1; r < REPS; r++)
        lo = rps[r] < lo ? rps[r] : lo, hi = rps[r] > hi ? rps[r] : hi;
    double med = bench_median(rps, REPS);
    printf("  %-8s %4zu B/req  %10.0f req/s  %6.1f ns/req  %7.1f MB/s in   "
           "(median of %u, min %.0f max %.0f; %llu requests)\n",
           name, strlen(one), med, 1e9 / med, med * (double)strlen(one) / 1e6, REPS, lo, hi,
           (unsigned long long)total);
    fake_free(f);
    free(f);
    free(batch);
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? strtod(argv[1], NULL) : 2.0;
    unsigned depth = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 16;
    if (!(secs > 0) || depth == 0 || depth > MAX_DEPTH) {
        fprintf(stderr, "usage: %s [seconds_per_shape > 0] [pipeline_depth 1..%d]\n", argv[0],
                MAX_DEPTH);
        return 2;
    }
    printf("parse_throughput: pipelined GETs (depth %u) through conn_feed -> llhttp -> router "
           "-> trivial handler -> response writer, no ring, output dropped per batch\n",
           depth);
    bench_print_machine();
    int ret = run_shape("wrk", wrk_req, secs, depth);
    if (ret == 0)
        ret = run_shape("browser", browser_req, secs, depth);
    bench_print_reproduce("parse_throughput", argc, argv);
    return ret == 0 ? 0 : 1;
}
