/* Embedding ringhttp: a route with a path parameter, the server in the background while the
 * main thread keeps control, then a synchronous stop.
 *
 *   cc hello.c $(pkg-config --cflags --libs ringhttp) -o hello && ./hello
 *   ./hello --self-test    # asks itself once, prints the answer, stops, exits 0
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <ringhttp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_hello(rh_req *req, void *udata)
{
    (void)udata;
    rh_str name = rh_req_param(req, "name");
    char body[128];
    int n = snprintf(body, sizeof(body), "hello, %.*s\n", (int)name.len, name.ptr);
    rh_resp_header(req, "X-Example", "hello.c");
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

static int ask_self(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return -1;
    const char req[] = "GET /hello/embedder HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) < 0)
        return -1;
    char buf[1024];
    ssize_t n, total = 0;
    while ((n = read(fd, buf + total, sizeof(buf) - 1 - (size_t)total)) > 0)
        total += n;
    buf[total] = 0;
    close(fd);
    fputs(buf, stdout);
    return strstr(buf, "hello, embedder") ? 0 : -1;
}

int main(int argc, char **argv)
{
    bool self_test = argc > 1 && strcmp(argv[1], "--self-test") == 0;
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = self_test ? 0 : 8081;
    cfg.threads = 1;
    rh_server *srv;
    if (rh_server_new(&cfg, &srv) < 0 || rh_route(srv, "GET", "/hello/:name", on_hello, NULL) < 0)
        return 1;
    if (rh_server_start(srv) < 0) { /* returns once the rings serve */
        rh_server_free(srv);
        return 1;
    }
    int ret = 0;
    if (self_test) {
        ret = ask_self(rh_server_port(srv));
    } else {
        printf("try: curl http://127.0.0.1:%u/hello/world\n", rh_server_port(srv));
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGINT);
        sigprocmask(SIG_BLOCK, &s, NULL);
        int sig;
        sigwait(&s, &sig);
    }
    rh_server_free(srv); /* stops, drains and frees synchronously */
    return ret ? 1 : 0;
}
