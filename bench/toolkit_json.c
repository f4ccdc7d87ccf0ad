/* bench/toolkit_json: what the JSON toolkit costs a request, on a real server under wrk.
 *
 * One embedded server (1 ring, pinned to CPU 0) answers GET /plain ("Hello, World!",
 * text/plain, rh_respond) and GET /json ({"message":"Hello, World!"} built per request
 * with json_pack and answered with rh_respond_json). wrk (pinned to CPU 1) loads each in
 * alternating rounds; the figure is this process's CPU time (utime + stime, every thread:
 * the ring, idle pool threads) divided by the requests wrk completed, so a noisy machine
 * moves it less than requests/s. Needs wrk on PATH (scripts/install-deps).
 *
 * Also, without the network: json_pack + json_dumpb + json_decref of the same document in
 * a loop, the part of /json that /plain does not do.
 *
 * Usage: toolkit_json [seconds_per_round] [rounds] */

#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "include/ringhttp.h"

static void plain(rh_req *req, void *u) { rh_respond(req, 200, "text/plain", "Hello, World!", 13); }

static void json(rh_req *req, void *u)
{
    rh_respond_json(req, 200, json_pack("{ss}", "message", "Hello, World!"));
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
    sched_setaffinity(0, sizeof(set), &set);
}

/* Runs wrk for seconds against url; returns the requests it completed (0 on failure). */
static uint64_t run_wrk(const char *url, unsigned seconds)
{
    int fds[2];
    if (pipe(fds) < 0)
        return 0;
    char dur[16];
    snprintf(dur, sizeof(dur), "%us", seconds);
    pid_t pid = fork();
    if (pid == 0) {
        pin(1);
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("wrk", "wrk", "-t1", "-c32", "-d", dur, url, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char out[4096] = "";
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    const char *at = strstr(out, " requests in ");
    while (at && at > out && at[-1] != '\n' && at[-1] != ' ')
        at--;
    return at && !strstr(out, "Non-2xx") ? strtoull(at, NULL, 10) : 0;
}

/* ns per json_pack + json_dumpb + json_decref, median of 5 runs of 200,000. */
static double encode_ns(void)
{
    double runs[5];
    char buf[256];
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = bench_now_ns();
        for (int i = 0; i < 200000; i++) {
            json_t *doc = json_pack("{ss}", "message", "Hello, World!");
            bench_clobber(buf);
            size_t n = json_dumpb(doc, buf, sizeof(buf), JSON_COMPACT);
            bench_clobber(&n);
            json_decref(doc);
        }
        runs[r] = (double)(bench_now_ns() - t0) / 200000.0;
    }
    return bench_median(runs, 5);
}

static void min_max(const double *v, unsigned n, double *lo, double *hi)
{
    *lo = *hi = v[0];
    for (unsigned i = 1; i < n; i++) {
        *lo = v[i] < *lo ? v[i] : *lo;
        *hi = v[i] > *hi ? v[i] : *hi;
    }
}

int main(int argc, char **argv)
{
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
    unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 3;
    pin(0); /* the ring and pool threads inherit it */
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.quiet = true;
    rh_server *srv;
    if (rh_server_new(&cfg, &srv) < 0 || rh_route(srv, "GET", "/plain", plain, NULL) < 0 ||
        rh_route(srv, "GET", "/json", json, NULL) < 0 || rh_server_start(srv) < 0)
        return 1;
    const char *paths[2] = {"/plain", "/json"};
    double per_req[2][16];
    double rps[2][16];
    rounds = rounds > 16 ? 16 : rounds;
    for (unsigned r = 0; r < rounds; r++)
        for (int i = 0; i < 2; i++) {
            char url[64];
            snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", rh_server_port(srv), paths[i]);
            uint64_t c0 = cpu_us();
            uint64_t reqs = run_wrk(url, seconds);
            uint64_t c1 = cpu_us();
            if (!reqs) {
                fprintf(stderr, "toolkit_json: wrk failed on %s (is wrk installed?)\n", url);
                rh_server_free(srv);
                return 1;
            }
            per_req[i][r] = (double)(c1 - c0) / (double)reqs;
            rps[i][r] = (double)reqs / seconds;
        }
    rh_server_free(srv);
    bench_print_machine();
    printf("toolkit_json: wrk -t1 -c32, %u rounds of %u s each, alternating; server CPU per "
           "request (utime+stime / requests), median of rounds\n", rounds, seconds);
    double med[2];
    for (int i = 0; i < 2; i++) {
        double lo, hi;
        min_max(per_req[i], rounds, &lo, &hi);
        med[i] = bench_median(per_req[i], rounds);
        printf("  %-7s %6.2f us CPU/request (%.2f-%.2f)   %8.0f requests/s\n", paths[i], med[i],
               lo, hi, bench_median(rps[i], rounds));
    }
    printf("  json/plain CPU ratio %.2f (+%.2f us per request for json_pack + "
           "rh_respond_json)\n", med[1] / med[0], med[1] - med[0]);
    printf("  json_pack + json_dumpb + json_decref alone: %.0f ns\n", encode_ns());
    printf("reproduce: build/bench/toolkit_json %u %u\n", seconds, rounds);
    return 0;
}
