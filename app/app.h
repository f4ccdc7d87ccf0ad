/* app/app.h: the application toolkit's private interface (app.c, params.c, cookie.c,
 * json.c, testclient.c) and the few hooks the core calls into it.
 *
 * Owns: the error handler, the middleware scoped to path prefixes, lane start/stop hooks,
 * the per-request ring timer. The core keeps no toolkit state of its own beyond a pointer
 * in rh_server (NULL until the application uses the toolkit) and a few fields in rh_req.
 *
 * Thread rules: set-up calls before rh_server_start; the hooks run on the request's ring
 * thread, except app_error on a pool thread for a lent request (its answer is captured). */
#ifndef RH_SERVER_APP_H
#define RH_SERVER_APP_H

#include "pool/pool.h"
#include "http1/http1.h"

/* A route (router.c): a method under a pattern's node. It begins with the handler HTTP/1
 * runs (struct req_handler), which is all a match hands down to it. */
struct rh_route_entry {
    struct req_handler h; /* the handler and its udata */
    char method[16]; /* "*" for any */
    bool blocking;
    struct rh_route_entry *next;
};

struct scoped_mw {
    char *prefix; /* "/todos", "/todos/:id": segments, ':' matches any one */
    rh_middleware mw;
};

struct lane_hook {
    char *lane;
    void (*start)(void *udata);
    void (*stop)(void *udata);
    void *udata;
    struct rh_task start_task, stop_task; /* run on the lane's thread, in its FIFO */
};

struct rh_app {
    rh_error_fn on_error;
    void *error_udata;
    struct scoped_mw scoped[RH_MAX_MIDDLEWARE];
    unsigned nscoped;
    struct lane_hook hooks[RH_MAX_LANES];
    unsigned nhooks;
    /* Where the hook tasks are delivered back: never run as a loop, only its inbox is
     * drained in app_free (wake_fd -1: the pool's wake-up write fails harmlessly). */
    struct rh_loop hook_inbox;
};

/* The application answers status itself (its error handler); false: it did not, and the
 * caller sends its default page. detail: a short text for the error, or NULL. */
bool app_error(struct rh_req *req, int status, const char *detail);
/* After the route matched: runs the scoped middleware from req->rmw_pos; true if one of
 * them answered or suspended (the handler must not run now). */
bool app_route_chain(struct rh_req *req);
void app_route_after(struct rh_req *req, int status); /* before the head, in reverse */
/* The request ends: the finish hooks, the timer disarmed. */
void app_req_end(struct rh_req *req);
/* The connection left under a request waiting only for its ring timer: end it now. */
void app_req_orphaned(struct rh_req *req);
void app_lanes_start(rh_server *srv); /* after the pool exists */
void app_lanes_stop(rh_server *srv);  /* before the pool drains */
void app_free(rh_server *srv);

/* params.c: the media type of Content-Type is type (case-insensitive, no parameters). */
bool app_media_type_is(const rh_req *req, const char *type);

/* ---- the app layer's core: offload (pool hand-off) and the router ---- */

/* offload.c */
int app_offload_start(rh_server *srv);
void app_offload_stop(rh_server *srv);
void app_offload_free(rh_server *srv);
void app_offload_worker_free(struct rh_worker *w);
void app_offload_cancel(struct rh_req *req);
void app_offload_flush(void); /* wakes the pool threads this ring's burst of offloads needs */
int app_offload_capture(struct rh_req *req, int status, const char *ctype, const void *body,
                    size_t len);
void app_offload_replay(struct rh_req *req);
void app_metrics_render_pool(const rh_server *srv, char *buf, size_t *len, size_t cap);

/* router.c */
struct rh_route_node *app_router_new(void);
void app_router_free(struct rh_route_node *root);
int app_router_add(struct rh_route_node *root, const char *method, const char *pattern,
               rh_handler_fn fn, void *udata, bool blocking);
/* A match: the route and the path's parameters, as offsets into the path matched. */
struct route_match {
    const struct rh_route_entry *entry;
    uint8_t nparams;
    struct {
        const char *name; /* the route's, static */
        uint32_t off, len;
    } params[RH_MAX_PARAMS];
};
/* Finds the entry for method+path: a pure function (it writes only *out and allowed), the
 * caller copies the match into its request. 0 with out->entry set; 405 with allowed filled
 * ("GET, POST") when the path exists under other methods (out->params filled); or 404. */
int app_router_match(const struct rh_route_node *root, rh_str method, bool head, rh_str path,
                 struct route_match *out, char *allowed, size_t allowed_len);

#endif
