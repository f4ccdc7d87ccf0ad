/* The stop a load balancer can follow. rh_server_shutdown records how to stop and wakes every
 * ring; each ring then runs, on its own thread:
 *   grace  (drain_grace_ms, GRACEFUL only): health routes answer 503 so the balancer takes
 *          the instance out, listeners still accept and requests are served as usual, but
 *          every response carries Connection: close so kept-alive connections retire after
 *          their current answer instead of being cut while the balancer still uses them;
 *   drain  (server.c's begin_drain): listeners close, idle connections close, busy ones
 *          finish within drain_timeout_ms.
 * HANDOFF (an upgrade: a successor accepts from the same sockets) stops accepting at once,
 * keeps health at 200 and otherwise runs the same grace and drain. */
#include "server/srv.h"

/* How far along a stop is: a later request may only make it faster. */
static bool faster(int cur, int how)
{
    return cur == 0 || (how == RH_STOP_DRAIN && cur != RH_STOP_DRAIN);
}

void rh_server_shutdown(rh_server *srv, rh_stop_how how)
{
    int cur = atomic_load(&srv->stop_how);
    while (faster(cur, how) && !atomic_compare_exchange_weak(&srv->stop_how, &cur, (int)how))
        ;
    atomic_store(&srv->stopping, true);
    for (unsigned i = 0; srv->workers && i < srv->nworkers; i++)
        if (srv->workers[i].thread && !srv->workers[i].error)
            rh_loop_request_stop(&srv->workers[i].loop); /* wakes it: it reads stop_how */
}

bool rh_server_draining(const rh_server *srv)
{
    int how = atomic_load(&((rh_server *)srv)->stop_how);
    return how == RH_STOP_GRACEFUL || how == RH_STOP_DRAIN;
}

static void grace_wake(struct rh_timer *t) { (void)t; /* the loop re-checks the deadline */ }

bool srv_drain_grace_over(struct rh_worker *w)
{
    int how = atomic_load(&w->srv->stop_how);
    unsigned grace = w->srv->cfg.drain_grace_ms;
    if (how == RH_STOP_HANDOFF) {
        srv_listeners_worker_stop(w); /* the successor accepts from here on */
        if (w->open_conns == 0)
            return true; /* no kept-alive connection left to retire, and none can come */
    }
    if (how == RH_STOP_DRAIN || grace == 0)
        return true;
    if (!w->grace) {
        w->grace = true;
        w->grace_deadline_ms = w->loop.now_ms + grace;
    }
    if (w->loop.now_ms >= w->grace_deadline_ms)
        return true;
    if (!rh_timer_armed(&w->grace_timer)) { /* wake at the deadline (the wheel may round) */
        w->grace_timer.fn = grace_wake;
        rh_loop_timer_arm(&w->loop, &w->grace_timer, w->grace_deadline_ms - w->loop.now_ms);
    }
    return false;
}
