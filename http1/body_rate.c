/* The minimum request-body rate (rh_config.min_body_rate, --min-body-rate), in the spirit of
 * Apache's mod_reqtimeout MinRate: besides the gap between reads (body_timeout_ms), a body
 * must bring at least min_body_rate bytes a second over each window of body_rate_window_ms,
 * or it gets 408. A trickle (a byte every few seconds) otherwise holds a connection for as
 * long as it likes. It lives on the connection's one timer: while a body is read the
 * deadline is the earlier of the gap's end and the window's end. A window in which the
 * server itself was not reading (back-pressure) is not held against the client. */
#include "http1/http1.h"

static uint64_t earlier(uint64_t a, uint64_t b) { return a < b ? a : b; }

uint64_t h1_body_rate_deadline(struct rh_conn *c, uint64_t gap_deadline_ms)
{
    struct rh_req *r = c->req;
    const rh_config *cfg = &c->w->srv->cfg;
    if (!r || !cfg->min_body_rate)
        return gap_deadline_ms;
    if (!r->rate_start_ms) { /* the body's first window */
        r->rate_start_ms = c->w->loop.now_ms;
        r->rate_bytes = 0;
    }
    r->gap_deadline_ms = gap_deadline_ms;
    return earlier(gap_deadline_ms, r->rate_start_ms + cfg->body_rate_window_ms);
}

void h1_body_rate_progress(struct rh_conn *c, uint32_t bytes)
{
    if (c->req)
        c->req->rate_bytes += bytes;
}

bool h1_body_rate_timer(struct rh_conn *c)
{
    struct rh_req *r = c->req;
    const rh_config *cfg = &c->w->srv->cfg;
    uint64_t now = c->w->loop.now_ms;
    if (!r || !cfg->min_body_rate || !r->rate_start_ms || now >= r->gap_deadline_ms)
        return false; /* the gap between reads ran out */
    uint64_t window_end = r->rate_start_ms + cfg->body_rate_window_ms;
    if (now < window_end) { /* early (a deadline moved): wait for the real one */
        c->phase_deadline_ms = earlier(r->gap_deadline_ms, window_end);
        rh_timer_arm(&c->w->loop.wheel, &c->timer, c->phase_deadline_ms);
        return true;
    }
    uint64_t need = (uint64_t)cfg->min_body_rate * cfg->body_rate_window_ms / 1000;
    bool reading = (c->flags & C_RECV_ARMED) && !(c->flags & C_READ_STOPPED);
    if (reading && r->rate_bytes < need) {
        conn_stat_add(&c->w->stats.body_too_slow, 1);
        return false;
    }
    r->rate_start_ms = now;
    r->rate_bytes = 0;
    c->phase_deadline_ms = earlier(r->gap_deadline_ms, now + cfg->body_rate_window_ms);
    rh_timer_arm(&c->w->loop.wheel, &c->timer, c->phase_deadline_ms);
    return true;
}
