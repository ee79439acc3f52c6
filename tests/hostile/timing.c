/* Hostile program: CPU and wall time.
 *
 * Usage: timing MODE [ARGS...]; see main() for the modes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void spin_forever(void) {
    volatile unsigned long x = 0;
    for (;;) x++;
}

static void *spin_thread(void *arg) {
    (void)arg;
    spin_forever();
    return NULL;
}

/* N threads burning CPU. */
static int threads(int n) {
    pthread_t t;
    for (int i = 1; i < n; i++) pthread_create(&t, NULL, spin_thread, NULL);
    spin_forever();
    return 0;
}

/* K children burning CPU that nobody waits for; the parent sleeps. */
static int orphans(int k) {
    for (int i = 0; i < k; i++)
        if (fork() == 0) spin_forever();
    sleep(60);
    return 0;
}

/* CPU burnt in the kernel: reading /dev/zero into a large buffer. */
static int systime(void) {
    static char buf[1 << 20];
    int fd = open("/dev/zero", O_RDONLY);
    for (;;)
        if (read(fd, buf, sizeof buf) < 0) return 1;
}

/* Spin until this process has used MS ms of CPU, then exit 0 at once. */
static int exit_after(long ms) {
    long long end = ms * 1000000LL;
    volatile unsigned long x = 0;
    while (cpu_ns() < end) x++;
    _exit(0);
}

/* Lower RLIMIT_CPU to 1 s and spin: the kernel sends SIGXCPU. */
static int own_rlimit_cpu(void) {
    struct rlimit r;
    getrlimit(RLIMIT_CPU, &r);
    r.rlim_cur = 1;
    if (setrlimit(RLIMIT_CPU, &r)) {
        printf("setrlimit: %s\n", strerror(errno));
        return 1;
    }
    spin_forever();
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    long a = argc > 2 ? atol(argv[2]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "threads")) return threads((int)a);
    if (!strcmp(m, "orphans")) return orphans((int)a);
    if (!strcmp(m, "systime")) return systime();
    if (!strcmp(m, "pause")) return pause();
    if (!strcmp(m, "select")) return select(0, NULL, NULL, NULL, NULL);
    if (!strcmp(m, "exit_after")) return exit_after(a);
    if (!strcmp(m, "raise")) {
        /* Die of signal A by our own hand (SIG_DFL, unblocked). */
        signal((int)a, SIG_DFL);
        raise((int)a);
        return 0;
    }
    if (!strcmp(m, "own_rlimit_cpu")) return own_rlimit_cpu();
    if (!strcmp(m, "ignore_signals_sleep")) {
        for (int s = 1; s < 65; s++) signal(s, SIG_IGN);
        sleep(60);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
