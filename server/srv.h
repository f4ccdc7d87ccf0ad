/* server/: the server object on top. Rings (server.c), listeners, drain, binary
 * upgrade, the wiring of the calls up (wire.c), the test client; main.c and demo.c are the
 * binary. May call every folder below. */
#ifndef RH_SERVER_SRV_H
#define RH_SERVER_SRV_H

#include "conn/conn.h"

/* wire.c: fills srv->proto and srv->hooks (rh_server_new; tests' fake servers). */
void srv_wire(struct rh_server *srv);

/* listeners.c */
int srv_listeners_open(rh_server *srv);           /* own or shared; sets bound_port */
void srv_listeners_worker_init(struct rh_worker *w);
void srv_listeners_worker_stop(struct rh_worker *w); /* cancel the accepts, let go of the fds */
void srv_listeners_close(rh_server *srv);          /* whatever is still open */

/* drain.c */
/* In the loop once a stop is requested: starts the grace on the first call; true once the
 * drain should begin (no grace, the grace is over, or the stop was made faster). */
bool srv_drain_grace_over(struct rh_worker *w);

/* upgrade.c */
int srv_pid_file_write(rh_server *srv);
void srv_pid_file_remove(rh_server *srv);
int srv_upgrade_take_ready_fd(const rh_config *cfg); /* from the environment, or -1 */
void srv_upgrade_notify_ready(rh_server *srv); /* tell the predecessor we serve */

#endif
