/* Metrics: per-worker counters bumped on the response path without locks or atomic RMW,
 * summed over workers when /metrics is rendered (Prometheus text format). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "obs/obs.h"
#include "app/app.h"

const unsigned rh_latency_bounds_ms[RH_LAT_BUCKETS] = {1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000};

void obs_count_response(struct rh_req *r, int status)
{
    struct rh_stats *s = &r->w->stats;
    unsigned cls = (unsigned)status / 100;
    conn_stat_add(&s->by_class[cls < 6 ? cls : 5], 1);
    uint64_t ms = r->w->loop.now_ms - r->started_ms;
    unsigned b = 0;
    while (b < RH_LAT_BUCKETS && ms > rh_latency_bounds_ms[b])
        b++;
    conn_stat_add(&s->latency[b], 1);
    conn_stat_add(&s->latency_sum_ms, ms);
}

static uint64_t load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

struct out {
    char *buf;
    size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < o->cap - o->len)
        o->len += (size_t)n;
}

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
    put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

/* Connection-limit and ring-fault counters, summed over the rings. */
static void render_faults(const rh_server *srv, struct out *o)
{
    uint64_t reclaimed = 0, refused = 0, forced = 0, slow = 0, overflow = 0, dropped = 0,
             sq_full = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const struct rh_stats *s = &srv->workers[i].stats;
        const struct rh_loop_faults *f = &srv->workers[i].loop.faults;
        reclaimed += load(&s->conn_reclaimed);
        refused += load(&s->conn_refused);
        forced += load(&s->close_forced);
        slow += load(&s->body_too_slow);
        overflow += load(&f->cq_overflow);
        dropped += load(&f->cqe_dropped);
        sq_full += load(&f->sq_full);
    }
    counter(o, "ringhttp_connections_reclaimed_total",
            "Idle connections closed at the connection limit to admit a new one.", reclaimed);
    counter(o, "ringhttp_connections_refused_total",
            "New connections closed at the connection limit (none idle).", refused);
    counter(o, "ringhttp_body_rate_timeouts_total",
            "Requests answered 408 for a body below the minimum rate.", slow);
    counter(o, "ringhttp_ring_cq_overflow_total",
            "Times a completion queue was found overflowed (flushed, nothing lost).", overflow);
    counter(o, "ringhttp_ring_cqe_dropped_total",
            "Completions the kernel could not keep.", dropped);
    counter(o, "ringhttp_ring_sq_full_total",
            "Times a submission queue filled mid-iteration (submitted early).", sq_full);
    counter(o, "ringhttp_close_forced_total",
            "Closes that stopped waiting for a lost send completion.", forced);
}

static void render_http(const rh_server *srv, struct out *o)
{
    uint64_t cls[6] = {0}, lat[RH_LAT_BUCKETS + 1] = {0}, sum = 0, accepted = 0, open = 0;
    uint64_t enobufs = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const struct rh_stats *s = &srv->workers[i].stats;
        for (unsigned c = 1; c < 6; c++)
            cls[c] += load(&s->by_class[c]);
        for (unsigned b = 0; b <= RH_LAT_BUCKETS; b++)
            lat[b] += load(&s->latency[b]);
        sum += load(&s->latency_sum_ms);
        accepted += load(&s->accepted);
        enobufs += load(&s->recv_enobufs);
        open += atomic_load_explicit(&s->open_conns, memory_order_relaxed);
    }
    put(o, "# HELP ringhttp_requests_total Responses by status class.\n"
           "# TYPE ringhttp_requests_total counter\n");
    for (unsigned c = 1; c < 6; c++)
        put(o, "ringhttp_requests_total{class=\"%ux\"} %llu\n", c, (unsigned long long)cls[c]);
    put(o, "# HELP ringhttp_request_duration_seconds Time from first byte to response head.\n"
           "# TYPE ringhttp_request_duration_seconds histogram\n");
    uint64_t cum = 0, count = 0;
    for (unsigned b = 0; b <= RH_LAT_BUCKETS; b++)
        count += lat[b];
    for (unsigned b = 0; b < RH_LAT_BUCKETS; b++) {
        cum += lat[b];
        put(o, "ringhttp_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
            rh_latency_bounds_ms[b] / 1000.0, (unsigned long long)cum);
    }
    put(o, "ringhttp_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
           "ringhttp_request_duration_seconds_sum %g\n"
           "ringhttp_request_duration_seconds_count %llu\n",
        (unsigned long long)count, sum / 1000.0, (unsigned long long)count);
    put(o, "# TYPE ringhttp_connections_open gauge\nringhttp_connections_open %llu\n"
           "# TYPE ringhttp_connections_accepted_total counter\n"
           "ringhttp_connections_accepted_total %llu\n",
        (unsigned long long)open, (unsigned long long)accepted);
    put(o, "# HELP ringhttp_recv_buffer_exhausted_total Times the provided-buffer ring ran dry.\n"
           "# TYPE ringhttp_recv_buffer_exhausted_total counter\n"
           "ringhttp_recv_buffer_exhausted_total %llu\n", (unsigned long long)enobufs);
}

/* Registered by rh_server_metrics_route; pool figures are added by pool glue (offload.c). */
void app_metrics_render_pool(const rh_server *srv, char *buf, size_t *len, size_t cap);

static void on_metrics(rh_req *req, void *udata)
{
    const rh_server *srv = req->w->srv;
    static _Thread_local char buf[16384]; /* the handler's scratch: one ring, one render */
    struct out o = {buf, 0, sizeof(buf)};
    render_http(srv, &o);
    render_faults(srv, &o);
    app_metrics_render_pool(srv, o.buf, &o.len, o.cap);
    rh_respond(req, 200, "text/plain; version=0.0.4", o.buf, o.len);
}

int rh_metrics_route(rh_server *srv, const char *path)
{
    return rh_route(srv, "GET", path ? path : "/metrics", on_metrics, NULL);
}
