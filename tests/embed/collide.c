/* An application that defines functions named like ringhttp's internals and llhttp's, then
 * serves one request through the library and checks whose malloc it runs on. Built by
 * tests/embed/test_install.sh against the installed library (shared and static, through
 * pkg-config and CMake): it links only if the library exports nothing but rh_*, and passes
 * only if the library keeps its internals to itself and leaves malloc to libc. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <ringhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Same names as ringhttp's and llhttp's internal functions, different meanings. */
int conn_close(int x) { return x + 1; }
int h1_input_execute(const char *s) { return (int)strlen(s); }
int app_router_match(int a, int b) { return a * b; }
int h1_req_end(void) { return 7; }
int llhttp_init(void) { return 11; }

static void on_ping(rh_req *req, void *udata)
{
    (void)udata;
    rh_respond(req, 200, "text/plain", "pong\n", 5);
}

static int ask(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    const char req[] = "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
        return -1;
    char buf[512];
    ssize_t n, total = 0;
    while (total < (ssize_t)sizeof(buf) - 1 &&
           (n = read(fd, buf + total, sizeof(buf) - 1 - (size_t)total)) > 0)
        total += n;
    buf[total] = 0;
    close(fd);
    return strstr(buf, "200 OK") && strstr(buf, "pong") ? 0 : -1;
}

static bool fail(const char *what)
{
    fprintf(stderr, "collide: FAIL: %s\n", what);
    return false;
}

/* The program's malloc is libc's, and mimalloc (which the library uses for itself, so it is
 * loaded) did not make the program's blocks. */
static bool malloc_is_libc(void)
{
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    if (!sym || !dladdr(sym, &info) || !info.dli_fname)
        return fail("malloc not found");
    printf("malloc: %s\n", info.dli_fname);
    if (!strstr(info.dli_fname, "libc.so") || strstr(info.dli_fname, "mimalloc"))
        return fail("malloc is not libc's");
    void *mi = dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (!mi)
        return fail("libmimalloc not loaded: the library does not use it");
    bool (*owned)(const void *) = (bool (*)(const void *))dlsym(mi, "mi_check_owned");
    void *p = malloc(200);
    bool mimallocs = owned && owned(p);
    free(p);
    dlclose(mi);
    return mimallocs ? fail("the program's malloc returned a mimalloc block") : true;
}

int main(void)
{
    if (conn_close(1) != 2 || h1_input_execute("abc") != 3 || app_router_match(6, 7) != 42 ||
        h1_req_end() != 7 || llhttp_init() != 11)
        return fail("the program's own functions were replaced"), 1;
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    rh_server *srv;
    if (rh_server_new(&cfg, &srv) < 0)
        return fail("rh_server_new"), 1;
    if (rh_route(srv, "GET", "/ping", on_ping, NULL) < 0 || rh_server_start(srv) < 0) {
        rh_server_free(srv);
        return fail("rh_route/rh_server_start"), 1;
    }
    int ok = ask(rh_server_port(srv)) == 0 ? 1 : (fail("GET /ping"), 0);
    ok &= malloc_is_libc();
    rh_server_free(srv);
    puts(ok ? "collide: ok" : "collide: failed");
    return ok ? 0 : 1;
}
