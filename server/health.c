/* The health route a load balancer checks: 200 while serving, 503 from the moment a stop
 * (with its grace) begins, so the balancer takes the instance out while it still serves. */
#include "server/internal.h"

static void on_health(rh_req *req, void *udata)
{
    static const char ok[] = "ok\n", draining[] = "draining\n";
    if (rh_server_draining(udata))
        rh_respond(req, 503, "text/plain", draining, sizeof(draining) - 1);
    else
        rh_respond(req, 200, "text/plain", ok, sizeof(ok) - 1);
}

int rh_health_route(rh_server *srv, const char *path)
{
    return rh_route(srv, "GET", path ? path : "/healthz", on_health, srv);
}
