/* todo --port N --db FILE --token T [--token T2 ...]: the todo API (todo.c) as a binary. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "todo.h"

static rh_server *srv;

static void on_signal(int sig) { rh_server_stop(srv); }

int main(int argc, char **argv)
{
    const char *tokens[16];
    struct todo_config cfg = {.db = "todo.db", .tokens = tokens};
    rh_config rc;
    rh_config_init(&rc);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            rc.port = (uint16_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--db") == 0)
            cfg.db = argv[i + 1];
        else if (strcmp(argv[i], "--token") == 0 && cfg.ntokens < 16)
            tokens[cfg.ntokens++] = argv[i + 1];
        else
            break;
    }
    if (argc % 2 == 0 || cfg.ntokens == 0) {
        fprintf(stderr, "usage: todo --port N --db FILE --token T [--token T2 ...]\n");
        return 2;
    }
    int ret = rh_server_new(&rc, &srv);
    ret = ret ? ret : todo_setup(srv, &cfg);
    ret = ret ? ret : rh_server_start(srv);
    if (ret == 0) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        printf("todo: listening on http://127.0.0.1:%u/todos\n", rh_server_port(srv));
        fflush(stdout);
        ret = rh_server_wait(srv);
    }
    rh_server_free(srv);
    if (ret < 0)
        fprintf(stderr, "todo: %s\n", strerror(-ret));
    return ret < 0;
}
