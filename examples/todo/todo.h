/* examples/todo: a JSON todo API on ringhttp (see todo.c; main.c is the binary). */
#ifndef TODO_H
#define TODO_H

#include <ringhttp.h>

struct todo_config {
    const char *db;           /* SQLite file; created if missing */
    const char *const *tokens; /* accepted bearer tokens */
    unsigned ntokens;
};

/* Adds the routes, the middleware, the "db" lane and its hooks to srv. cfg must outlive
 * srv. 0 or -errno. */
int todo_setup(rh_server *srv, const struct todo_config *cfg);

#endif
