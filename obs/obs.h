/* obs/: observability. Counters and /metrics (metrics.c), the access log
 * (access_log.c), request ids (request_id.c). Attached as after-hooks (wire.c); calls
 * http1/ and app/ below. */
#ifndef RH_OBS_OBS_H
#define RH_OBS_OBS_H

#include "core/internal.h"

/* request_id.c: "stamp-ring-counter" in hex, NUL-terminated (at most 36 characters) */
void request_id_format(char out[40], uint32_t stamp, uint32_t ring, uint64_t n);

/* metrics.c */
void stats_count_response(struct rh_req *req, int status);

/* access_log.c */
int access_log_open(rh_server *srv);
void access_log_worker_start(struct rh_worker *w);
void access_log_worker_stop(struct rh_worker *w);
void access_log_line(struct rh_req *req, int status);
void access_log_flush(struct rh_worker *w);

#endif
