/* Workload helper for bench/run.py: one small C program, so that no peer pays for an
 * interpreter's start-up inside a measurement. Built by the harness with the system `cc`.
 *
 *   helper idle                 pause forever (dies on TERM/INT: a cooperative app)
 *   helper fifo PATH            write CLOCK_MONOTONIC ns to the FIFO PATH, then idle
 *   helper crash LOG MAX MS     log its start time to LOG, live MS ms, log its exit time and
 *                               exit 1; once LOG holds MAX starts, idle instead of exiting
 *   helper spam BYTES           write BYTES of 100-byte lines to stdout, 64 KiB at a time
 *   helper zombies N OUT        make N orphan zombies of the init, time until the init has
 *                               reaped them all, write the time (ns) to OUT
 *   helper sink BYTES           read stdin until BYTES bytes (or EOF) were read, then exit
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void idle(void) {
    for (;;) pause();
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cmd_fifo(const char *path) {
    long long t = now_ns();
    int fd = open(path, O_WRONLY);
    if (fd < 0) { perror("helper fifo: open"); return 1; }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld\n", t);
    write_all(fd, buf, (size_t)n);
    close(fd);
    idle();
    return 0;
}

static void log_line(int fd, char tag, long long t) {
    char buf[32];
    /* Fixed width (22 bytes), so the harness can count lines from the file size. */
    int n = snprintf(buf, sizeof buf, "%c%020lld\n", tag, t);
    write_all(fd, buf, (size_t)n);
}

/* Logs "S<ns>" at start; after `live_ms`, logs "E<ns>" and exits 1. Once LOG holds `max` starts
 * it idles instead. The harness measures each E → next S: the supervisor's restart latency. */
static int cmd_crash(const char *path, long max, long live_ms) {
    long long t = now_ns();
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) { perror("helper crash: open"); return 2; }
    log_line(fd, 'S', t);
    struct stat st;
    fstat(fd, &st);
    if (st.st_size / 22 >= 2 * max - 1) idle();
    struct timespec nap = {live_ms / 1000, (live_ms % 1000) * 1000000L};
    while (nanosleep(&nap, &nap) < 0 && errno == EINTR) {}
    log_line(fd, 'E', now_ns());
    return 1;
}

static int cmd_spam(long long bytes) {
    enum { LINE = 100, CHUNK = 655 * LINE };
    static char buf[CHUNK];
    for (int i = 0; i < CHUNK; i++) buf[i] = (i % LINE == LINE - 1) ? '\n' : 'a' + (i % LINE) % 26;
    while (bytes > 0) {
        size_t n = bytes < CHUNK ? (size_t)bytes : CHUNK;
        if (write_all(1, buf, n) < 0) { perror("helper spam: write"); return 1; }
        bytes -= (long long)n;
    }
    return 0;
}

static int cmd_sink(long long bytes) {
    static char buf[1 << 16];
    long long got = 0;
    while (got < bytes) {
        ssize_t r = read(0, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += r;
    }
    return got >= bytes ? 0 : 1;
}

/* A parent P forks N children that exit at once. P waits (without reaping, WNOWAIT) until each
 * is a zombie, sends their pids over a pipe and exits: the N zombies are re-parented to the init
 * in one go. We then wait until every one of them is gone (kill(pid, 0) fails with ESRCH). */
static int cmd_zombies(long n, const char *out) {
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int pfd[2];
    if (!pids || pipe(pfd) < 0) { perror("helper zombies"); return 1; }
    pid_t p = fork();
    if (p < 0) { perror("helper zombies: fork"); return 1; }
    if (p == 0) {
        close(pfd[0]);
        for (long i = 0; i < n; i++) {
            pid_t c = fork();
            if (c < 0) { perror("helper zombies: fork child"); _exit(1); }
            if (c == 0) _exit(0);
            pids[i] = c;
        }
        for (long i = 0; i < n; i++) {
            siginfo_t si;
            while (waitid(P_PID, (id_t)pids[i], &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
        }
        write_all(pfd[1], (const char *)pids, (size_t)n * sizeof *pids);
        _exit(0);
    }
    close(pfd[1]);
    size_t want = (size_t)n * sizeof *pids, got = 0;
    while (got < want) {
        ssize_t r = read(pfd[0], (char *)pids + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { fprintf(stderr, "helper zombies: short read\n"); return 1; }
        got += (size_t)r;
    }
    /* P exits right after its write: its exit re-parents the zombies. Timing starts here. */
    long long t0 = now_ns();
    waitpid(p, NULL, 0);
    struct timespec nap = {0, 20000};
    for (long i = 0; i < n; i++) {
        while (kill(pids[i], 0) == 0) nanosleep(&nap, NULL);
    }
    long long dt = now_ns() - t0;
    FILE *f = fopen(out, "w");
    if (!f) { perror("helper zombies: out"); return 1; }
    fprintf(f, "%lld\n", dt);
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) goto usage;
    const char *c = argv[1];
    if (!strcmp(c, "idle")) idle();
    if (!strcmp(c, "fifo") && argc == 3) return cmd_fifo(argv[2]);
    if (!strcmp(c, "crash") && argc == 5) return cmd_crash(argv[2], atol(argv[3]), atol(argv[4]));
    if (!strcmp(c, "spam") && argc == 3) return cmd_spam(atoll(argv[2]));
    if (!strcmp(c, "sink") && argc == 3) return cmd_sink(atoll(argv[2]));
    if (!strcmp(c, "zombies") && argc == 4) return cmd_zombies(atol(argv[2]), argv[3]);
usage:
    fprintf(stderr, "usage: helper idle|fifo PATH|crash LOG MAX MS|spam BYTES|sink BYTES|zombies N OUT\n");
    return 2;
}
