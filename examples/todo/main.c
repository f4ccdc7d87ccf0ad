/* todo --port N --db FILE --token T [--token T2 ...]: the todo API (todo.c) as a binary.
 * todo --self-test: serves on a free port with a scratch database, asks itself through the
 * in-process test client, stops, exits 0 if the answers were right. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "todo.h"

static rh_server *srv;

static void on_signal(int sig) { rh_server_stop(srv); }

static int ask_self(void)
{
    static const char body[] = "{\"title\": \"self-test\"}";
    const char *auth = "Authorization: Bearer self-test\r\nContent-Type: application/json\r\n";
    rh_test_response created, got;
    if (rh_test_request(srv, "POST", "/todos", auth, body, sizeof(body) - 1, 0, &created) < 0)
        return -1;
    int ok = created.status == 201 &&
             rh_test_request(srv, "GET", "/todos/1", auth, NULL, 0, 0, &got) == 0;
    if (ok) {
        printf("%s\n", got.body);
        ok = got.status == 200 && strstr(got.body, "\"title\":\"self-test\"") != NULL;
        rh_test_response_free(&got);
    }
    rh_test_response_free(&created);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *tokens[16];
    struct todo_config cfg = {.db = "todo.db", .tokens = tokens};
    rh_config rc;
    rh_config_init(&rc);
    bool self_test = argc == 2 && strcmp(argv[1], "--self-test") == 0;
    if (self_test) {
        rc.port = 0;
        rc.quiet = true;
        cfg.db = "todo-self-test.db";
        tokens[cfg.ntokens++] = "self-test";
        unlink(cfg.db);
    }
    for (int i = 1; !self_test && i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            rc.port = (uint16_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--db") == 0)
            cfg.db = argv[i + 1];
        else if (strcmp(argv[i], "--token") == 0 && cfg.ntokens < 16)
            tokens[cfg.ntokens++] = argv[i + 1];
        else
            break;
    }
    if ((!self_test && argc % 2 == 0) || cfg.ntokens == 0) {
        fprintf(stderr, "usage: todo --port N --db FILE --token T [--token T2 ...]\n"
                        "       todo --self-test\n");
        return 2;
    }
    int ret = rh_server_new(&rc, &srv);
    ret = ret ? ret : todo_setup(srv, &cfg);
    ret = ret ? ret : rh_server_start(srv);
    if (ret == 0 && self_test) {
        ret = ask_self() == 0 ? 0 : -EPROTO;
    } else if (ret == 0) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        printf("todo: listening on http://127.0.0.1:%u/todos\n", rh_server_port(srv));
        fflush(stdout);
        ret = rh_server_wait(srv);
    }
    rh_server_free(srv);
    if (self_test)
        unlink(cfg.db);
    if (ret < 0)
        fprintf(stderr, "todo: %s\n", strerror(-ret));
    return ret < 0;
}
