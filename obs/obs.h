/* obs/: observability. Counters and /metrics (metrics.c), the access log
 * (access_log.c), request ids (request_id.c). Attached as after-hooks (wire.c); calls
 * http1/ and app/ below. Owns its types here (a ring's access log, its op kind); the ring's
 * counters it adds to are struct rh_stats in conn/conn_types.h (embedded in the per-ring
 * object, which the transport defines and counts connections in too). */
#ifndef RH_OBS_OBS_H
#define RH_OBS_OBS_H

#include "base/fmt.h"
#include "http1/http1.h"

/* The access log's completion kind: after static/'s STATIC_OP_FILE (CONN_OP_NEXT);
 * rh_loop_on asserts that no two layers claim one kind. */
enum obs_op {
    LOG_OP_WRITE = CONN_OP_NEXT + 1,
};

/* A ring's access log (w->log; access_log.c): lines are buffered and written through the
 * ring, one write in flight at a time. */
struct rh_access_log {
    struct rh_worker *w;
    int fd, old_fd; /* old_fd: to close once the write in flight is done */
    char *buf[2];
    uint32_t len[2], sent;
    unsigned active; /* buffer lines go to; the other may be in flight */
    bool inflight;
    uint64_t dropped;
    struct rh_timer timer;
    int64_t stamp_sec;
    char stamp[32]; /* "[25/Nov/2026:22:05:45 +0000]" */
};

/* request_id.c: "stamp-ring-counter" in hex, NUL-terminated (at most 36 characters) */
void obs_request_id_format(char out[40], uint32_t stamp, uint32_t ring, uint64_t n);

/* metrics.c */
extern const unsigned rh_latency_bounds_ms[RH_LAT_BUCKETS]; /* ms: the buckets' upper bounds */
void obs_count_response(struct rh_req *req, int status);

/* access_log.c */
int obs_access_log_open(rh_server *srv);
void obs_access_log_worker_start(struct rh_worker *w);
void obs_access_log_worker_stop(struct rh_worker *w);
void obs_access_log_line(struct rh_req *req, int status);
void obs_access_log_flush(struct rh_worker *w);

#endif
