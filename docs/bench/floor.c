/*
 * The floor of a durable login over a Unix socket on this machine (BENCHMARKS.md, "Issue 13,
 * third session"): the least a store-in-another-process design can cost, with no SQLite, no
 * JSON, no authorization, no audit and no thread handoff.
 *
 * A server process in one thread: blocking accept(2), SO_PEERCRED, recv(2) of the request, N
 * frames written as SQLite writes a WAL frame (a 24-byte header and a 4 KiB page, one pwrite(2)
 * each) into a 4 MiB file already written and synced, fdatasync(2), send(2) of a 60-byte reply,
 * close(2). A client process in one thread does what pam_totp.so does per login: socket(2),
 * connect(2), SO_PEERCRED, one sendmsg(2) of a 191-byte request, poll(2), recv(2), close(2).
 *
 * Prints the client's latency (p50, p99, mean) and the server's CPU time per request
 * (getrusage, user + system). Usage:
 *     gcc -O2 -o /tmp/floor docs/bench/floor.c && /tmp/floor DIR FRAMES REQUESTS [interleave]
 * DIR: where the file and the socket go (the disk matters: /tmp, or /dev/shm for no disk).
 * FRAMES: 0 for no write and no sync at all (the socket round trip alone).
 * interleave: between two requests the client also updates a small file the way
 * google-authenticator does at each login (a new file with O_CREAT|O_EXCL, 116 bytes written,
 * fsync, rename over the old one), timed apart, as in the PAM bench where the modules take
 * turns: the server sits idle between requests and shares the disk's journal with that update.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define FRAME (24 + 4096)
#define SIZE (4 * 1024 * 1024)

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double cpu_us(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec +
           u.ru_stime.tv_usec;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void serve(int listener, const char *path, int frames, int requests, int report) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("open");
    char *zero = calloc(1, SIZE);
    if (pwrite(fd, zero, SIZE, 0) != SIZE || fsync(fd) != 0) die("prepare");
    char header[24], page[4096], request[4096], reply[60];
    memset(header, 'h', sizeof header);
    memset(page, 'p', sizeof page);
    memset(reply, 'r', sizeof reply);
    off_t offset = 32;
    double start = 0;
    for (int i = 0; i < requests; i++) {
        if (i == requests / 10) start = cpu_us(); /* the first tenth warms up */
        int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) die("accept");
        struct ucred peer;
        socklen_t len = sizeof peer;
        if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) die("peercred");
        if (recv(c, request, sizeof request, 0) <= 0) die("recv");
        for (int f = 0; f < frames; f++) {
            if (offset + FRAME > SIZE) offset = 32;
            if (pwrite(fd, header, sizeof header, offset) < 0) die("pwrite");
            if (pwrite(fd, page, sizeof page, offset + 24) < 0) die("pwrite");
            offset += FRAME;
        }
        if (frames > 0 && fdatasync(fd) != 0) die("fdatasync");
        if (send(c, reply, sizeof reply, MSG_NOSIGNAL) < 0) die("send");
        close(c);
    }
    double per = (cpu_us() - start) / (requests - requests / 10);
    if (write(report, &per, sizeof per) != sizeof per) die("report");
    close(fd);
    unlink(path);
}

int main(int argc, char **argv) {
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "interleave") == 0)) {
        fprintf(stderr, "usage: %s DIR FRAMES REQUESTS [interleave]\n", argv[0]);
        return 2;
    }
    int frames = atoi(argv[2]), requests = atoi(argv[3]), interleave = argc == 5;
    char file_tmp[4096], file_final[4096], content[116];
    snprintf(file_tmp, sizeof file_tmp, "%s/floor-%d.secret~", argv[1], getpid());
    snprintf(file_final, sizeof file_final, "%s/floor-%d.secret", argv[1], getpid());
    memset(content, 's', sizeof content);
    double *update = calloc(requests, sizeof *update);
    char sock_path[108], file_path[4096];
    snprintf(sock_path, sizeof sock_path, "%s/floor-%d.sock", argv[1], getpid());
    snprintf(file_path, sizeof file_path, "%s/floor-%d.wal", argv[1], getpid());
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, sock_path, sizeof addr.sun_path - 1);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(sock_path);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, 128) != 0)
        die("listen");
    int pipefd[2];
    if (pipe(pipefd) != 0) die("pipe");
    pid_t server = fork();
    if (server == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a client that failed */
        serve(listener, file_path, frames, requests, pipefd[1]);
        _exit(0);
    }
    close(listener);
    char request[191], reply[1024];
    memset(request, 'q', sizeof request);
    double *lat = calloc(requests, sizeof *lat);
    for (int i = 0; i < requests; i++) {
        double t0 = now_us();
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
        struct ucred peer;
        socklen_t len = sizeof peer;
        if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) die("peercred");
        struct iovec iov[2] = {{request, 4}, {request + 4, sizeof request - 4}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        if (sendmsg(s, &msg, MSG_NOSIGNAL) < 0) die("sendmsg");
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 3000) != 1) die("poll");
        if (recv(s, reply, sizeof reply, MSG_DONTWAIT) <= 0) die("recv");
        close(s);
        lat[i] = now_us() - t0;
        if (interleave) {
            double t1 = now_us();
            int f = open(file_tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
            if (f < 0 || write(f, content, sizeof content) != sizeof content || fsync(f) != 0)
                die("update");
            close(f);
            if (rename(file_tmp, file_final) != 0) die("rename");
            update[i] = now_us() - t1;
        }
    }
    unlink(file_final);
    double per;
    if (read(pipefd[0], &per, sizeof per) != sizeof per) die("read report");
    waitpid(server, NULL, 0);
    unlink(sock_path);
    int warm = requests / 10, n = requests - warm;
    double sum = 0;
    for (int i = warm; i < requests; i++) sum += lat[i];
    qsort(lat + warm, n, sizeof *lat, cmp);
    printf("%s frames=%d requests=%d%s: latency p50 %.0f us p99 %.0f us mean %.0f us; "
           "server CPU %.1f us/request",
           argv[1], frames, n, interleave ? " interleaved" : "", lat[warm + n / 2],
           lat[warm + n * 99 / 100], sum / n, per);
    if (interleave) {
        qsort(update + warm, n, sizeof *update, cmp);
        printf("; file update + fsync + rename p50 %.0f us", update[warm + n / 2]);
    }
    printf("\n");
    return 0;
}
