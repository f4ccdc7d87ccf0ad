/* The standalone binary's built-in routes (not part of libringhttp.a). */
#ifndef RH_SERVER_DEMO_H
#define RH_SERVER_DEMO_H
#include "include/ringhttp.h"

/* Registers /, /plaintext, /json, /echo and /healthz. */
int demo_routes_add(rh_server *srv);

#endif
