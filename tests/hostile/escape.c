/* Hostile program: escaping the run's end, signalling out.
 *
 * Usage: escape MODE [ARGS...]; see main() for the modes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Double fork + setsid; the grandchild execs `sleep 30` with MARKER as
 * its argv[0] (visible in the host's /proc/N/cmdline if it survived) and
 * keeps the output pipes open. The main process exits at once. */
static int daemonize(const char *marker, int writer) {
    pid_t p = fork();
    if (p == 0) {
        setsid();
        if (fork() == 0) {
            signal(SIGHUP, SIG_IGN);
            signal(SIGTERM, SIG_IGN);
            if (writer) {
                /* Keep writing to the inherited stdout after main is gone. */
                for (;;) {
                    if (write(1, "daemon\n", 7) < 0) _exit(0);
                    usleep(1000);
                }
            }
            execl("/usr/bin/sleep", marker, "30", (char *)NULL);
            _exit(1);
        }
        _exit(0);
    }
    waitpid(p, NULL, 0);
    puts("main exits");
    return 0;
}

/* kill(-1, SIGKILL): everything we may signal. */
static int killall(void) {
    int r = kill(-1, SIGKILL);
    printf("kill(-1) = %d (%s)\n", r, r ? strerror(errno) : "ok");
    puts("after");
    return 0;
}

/* Signals to pid 1 (the run's init) and to our parent. */
static int siginit(void) {
    int sigs[] = {SIGSTOP, SIGTERM, SIGSEGV, SIGKILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        int r = kill(1, sigs[i]);
        printf("kill(1, %d) = %d\n", sigs[i], r);
        r = kill(getppid(), sigs[i]);
        printf("kill(ppid %d, %d) = %d\n", getppid(), sigs[i], r);
    }
    usleep(100000);
    puts("survived");
    return 0;
}

/* SIGKILL to every pid number 2..N but our own; count deliveries. */
static int sweep(int n) {
    int hits = 0;
    for (int pid = 2; pid <= n; pid++) {
        if (pid == getpid()) continue;
        if (kill(pid, SIGKILL) == 0) hits++;
    }
    printf("delivered %d\n", hits);
    return 0;
}

/* A detached process that forks forever after main has exited. */
static int forkstorm(const char *marker) {
    if (fork() == 0) {
        setsid();
        for (;;) {
            pid_t p = fork();
            if (p == 0) execl("/usr/bin/sleep", marker, "30", (char *)NULL);
        }
    }
    usleep(50000);
    puts("main exits");
    return 0;
}

/* N zombies nobody reaps, then exit. */
static int zombies(int n) {
    int made = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) made++;
    }
    printf("zombies %d\n", made);
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "daemon")) return daemonize(argv[2], 0);
    if (!strcmp(m, "daemon_writer")) return daemonize(argv[2], 1);
    if (!strcmp(m, "killall")) return killall();
    if (!strcmp(m, "siginit")) return siginit();
    if (!strcmp(m, "sweep")) return sweep(atoi(argv[2]));
    if (!strcmp(m, "forkstorm")) return forkstorm(argv[2]);
    if (!strcmp(m, "zombies")) return zombies(atoi(argv[2]));
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
