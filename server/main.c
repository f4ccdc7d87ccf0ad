/* The ringhttp binary: flags -> rh_config, the demo routes, signals -> graceful stop. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "include/ringhttp.h"
#include "server/demo.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringhttp [options]\n"
            "  --host ADDR          address to listen on (default 127.0.0.1)\n"
            "  --port N             port (default 8080; 0 picks a free one)\n"
            "  --threads N          rings, one thread each (default: online CPUs)\n"
            "  --root DIR           serve the files under DIR at / (GET, HEAD)\n"
            "  --cache-control VAL  Cache-Control of those files (default: none)\n"
            "  --splice-min BYTES   splice file bodies this long or longer (default 32768)\n"
            "  --no-sendfile        file bodies through io-wq even when pages are resident\n"
            "  --max-body BYTES     largest request body (default 1048576)\n"
            "  --max-header BYTES   largest request head (default 12288)\n"
            "  --max-conns N        connections per ring (default 16384)\n"
            "  --header-timeout MS  whole request head (default 10000)\n"
            "  --body-timeout MS    between body reads (default 30000)\n"
            "  --min-body-rate B    bytes/s a body must average per window, else 408\n"
            "                       (default 500; 0: off)\n"
            "  --body-rate-window MS  the window of --min-body-rate (default 10000)\n"
            "  --idle-timeout MS    keep-alive idle (default 60000)\n"
            "  --write-timeout MS   stalled send (default 30000)\n"
            "  --handler-timeout MS unanswered request: 500, 504 on the pool (60000; 0: none)\n"
            "  --drain-timeout MS   graceful stop (default 10000)\n"
            "  --drain-grace MS     on SIGTERM, /healthz 503 while still serving this long\n"
            "                       first, with Connection: close (default 2000; 0: none)\n"
            "  --pid-file FILE      write the pid here once serving (SIGUSR2 upgrades)\n"
            "  --recv-buffers N     provided recv buffers per ring, a power of two (1024)\n"
            "  --recv-buffer-size B bytes each (default 4096)\n"
            "  --batch-wait-us N    gather completions up to N us per wake-up (default 0)\n"
            "  --no-defer-accept    accept before a connection's first bytes arrive\n"
            "  --pool-threads N     blocking-task pool threads (default 2x CPUs, >= 4)\n"
            "  --pool-queue N       pool queue bound; past it 503 (default 1024)\n"
            "  --pool-timeout MS    deadline of a pool task (default 0: none)\n"
            "  --pool-group-share PCT  share of pool threads and queue per group (default 50)\n"
            "  --pool-shed-target MS   shed (503) waits this long once they last (default 100)\n"
            "  --pool-shed-interval MS how long waits must last before shedding (default 500)\n"
            "  --pool-spin-us N     a pool thread looks for more work N us before sleeping (10)\n"
            "  --access-log DEST    FILE, - (stdout) or off (default off); SIGHUP reopens\n"
            "  --request-id         add the request-id middleware (default on)\n"
            "  --no-request-id      leave it out\n"
            "  --noop-middleware N  add N empty middlewares (to measure the chain's cost)\n"
            "  --quiet              no start-up line\n"
            "  --help, --version\n");
}

enum {
    OPT_HOST = 256, OPT_PORT, OPT_THREADS, OPT_ROOT, OPT_MAX_BODY, OPT_MAX_HEADER,
    OPT_MAX_CONNS, OPT_HEADER_TO, OPT_BODY_TO, OPT_IDLE_TO, OPT_WRITE_TO, OPT_DRAIN_TO,
    OPT_QUIET, OPT_HELP, OPT_VERSION, OPT_ACCESS_LOG, OPT_REQUEST_ID, OPT_NO_REQUEST_ID,
    OPT_POOL_THREADS, OPT_POOL_QUEUE, OPT_POOL_TIMEOUT, OPT_NOOP_MW, OPT_RECV_BUFS,
    OPT_RECV_BUF_SIZE, OPT_BATCH_WAIT, OPT_NO_DEFER, OPT_CACHE_CONTROL, OPT_SPLICE_MIN,
    OPT_MIN_BODY_RATE, OPT_BODY_RATE_WINDOW,
    OPT_HANDLER_TO, OPT_DRAIN_GRACE, OPT_PID_FILE, OPT_NO_SENDFILE, OPT_POOL_SHARE,
    OPT_SHED_TARGET, OPT_SHED_INTERVAL, OPT_POOL_SPIN,
};

static const struct option options[] = {
    {"host", required_argument, 0, OPT_HOST},
    {"port", required_argument, 0, OPT_PORT},
    {"threads", required_argument, 0, OPT_THREADS},
    {"root", required_argument, 0, OPT_ROOT},
    {"cache-control", required_argument, 0, OPT_CACHE_CONTROL},
    {"splice-min", required_argument, 0, OPT_SPLICE_MIN},
    {"no-sendfile", no_argument, 0, OPT_NO_SENDFILE},
    {"max-body", required_argument, 0, OPT_MAX_BODY},
    {"max-header", required_argument, 0, OPT_MAX_HEADER},
    {"max-conns", required_argument, 0, OPT_MAX_CONNS},
    {"header-timeout", required_argument, 0, OPT_HEADER_TO},
    {"body-timeout", required_argument, 0, OPT_BODY_TO},
    {"min-body-rate", required_argument, 0, OPT_MIN_BODY_RATE},
    {"body-rate-window", required_argument, 0, OPT_BODY_RATE_WINDOW},
    {"idle-timeout", required_argument, 0, OPT_IDLE_TO},
    {"write-timeout", required_argument, 0, OPT_WRITE_TO},
    {"handler-timeout", required_argument, 0, OPT_HANDLER_TO},
    {"drain-timeout", required_argument, 0, OPT_DRAIN_TO},
    {"drain-grace", required_argument, 0, OPT_DRAIN_GRACE},
    {"pid-file", required_argument, 0, OPT_PID_FILE},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"pool-threads", required_argument, 0, OPT_POOL_THREADS},
    {"noop-middleware", required_argument, 0, OPT_NOOP_MW},
    {"recv-buffers", required_argument, 0, OPT_RECV_BUFS},
    {"batch-wait-us", required_argument, 0, OPT_BATCH_WAIT},
    {"no-defer-accept", no_argument, 0, OPT_NO_DEFER},
    {"recv-buffer-size", required_argument, 0, OPT_RECV_BUF_SIZE},
    {"pool-queue", required_argument, 0, OPT_POOL_QUEUE},
    {"pool-timeout", required_argument, 0, OPT_POOL_TIMEOUT},
    {"pool-group-share", required_argument, 0, OPT_POOL_SHARE},
    {"pool-shed-target", required_argument, 0, OPT_SHED_TARGET},
    {"pool-shed-interval", required_argument, 0, OPT_SHED_INTERVAL},
    {"pool-spin-us", required_argument, 0, OPT_POOL_SPIN},
    {"access-log", required_argument, 0, OPT_ACCESS_LOG},
    {"request-id", no_argument, 0, OPT_REQUEST_ID},
    {"no-request-id", no_argument, 0, OPT_NO_REQUEST_ID},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0},
};

static int parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return -EINVAL;
    *out = v;
    return 0;
}

struct cli {
    rh_config cfg;
    const char *root;
    rh_static_options files; /* for --root */
    bool no_request_id;
    unsigned noop_middleware;
};

static int apply_option(struct cli *cli, int opt, const char *arg)
{
    unsigned long long v = 0;
    rh_config *c = &cli->cfg;
    switch (opt) {
    case OPT_HOST: c->host = arg; return 0;
    case OPT_ROOT: cli->root = arg; return 0;
    case OPT_CACHE_CONTROL: cli->files.cache_control = arg; return 0;
    case OPT_NO_SENDFILE: cli->files.no_sendfile = true; return 0;
    case OPT_QUIET: c->quiet = true; return 0;
    case OPT_NO_DEFER: c->no_defer_accept = true; return 0;
    case OPT_ACCESS_LOG: c->access_log = arg; return 0;
    case OPT_PID_FILE: c->pid_file = arg; return 0;
    case OPT_REQUEST_ID: cli->no_request_id = false; return 0;
    case OPT_NO_REQUEST_ID: cli->no_request_id = true; return 0;
    default: break;
    }
    unsigned long long max = opt == OPT_PORT ? 65535
                             : opt == OPT_POOL_SHARE ? 100
                             : opt == OPT_MAX_BODY || opt == OPT_SPLICE_MIN ? 1ull << 40
                                                                            : 1u << 31;
    if (parse_num(arg, max, &v) < 0)
        return -EINVAL;
    switch (opt) {
    case OPT_PORT: c->port = (uint16_t)v; break;
    case OPT_THREADS: c->threads = (unsigned)v; break;
    case OPT_MAX_BODY: c->max_body = (size_t)v; break;
    case OPT_MAX_HEADER: c->max_header_size = (size_t)v; break;
    case OPT_MAX_CONNS: c->max_conns = (unsigned)v; break;
    case OPT_HEADER_TO: c->header_timeout_ms = (unsigned)v; break;
    case OPT_BODY_TO: c->body_timeout_ms = (unsigned)v; break;
    case OPT_MIN_BODY_RATE: c->min_body_rate = (unsigned)v; break;
    case OPT_BODY_RATE_WINDOW: c->body_rate_window_ms = (unsigned)v; break;
    case OPT_IDLE_TO: c->idle_timeout_ms = (unsigned)v; break;
    case OPT_WRITE_TO: c->write_timeout_ms = (unsigned)v; break;
    case OPT_HANDLER_TO: c->handler_timeout_ms = (unsigned)v; break;
    case OPT_DRAIN_TO: c->drain_timeout_ms = (unsigned)v; break;
    case OPT_DRAIN_GRACE: c->drain_grace_ms = (unsigned)v; break;
    case OPT_POOL_THREADS: c->pool_threads = (unsigned)v; break;
    case OPT_POOL_QUEUE: c->pool_queue = (unsigned)v; break;
    case OPT_POOL_TIMEOUT: c->pool_timeout_ms = (unsigned)v; break;
    case OPT_POOL_SHARE: c->pool_group_share = (unsigned)v; break;
    case OPT_SHED_TARGET: c->pool_shed_target_ms = (unsigned)v; break;
    case OPT_SHED_INTERVAL: c->pool_shed_interval_ms = (unsigned)v; break;
    case OPT_POOL_SPIN: c->pool_spin_us = (unsigned)v; break;
    case OPT_NOOP_MW: cli->noop_middleware = (unsigned)v; break;
    case OPT_RECV_BUFS: c->recv_buffers = (unsigned)v; break;
    case OPT_RECV_BUF_SIZE: c->recv_buffer_size = (unsigned)v; break;
    case OPT_BATCH_WAIT: c->batch_wait_us = (unsigned)v; break;
    case OPT_SPLICE_MIN: cli->files.splice_min = v; break;
    default: return -EINVAL;
    }
    return 0;
}

static const char *option_name(int val)
{
    for (const struct option *o = options; o->name; o++)
        if (o->val == val)
            return o->name;
    return "?";
}

static rh_mw_result noop_before(rh_req *req, void *udata) { return RH_MW_NEXT; }
static void noop_after(rh_req *req, int status, void *udata) {}

static int add_noop_middleware(rh_server *srv, unsigned n)
{
    rh_middleware mw = {.name = "noop", .before = noop_before, .after = noop_after};
    int ret = 0;
    for (unsigned i = 0; i < n && ret == 0; i++)
        ret = rh_use(srv, &mw);
    return ret;
}

/* --root DIR: DIR at "/" beneath the demo routes (exact routes win); "/" itself is the
 * site's index page (the demo leaves "/" out when there is a root). */
static int mount_root(rh_server *srv, struct cli *cli)
{
    if (!cli->root)
        return 0;
    int ret = rh_static_route(srv, "/", cli->root, &cli->files);
    if (ret < 0)
        fprintf(stderr, "ringhttp: cannot serve --root %s: %s\n", cli->root, strerror(-ret));
    return ret;
}

/* 0 to run, 1 to exit 0 (help/version), -1 to exit 2. */
static int parse_args(int argc, char **argv, struct cli *cli)
{
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            usage(stdout);
            return 1;
        }
        if (opt == OPT_VERSION) {
            printf("ringhttp %s\n", RH_VERSION);
            return 1;
        }
        if (opt == '?' || apply_option(cli, opt, optarg) < 0) {
            if (opt != '?')
                fprintf(stderr, "ringhttp: bad value for --%s: %s\n",
                        option_name(opt), optarg);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringhttp: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

static void explain_start_error(int err)
{
    fprintf(stderr, "ringhttp: cannot start: %s\n", strerror(-err));
    if (err == -EPERM || err == -ENOSYS)
        fprintf(stderr, "ringhttp: io_uring looks disabled here (seccomp, "
                        "kernel.io_uring_disabled, or an old kernel)\n");
    else if (err == -ENOMEM)
        fprintf(stderr, "ringhttp: ring memory refused: raise RLIMIT_MEMLOCK (ulimit -l) or "
                        "lower --threads\n");
    else if (err == -EADDRINUSE)
        fprintf(stderr, "ringhttp: the port is taken; choose another with --port\n");
}

/* ---- deployment: socket activation and the SIGUSR2 upgrade ---- */

struct deploy {
    char **argv;           /* for the successor: the same arguments */
    char self[4096];       /* this binary's path at start: a replaced file is the new one */
    int fds[RH_MAX_LISTEN_FDS];
};

/* Adopts LISTEN_FDS sockets (systemd, or a predecessor's upgrade) and notes our path. */
static int deploy_init(struct deploy *d, rh_config *cfg)
{
    ssize_t n = readlink("/proc/self/exe", d->self, sizeof(d->self) - 1);
    d->self[n > 0 ? n : 0] = 0;
    int nfds = rh_listen_fds_from_env(d->fds, RH_MAX_LISTEN_FDS);
    if (nfds < 0) {
        fprintf(stderr, "ringhttp: bad LISTEN_FDS sockets: %s\n", strerror(-nfds));
        return nfds;
    }
    if (nfds > 0) {
        cfg->listen_fds = d->fds;
        cfg->listen_fds_count = (unsigned)nfds;
        if (!cfg->quiet)
            fprintf(stderr, "ringhttp: serving %d inherited socket%s (LISTEN_FDS); --host and "
                            "--port are not used\n", nfds, nfds == 1 ? "" : "s");
    }
    return 0;
}

/* SIGUSR2: a fresh copy of the binary takes over the sockets; 0 once it serves. */
static int deploy_upgrade(struct deploy *d, rh_server *srv, bool quiet)
{
    int pid = d->self[0] ? rh_server_upgrade(srv, d->self, d->argv, 30000) : -ENOENT;
    if (pid < 0) {
        fprintf(stderr, "ringhttp: upgrade failed (%s); still serving\n", strerror(-pid));
        return pid;
    }
    if (!quiet)
        fprintf(stderr, "ringhttp: upgraded: pid %d serves now; this one drains and exits\n",
                pid);
    return 0;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    rh_config_init(&cli.cfg);
    cli.cfg.drain_grace_ms = 2000; /* the binary runs behind balancers; the library: 0 */
    int parsed = parse_args(argc, argv, &cli);
    if (parsed)
        return parsed > 0 ? 0 : 2;
    struct deploy dep = {.argv = argv}; /* getopt left argv in order: no operands */
    if (deploy_init(&dep, &cli.cfg) < 0)
        return 2;

    /* Signals go to this thread only (sigwait below); ring threads inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rh_server *srv;
    int ret = rh_server_new(&cli.cfg, &srv);
    if (ret < 0) {
        fprintf(stderr, "ringhttp: bad configuration: %s\n", strerror(-ret));
        return 2;
    }
    ret = cli.no_request_id ? 0 : rh_use_request_id(srv);
    if (ret == 0)
        ret = add_noop_middleware(srv, cli.noop_middleware);
    if (ret == 0)
        ret = srv_demo_routes_add(srv, cli.root == NULL);
    if (ret == 0)
        ret = rh_metrics_route(srv, "/metrics");
    if (ret == 0)
        ret = mount_root(srv, &cli);
    if (ret == 0)
        ret = rh_server_start(srv);
    if (ret < 0) {
        explain_start_error(ret);
        rh_server_free(srv);
        srv_demo_cleanup();
        return 1;
    }
    if (!cli.cfg.quiet) {
        printf("ringhttp %s listening on http://%s:%u/ (%u threads)\n", RH_VERSION,
               cli.cfg.host, rh_server_port(srv), rh_server_threads(srv));
        fflush(stdout);
    }
    int sig = 0;
    for (;;) {
        sigwait(&sigs, &sig);
        if (sig == SIGUSR2 && deploy_upgrade(&dep, srv, cli.cfg.quiet) == 0)
            break; /* the successor serves: hand over */
        if (sig == SIGUSR2)
            continue;
        if (sig != SIGHUP)
            break;
        int err = rh_server_reopen_logs(srv);
        if (err < 0)
            fprintf(stderr, "ringhttp: cannot reopen the access log: %s\n", strerror(-err));
    }
    /* SIGTERM: the grace a balancer follows; SIGINT (a terminal's Ctrl-C): drain now. */
    rh_server_shutdown(srv, sig == SIGUSR2  ? RH_STOP_HANDOFF
                            : sig == SIGINT ? RH_STOP_DRAIN
                                            : RH_STOP_GRACEFUL);
    ret = rh_server_wait(srv);
    rh_server_free(srv);
    srv_demo_cleanup();
    return ret < 0 ? 1 : 0;
}
