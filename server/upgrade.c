/* Zero-downtime upgrade, the nginx way, and the pid file it relies on.
 *
 * rh_server_upgrade (the old process, on SIGUSR2 in the binary) starts a fresh copy of the
 * program with the listening sockets at fd 3.. in the LISTEN_FDS form, plus the write end of
 * a pipe whose number is in RINGHTTP_READY_FD. The new process adopts the sockets
 * (rh_listen_fds_from_env), and once its rings accept and its pid file names it,
 * rh_server_start writes one byte to that pipe. Only then does the old process stop
 * accepting (RH_STOP_HANDOFF) and drain: both accept from the same sockets meanwhile, so no
 * connection is refused or lost. If the new process fails (exec error, exit, or no word
 * within the timeout) the old one has changed nothing and goes on serving. */
#include <errno.h>
#include <fcntl.h>
#include <mimalloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/srv.h"

#define READY_ENV "RINGHTTP_READY_FD"
#define SD_LISTEN_FDS_START 3

extern char **environ;

/* ---- the pid file ---- */

int srv_pid_file_write(rh_server *srv)
{
    const char *path = srv->cfg.pid_file;
    if (!path)
        return 0;
    char tmp[4096], line[24];
    int n = snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int ret = write(fd, line, (size_t)len) == len ? 0 : -EIO;
    close(fd);
    /* rename: a reader sees the old pid or the new one, never a half-written file */
    if (ret == 0 && rename(tmp, path) < 0)
        ret = -errno;
    if (ret < 0)
        unlink(tmp);
    return ret;
}

/* At free: removed only if it still names this process (after an upgrade it names the
 * successor, which owns it now). */
void srv_pid_file_remove(rh_server *srv)
{
    const char *path = srv->cfg.pid_file;
    if (!path || !srv->workers)
        return;
    char buf[24] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n > 0 && atol(buf) == (long)getpid())
        unlink(path);
}

/* ---- the new process's side ---- */

/* At rh_server_new, before any thread of ours runs (the environment is not thread-safe):
 * the predecessor's pipe, only with inherited sockets and only if it is a pipe. */
int srv_upgrade_take_ready_fd(const rh_config *cfg)
{
    const char *s = getenv(READY_ENV);
    if (!s)
        return -1;
    int fd = atoi(s);
    unsetenv(READY_ENV); /* not for our own children */
    struct stat st;
    if (cfg->listen_fds_count == 0 || fd < SD_LISTEN_FDS_START || fstat(fd, &st) < 0 ||
        !S_ISFIFO(st.st_mode))
        return -1;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

void srv_upgrade_notify_ready(rh_server *srv)
{
    if (srv->ready_fd < 0)
        return;
    char one = '1';
    ssize_t n = write(srv->ready_fd, &one, 1);
    (void)n; /* the predecessor gone or given up: nothing to tell */
    close(srv->ready_fd);
    srv->ready_fd = -1;
}

/* ---- the old process's side ---- */

/* The environment for the new process: ours without a stale LISTEN_* / READY, plus ours.
 * pid_slot is filled in by the child (it learns its pid only after fork). */
struct child_env {
    char **envp;
    char listen_fds[32], listen_pid[32], ready[48];
};

static bool env_dropped(const char *kv)
{
    static const char *const names[] = {"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
                                        READY_ENV "="};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strncmp(kv, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

static int child_env_build(struct child_env *ce, unsigned nfds)
{
    size_t n = 0;
    while (environ[n])
        n++;
    ce->envp = mi_calloc(n + 4, sizeof(char *)); /* owner: rh_server_upgrade */
    if (!ce->envp)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_dropped(environ[i]))
            ce->envp[k++] = environ[i];
    snprintf(ce->listen_fds, sizeof(ce->listen_fds), "LISTEN_FDS=%u", nfds);
    snprintf(ce->ready, sizeof(ce->ready), READY_ENV "=%u", SD_LISTEN_FDS_START + nfds);
    strcpy(ce->listen_pid, "LISTEN_PID=");
    ce->envp[k++] = ce->listen_fds;
    ce->envp[k++] = ce->listen_pid;
    ce->envp[k++] = ce->ready;
    ce->envp[k] = NULL;
    return 0;
}

/* Async-signal-safe decimal, for the child between fork and exec. */
static void put_pid(char *out, pid_t pid)
{
    char digits[16];
    int n = 0;
    do {
        digits[n++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0);
    while (n > 0)
        *out++ = digits[--n];
    *out = 0;
}

/* In the child, between fork and exec: only async-signal-safe calls. The fds go to 3..,
 * the pipe right after them, via copies above the target range so no source is overwritten
 * before it is moved. */
static void child_exec(const char *path, char *const argv[], struct child_env *ce,
                       const int *fds, unsigned n, int ready_fd)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the parent blocks signals for sigwait */
    signal(SIGPIPE, SIG_DFL);
    int high[RH_MAX_LISTEN_FDS + 1];
    int lowest = SD_LISTEN_FDS_START + (int)n + 1;
    for (unsigned i = 0; i <= n; i++) {
        high[i] = fcntl(i < n ? fds[i] : ready_fd, F_DUPFD_CLOEXEC, lowest);
        if (high[i] < 0)
            _exit(126);
    }
    for (unsigned i = 0; i <= n; i++) /* dup2 clears FD_CLOEXEC on the target */
        if (dup2(high[i], SD_LISTEN_FDS_START + (int)i) < 0)
            _exit(126);
    put_pid(ce->listen_pid + strlen("LISTEN_PID="), getpid());
    execve(path, argv, ce->envp);
    _exit(127);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for the new process's byte: 0, or -errno (it exited: EOF; or the timeout). */
static int wait_ready(int rfd, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = rfd, .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            continue;
        char c;
        ssize_t got = read(rfd, &c, 1);
        if (got == 1)
            return 0;
        if (got < 0 && errno == EINTR)
            continue;
        return -ECHILD; /* EOF: every write end closed, it exited without serving */
    }
}

/* A new process that failed: make sure it is gone and reaped (bounded). */
static void reap_failed(pid_t pid, int why)
{
    if (why == -ETIMEDOUT)
        kill(pid, SIGKILL); /* hung: no half-started successor on our sockets */
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            return;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        if (i == 200)
            kill(pid, SIGKILL); /* said it failed yet lingers */
    }
}

int rh_server_upgrade(rh_server *srv, const char *path, char *const argv[],
                      unsigned timeout_ms)
{
    int fds[RH_MAX_LISTEN_FDS];
    if (atomic_load(&srv->stopping) || !path || !argv || !argv[0])
        return -EINVAL;
    int n = rh_server_listen_fds(srv, fds, RH_MAX_LISTEN_FDS);
    if (n <= 0)
        return -EBADF;
    if (n > RH_MAX_LISTEN_FDS)
        return -E2BIG; /* more rings than a successor takes sockets: passing some would
                        * strand the connections queued on the others */
    struct child_env ce;
    int pipefd[2];
    int ret = child_env_build(&ce, (unsigned)n);
    if (ret < 0)
        return ret;
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        ret = -errno;
        mi_free(ce.envp);
        return ret;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(path, argv, &ce, fds, (unsigned)n, pipefd[1]);
    close(pipefd[1]);
    mi_free(ce.envp);
    if (pid < 0) {
        ret = -errno;
        close(pipefd[0]);
        return ret;
    }
    ret = wait_ready(pipefd[0], timeout_ms);
    close(pipefd[0]);
    if (ret < 0) {
        reap_failed(pid, ret);
        return ret;
    }
    return (int)pid;
}
