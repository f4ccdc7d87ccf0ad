/* bench/floor: the floor for bench/run's small-response scenarios, a minimal io_uring
 * responder with no HTTP parsing. One thread, one ring (SINGLE_ISSUER + DEFER_TASKRUN when
 * the kernel has them), multishot accept, multishot recv into a buffer ring, and one send
 * per connection with everything answered so far. A request is "\r\n\r\n" (a matcher that
 * survives buffer boundaries); each one gets the same canned 200 response with the body
 * given by --body (default "Hello, World!") and a Date refreshed once per loop iteration.
 * The listener has TCP_NODELAY and TCP_DEFER_ACCEPT, like ringhttp's.
 *
 * Not a server: no request bodies, no Connection: close, no timeouts. It shows what this
 * kernel and loopback cost per keep-alive request when user space does almost nothing, so
 * the table says how close ringhttp is to it.
 *
 *   floor --port 8080 [--host 127.0.0.1] [--body TEXT] [--content-type TYPE]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 20000
#define NBUFS 1024u
#define BUF_SIZE 4096u
#define OUT_CAP (64u * 1024u)
#define BGID 0

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };

struct fconn {
    char *out;      /* responses not yet handed to the kernel (malloc, OUT_CAP) */
    char *sending;  /* the buffer a send in flight reads (malloc, OUT_CAP) */
    unsigned out_len, send_len, send_off;
    unsigned match; /* how much of "\r\n\r\n" the last bytes matched */
    int open, sending_now, closing;
};

static struct fconn *conns; /* by fd; the only state, owned by main's thread */
static char resp[512];
static unsigned resp_len, date_off;
static volatile sig_atomic_t stop;

static uint64_t ud(int op, int fd) { return ((uint64_t)fd << 8) | (uint64_t)op; }

static void on_signal(int sig) { (void)sig; stop = 1; }

static void refresh_date(void)
{
    static time_t last;
    time_t now = time(NULL);
    if (now == last)
        return;
    last = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    char d[32];
    strftime(d, sizeof(d), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    memcpy(resp + date_off, d, 29);
}

static void build_response(const char *body, const char *ctype)
{
    resp_len = (unsigned)snprintf(resp, sizeof(resp),
                                  "HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: %s\r\n"
                                  "Content-Length: %zu\r\nDate: ",
                                  ctype, strlen(body));
    date_off = resp_len;
    resp_len += (unsigned)snprintf(resp + resp_len, sizeof(resp) - resp_len,
                                   "Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n%s", body);
    refresh_date();
}

static struct io_uring_sqe *sqe_get(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

static void arm_recv(struct io_uring *ring, int fd)
{
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud(OP_RECV, fd));
}

static void flush(struct io_uring *ring, int fd)
{
    struct fconn *c = &conns[fd];
    if (c->sending_now || c->out_len == 0)
        return;
    char *t = c->sending;
    c->sending = c->out;
    c->out = t;
    c->send_len = c->out_len;
    c->send_off = 0;
    c->out_len = 0;
    c->sending_now = 1;
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_send(sqe, fd, c->sending, c->send_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(OP_SEND, fd));
}

static void conn_close(int fd)
{
    struct fconn *c = &conns[fd];
    if (c->sending_now) { /* the send's completion closes it */
        c->closing = 1;
        return;
    }
    free(c->out);
    free(c->sending);
    memset(c, 0, sizeof(*c));
    close(fd);
}

/* Counts requests ("\r\n\r\n") in data and queues one response per request. */
static int on_data(int fd, const char *p, unsigned n)
{
    struct fconn *c = &conns[fd];
    static const char end[] = "\r\n\r\n";
    for (unsigned i = 0; i < n; i++) {
        if (p[i] == end[c->match])
            c->match++;
        else
            c->match = p[i] == '\r';
        if (c->match == 4) {
            c->match = 0;
            if (c->out_len + resp_len > OUT_CAP)
                return -1;
            memcpy(c->out + c->out_len, resp, resp_len);
            c->out_len += resp_len;
        }
    }
    return 0;
}

static int listen_on(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, defer = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
        perror("floor: listen");
        exit(1);
    }
    return fd;
}

/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves and register it. */
static struct io_uring_buf_ring *setup_bufs(struct io_uring *ring, char **bufs)
{
    size_t sz = NBUFS * sizeof(struct io_uring_buf);
    struct io_uring_buf_ring *br =
        mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    *bufs = malloc((size_t)NBUFS * BUF_SIZE);
    if (br == MAP_FAILED || !*bufs)
        return NULL;
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br,
                                   .ring_entries = NBUFS, .bgid = BGID};
    if (io_uring_register_buf_ring(ring, &reg, 0) < 0)
        return NULL;
    io_uring_buf_ring_init(br);
    for (unsigned i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, *bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(NBUFS), (int)i);
    io_uring_buf_ring_advance(br, NBUFS);
    return br;
}

static void on_recv(struct io_uring *ring, struct io_uring_buf_ring *br, char *bufs, int fd,
                    const struct io_uring_cqe *cqe)
{
    int more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        char *b = bufs + (size_t)bid * BUF_SIZE;
        int bad = on_data(fd, b, (unsigned)cqe->res);
        io_uring_buf_ring_add(br, b, BUF_SIZE, (unsigned short)bid,
                              io_uring_buf_ring_mask(NBUFS), 0);
        io_uring_buf_ring_advance(br, 1);
        if (bad) {
            shutdown(fd, SHUT_RDWR);
            return;
        }
        flush(ring, fd);
        if (!more)
            arm_recv(ring, fd);
        return;
    }
    if (cqe->res == -ENOBUFS) {
        arm_recv(ring, fd);
        return;
    }
    if (!more)
        conn_close(fd); /* EOF or error */
}

static void on_send(struct io_uring *ring, int fd, int res)
{
    struct fconn *c = &conns[fd];
    c->sending_now = 0;
    if (c->closing) {
        c->closing = 0;
        conn_close(fd);
        return;
    }
    if (res <= 0) { /* the peer left: the recv's end closes it */
        shutdown(fd, SHUT_RDWR);
        return;
    }
    c->send_off += (unsigned)res;
    if (c->send_off < c->send_len) { /* short: the rest first */
        c->sending_now = 1;
        struct io_uring_sqe *sqe = sqe_get(ring);
        io_uring_prep_send(sqe, fd, c->sending + c->send_off, c->send_len - c->send_off,
                           MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud(OP_SEND, fd));
        return;
    }
    flush(ring, fd);
}

static void on_accept(struct io_uring *ring, int lfd, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        struct io_uring_sqe *sqe = sqe_get(ring);
        io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, lfd));
    }
    int fd = cqe->res;
    if (fd < 0)
        return;
    if (fd >= MAX_FDS) {
        close(fd);
        return;
    }
    struct fconn *c = &conns[fd];
    c->out = malloc(OUT_CAP);
    c->sending = malloc(OUT_CAP);
    if (!c->out || !c->sending) {
        conn_close(fd);
        return;
    }
    c->open = 1;
    arm_recv(ring, fd);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *body = "Hello, World!", *ctype = "text/plain";
    int port = 8080;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!strcmp(argv[i], "--body"))
            body = argv[i + 1];
        else if (!strcmp(argv[i], "--content-type"))
            ctype = argv[i + 1];
    }
    build_response(body, ctype);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    conns = calloc(MAX_FDS, sizeof(*conns));
    struct io_uring ring;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER |
                                         IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
                                .cq_entries = 65536};
    p.flags |= IORING_SETUP_CQSIZE;
    if (io_uring_queue_init_params(4096, &ring, &p) < 0) {
        struct io_uring_params q = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 65536};
        if (io_uring_queue_init_params(4096, &ring, &q) < 0) {
            fprintf(stderr, "floor: io_uring_queue_init failed\n");
            return 1;
        }
    }
    char *bufs;
    struct io_uring_buf_ring *br = setup_bufs(&ring, &bufs);
    if (!conns || !br) {
        fprintf(stderr, "floor: out of memory or no buffer ring\n");
        return 1;
    }
    int lfd = listen_on(host, port);
    struct io_uring_sqe *sqe = sqe_get(&ring);
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, lfd));
    while (!stop) {
        refresh_date();
        if (io_uring_submit_and_wait(&ring, 1) < 0 && errno != EINTR && !stop)
            continue;
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            int op = (int)(cqe->user_data & 0xff), fd = (int)(cqe->user_data >> 8);
            if (op == OP_ACCEPT)
                on_accept(&ring, lfd, cqe);
            else if (op == OP_RECV)
                on_recv(&ring, br, bufs, fd, cqe);
            else if (op == OP_SEND)
                on_send(&ring, fd, cqe->res);
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }
    io_uring_queue_exit(&ring);
    return 0;
}
