/* The standalone binary's built-in routes (not part of libringhttp.a). */
#ifndef RH_SERVER_DEMO_H
#define RH_SERVER_DEMO_H
#include "include/ringhttp.h"

/* Registers /, /plaintext, /json, /echo, /healthz, /blocking (pool) and /db (a SQLite
 * database of 10,000 rows made now, read through the "db" lane). */
int srv_demo_routes_add(rh_server *srv, bool with_index); /* with_index: also "/" */
/* Removes the demo database file. */
void srv_demo_cleanup(void);

#endif
