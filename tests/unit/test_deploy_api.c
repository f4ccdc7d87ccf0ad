/* The deployment API on a real embedded server: sockets handed in through rh_config are
 * served by every ring and closed by the server when it stops; the grace answers health
 * checks with 503 and retires kept-alive connections, and a DRAIN cuts it short; the pid
 * file is written at start and removed only while it still names us; the LISTEN_FDS
 * protocol takes only what is meant for this process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "include/ringhttp.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

/* One request on fd; the answer's head and body into buf (a small answer: one read or a
 * few until the blank line and body are in). */
static int ask(int fd, const char *path, bool keep, char *buf, size_t cap)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", path,
                     keep ? "" : "Connection: close\r\n");
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t got = read(fd, buf + len, cap - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strstr(buf, "Content-Length: ");
        if (end && cl && len >= (size_t)(end + 4 - buf) + strtoul(cl + 16, NULL, 10))
            break;
    }
    buf[len] = 0;
    int st = 0;
    return sscanf(buf, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

static int get_status(uint16_t port, const char *path)
{
    char buf[1024];
    int fd = dial(port);
    assert_true(fd >= 0);
    int st = ask(fd, path, false, buf, sizeof(buf));
    close(fd);
    return st;
}

/* Answers with the thread (ring) that serves it. */
static void on_tid(rh_req *req, void *u)
{
    char body[32];
    int n = snprintf(body, sizeof(body), "%ld", (long)syscall(SYS_gettid));
    rh_respond(req, 200, "text/plain", body, (size_t)n);
}

static int listening_socket(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 128), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static rh_server *serve(rh_config *cfg)
{
    rh_server *srv;
    cfg->quiet = true;
    assert_int_equal(rh_server_new(cfg, &srv), 0);
    assert_int_equal(rh_health_route(srv, NULL), 0);
    assert_int_equal(rh_route(srv, "GET", "/tid", on_tid, NULL), 0);
    assert_int_equal(rh_server_start(srv), 0);
    return srv;
}

static void test_handed_socket_served_by_every_ring(void **state)
{
    uint16_t port;
    int lfd = listening_socket(&port);
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.threads = 2;
    cfg.listen_fds = &lfd;
    cfg.listen_fds_count = 1;
    rh_server *srv = serve(&cfg);
    assert_int_equal(rh_server_port(srv), port);
    int fds[4];
    assert_int_equal(rh_server_listen_fds(srv, fds, 4), 1);
    assert_int_equal(fds[0], lfd);
    assert_int_equal(get_status(port, "/healthz"), 200);
    char first[1024] = "", buf[1024];
    bool two = false;
    for (int i = 0; i < 400 && !two; i++) {
        int fd = dial(port);
        assert_int_equal(ask(fd, "/tid", false, buf, sizeof(buf)), 200);
        close(fd);
        const char *tid = strstr(buf, "\r\n\r\n") + 4;
        if (!first[0])
            snprintf(first, sizeof(first), "%s", tid);
        else
            two = strcmp(first, tid) != 0;
    }
    assert_true(two); /* both rings accepted from the one socket */
    rh_server_shutdown(srv, RH_STOP_DRAIN);
    assert_int_equal(rh_server_wait(srv), 0);
    assert_int_equal(dial(port), -ECONNREFUSED); /* the server closed the socket */
    rh_server_free(srv);
}

static void test_grace_then_drain_cuts_it_short(void **state)
{
    rh_config cfg;
    rh_config_init(&cfg);
    cfg.port = 0;
    cfg.threads = 1;
    cfg.drain_grace_ms = 10000;
    rh_server *srv = serve(&cfg);
    uint16_t port = rh_server_port(srv);
    char buf[1024];
    int kept = dial(port);
    assert_int_equal(ask(kept, "/tid", true, buf, sizeof(buf)), 200);
    assert_null(strstr(buf, "Connection: close"));
    assert_false(rh_server_draining(srv));
    rh_server_stop(srv);
    assert_true(rh_server_draining(srv));
    assert_int_equal(get_status(port, "/healthz"), 503); /* and still accepting */
    assert_int_equal(get_status(port, "/tid"), 200);
    assert_int_equal(ask(kept, "/tid", true, buf, sizeof(buf)), 200);
    assert_non_null(strstr(buf, "Connection: close")); /* kept-alive: retired */
    close(kept);
    rh_server_shutdown(srv, RH_STOP_GRACEFUL); /* not slower, not faster: no change */
    uint64_t t0 = now_ms();
    rh_server_shutdown(srv, RH_STOP_DRAIN);
    assert_int_equal(rh_server_wait(srv), 0);
    assert_true(now_ms() - t0 < 3000); /* the 10 s grace was cut short */
    rh_server_free(srv);
}

static void test_pid_file_written_and_removed_while_ours(void **state)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/rh-test-pid-%d", (int)getpid());
    for (int round = 0; round < 2; round++) {
        rh_config cfg;
        rh_config_init(&cfg);
        cfg.port = 0;
        cfg.threads = 1;
        cfg.pid_file = path;
        rh_server *srv = serve(&cfg);
        char buf[32] = {0};
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_int_equal(atol(buf), (long)getpid());
        if (round == 1) { /* a successor took it over: not ours to remove */
            f = fopen(path, "w");
            fprintf(f, "%d\n", (int)getpid() + 1);
            fclose(f);
        }
        rh_server_free(srv);
        assert_int_equal(access(path, F_OK) == 0, round == 1);
    }
    unlink(path);
}

static void test_listen_fds_env_only_for_us(void **state)
{
    int fds[4];
    char pid[24];
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    assert_int_equal(rh_listen_fds_from_env(fds, 4), 0); /* someone else's */
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1x", 1);
    assert_int_equal(rh_listen_fds_from_env(fds, 4), -EINVAL);
    assert_null(getenv("LISTEN_FDS")); /* cleared either way, as sd_listen_fds(1) does */
    if (fcntl(3, F_GETFD) >= 0)
        return; /* fd 3 is in use here: the socket part cannot run */
    uint16_t port;
    int lfd = listening_socket(&port);
    assert_int_equal(dup2(lfd, 3), 3);
    close(lfd);
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    assert_int_equal(rh_listen_fds_from_env(fds, 4), -EINVAL); /* fd 4 is no listener */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    assert_int_equal(rh_listen_fds_from_env(fds, 4), 1);
    assert_int_equal(fds[0], 3);
    assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
    close(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handed_socket_served_by_every_ring),
        cmocka_unit_test(test_grace_then_drain_cuts_it_short),
        cmocka_unit_test(test_pid_file_written_and_removed_while_ours),
        cmocka_unit_test(test_listen_fds_env_only_for_us),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
