/* Hostile program: resource exhaustion.
 *
 * Usage: exhaust MODE [ARGS...]; see main() for the modes. Output lines are
 * what the catalogue (tests/hostile.rs) asserts on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void touch(char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
}

/* fork until the end of time: every process keeps forking. */
static int forkbomb(void) {
    for (;;) fork();
    return 0;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

/* Threads until pthread_create fails; report how many were made. */
static int threadbomb(void) {
    long n = 0;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (;;) {
        pthread_t t;
        int e = pthread_create(&t, &a, sleeper, NULL);
        if (e) {
            printf("threads %ld stopped by %s\n", n, e == EAGAIN ? "EAGAIN" : strerror(e));
            fflush(stdout);
            _exit(0);
        }
        n++;
    }
}

/* malloc + touch MB megabytes. */
static int touchmem(long mb) {
    size_t n = (size_t)mb << 20;
    char *p = malloc(n);
    if (!p) {
        puts("malloc failed");
        return 3;
    }
    touch(p, n);
    printf("touched %ld MiB\n", mb);
    return 0;
}

/* Reserve MB megabytes of address space, touch one page of it. */
static int reserve(long mb) {
    size_t n = (size_t)mb << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap failed: %s\n", strerror(errno));
        return 3;
    }
    p[0] = 1;
    p[n - 1] = 1;
    printf("reserved %ld MiB\n", mb);
    return 0;
}

/* K children, each touching MB megabytes (each alone under the limit),
 * all alive at once; the parent exits 0 once they reported (or stopped). */
static int children(int k, long mb) {
    int p[2];
    if (pipe(p)) return 4;
    for (int i = 0; i < k; i++) {
        if (fork() == 0) {
            size_t n = (size_t)mb << 20;
            char *m = malloc(n);
            if (!m) _exit(3);
            touch(m, n);
            if (write(p[1], "x", 1) < 0) _exit(5);
            for (;;) pause();
        }
    }
    close(p[1]);
    /* Count reports for up to 2 s of silence: a child the OOM killer took
     * never reports. */
    char c;
    int got = 0;
    struct pollfd pf = {p[0], POLLIN, 0};
    while (got < k && poll(&pf, 1, 2000) > 0 && read(p[0], &c, 1) == 1) got++;
    printf("children touched %d\n", got);
    return 0;
}

/* open() until it fails. */
static int fdflood(void) {
    long n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            printf("fds %ld stopped by %s\n", n, errno == EMFILE ? "EMFILE" : strerror(errno));
            return 0;
        }
        n++;
    }
}

/* pipes until they fail, each filled until it would block; from K
 * processes at once. */
static long fill_pipes(void) {
    static char buf[65536];
    long bytes = 0;
    for (;;) {
        int p[2];
        if (pipe2(p, O_NONBLOCK)) break;
        for (;;) {
            ssize_t r = write(p[1], buf, sizeof buf);
            if (r <= 0) break;
            bytes += r;
        }
    }
    return bytes;
}
static int pipeflood(int k) {
    for (int i = 1; i < k; i++)
        if (fork() == 0) {
            fill_pipes();
            for (;;) pause();
        }
    long b = fill_pipes();
    printf("pipes filled %ld bytes\n", b);
    fflush(stdout);
    sleep(1);
    return 0;
}

/* Unix socket buffers filled to the brim, from K processes. */
static long fill_sockets(void) {
    static char buf[65536];
    long total = 0;
    for (;;) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) break;
        int big = 1 << 30;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        for (;;) {
            ssize_t r = write(sv[0], buf, sizeof buf);
            if (r <= 0) break;
            total += r;
        }
    }
    return total;
}
static int sockflood(int k) {
    for (int i = 1; i < k; i++)
        if (fork() == 0) {
            fill_sockets();
            for (;;) pause();
        }
    long t = fill_sockets();
    printf("sockets filled %ld bytes\n", t);
    fflush(stdout);
    sleep(1);
    return 0;
}

/* inotify instances and watches until failure. */
static int inotifyflood(void) {
    long n = 0;
    for (;;) {
        int fd = syscall(SYS_inotify_init1, 0);
        if (fd < 0) {
            printf("inotify %ld stopped by %s\n", n, strerror(errno));
            return 0;
        }
        n++;
    }
}

/* Empty files in DIR until creation fails. */
static int inodes(const char *dir) {
    char p[256];
    for (long i = 0;; i++) {
        snprintf(p, sizeof p, "%s/f%ld", dir, i);
        int fd = open(p, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) {
            printf("files %ld stopped by %s\n", i, strerror(errno));
            return 0;
        }
        close(fd);
    }
}

/* SysV objects created and deliberately left behind: a touched MB-megabyte
 * shared memory segment (also with a fixed key), a semaphore set and a
 * message queue holding a message. */
static int sysvleak(long mb) {
    size_t n = (size_t)mb << 20;
    int id = shmget(IPC_PRIVATE, n, IPC_CREAT | 0666);
    int id2 = shmget(0x5a5a0001, 4096, IPC_CREAT | 0666);
    if (id < 0 || id2 < 0) {
        printf("shmget: %s\n", strerror(errno));
        return 1;
    }
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) {
        printf("shmat: %s\n", strerror(errno));
        return 1;
    }
    touch(p, n);
    int sem = semget(0x5a5a0002, 4, IPC_CREAT | 0666);
    int q = msgget(0x5a5a0003, IPC_CREAT | 0666);
    struct {
        long type;
        char text[64];
    } m = {1, "left behind"};
    int sent = q >= 0 ? msgsnd(q, &m, sizeof m.text, IPC_NOWAIT) : -1;
    printf("leaked shm %d %d sem %d msg %d sent %d\n", id, id2, sem, q, sent);
    return 0;
}

static long depth;
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static int recurse(int x) {
    volatile char pad[1024];
    pad[0] = (char)x;
    pad[1023] = (char)x;
    depth++;
    return recurse(x + pad[0]) + pad[1023];
}

/* N children that crash (SIGSEGV, SIGABRT, SIGBUS, SIGILL rotating); then
 * count core files in the working directory. */
static int crashloop(int n) {
    int signaled = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            switch (i % 4) {
            case 0: { volatile int *q = NULL; *q = 1; break; }
            case 1: abort();
            case 2: raise(SIGBUS); break;
            default: __builtin_trap();
            }
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        if (WIFSIGNALED(st)) signaled++;
    }
    int cores = 0;
    DIR *d = opendir(".");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "core", 4)) cores++;
    printf("crashes %d cores %d\n", signaled, cores);
    return 0;
}

/* Lower RLIMIT_CORE (the sandbox sets 1, which is what keeps a host's piped
 * core_pattern handler from running), then crash. */
static int corecrash(void) {
    struct rlimit r = {0, 0};
    int rc = setrlimit(RLIMIT_CORE, &r);
    printf("setrlimit(RLIMIT_CORE, 0): %s\n", rc ? strerror(errno) : "ok");
    fflush(stdout);
    volatile int *q = NULL;
    *q = 1;
    return 0;
}

static const char *ename(int e) {
    return e == EAGAIN ? "EAGAIN" : e == ENOSPC ? "ENOSPC" : e == EMFILE ? "EMFILE"
         : e == ENOMEM ? "ENOMEM" : e == EPERM ? "EPERM" : strerror(e);
}

/* Queue a blocked real-time signal to ourselves until refused, then hold
 * the queued signals for `hold` seconds. */
static int sigqueueflood(long hold) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &s, NULL);
    long n = 0;
    union sigval v = {0};
    while (sigqueue(getpid(), SIGRTMIN, v) == 0) n++;
    printf("queued %ld stopped by %s\n", n, ename(errno));
    printf("holding\n");
    fflush(stdout);
    sleep((unsigned)hold);
    return 0;
}

/* Add epoll watches (every eventfd in every epoll instance) until refused,
 * then hold them for `hold` seconds. */
static int epollflood(long hold) {
    enum { FDS = 110 };
    int ev[FDS], ep[FDS];
    for (int i = 0; i < FDS; i++) {
        ev[i] = eventfd(0, EFD_CLOEXEC);
        ep[i] = epoll_create1(EPOLL_CLOEXEC);
        if (ev[i] < 0 || ep[i] < 0) { printf("setup: %s\n", ename(errno)); return 1; }
    }
    long n = 0;
    int err = 0;
    for (int i = 0; i < FDS && !err; i++)
        for (int j = 0; j < FDS; j++) {
            struct epoll_event e = {.events = EPOLLIN};
            if (epoll_ctl(ep[i], EPOLL_CTL_ADD, ev[j], &e)) { err = errno; break; }
            n++;
        }
    printf("watches %ld stopped by %s\n", n, err ? ename(err) : "nothing");
    printf("holding\n");
    fflush(stdout);
    sleep((unsigned)hold);
    return 0;
}

/* What a program needs from the per-user counters others could exhaust:
 * one epoll watch, a POSIX timer, one queued signal. */
static int peruser(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC), ev = eventfd(0, EFD_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN};
    printf("epoll_ctl: %s\n", epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) ? ename(errno) : "ok");
    timer_t t;
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 1};
    printf("timer_create: %s\n", syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &t) ? ename(errno) : "ok");
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &s, NULL);
    union sigval v = {0};
    printf("sigqueue: %s\n", sigqueue(getpid(), SIGRTMIN, v) ? ename(errno) : "ok");
    return 0;
}

/* The per-user rlimits the run got, then 16 MiB locked with mlock and with
 * SHM_LOCK (both over an 8 MiB RLIMIT_MEMLOCK). */
static int peruserlimits(void) {
    struct rlimit r;
    int res[] = {RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE, RLIMIT_MEMLOCK, RLIMIT_NPROC};
    const char *names[] = {"sigpending", "msgqueue", "memlock", "nproc"};
    for (int i = 0; i < 4; i++) {
        getrlimit(res[i], &r);
        printf("%s %llu/%llu\n", names[i], (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max);
    }
    size_t n = 16 << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mlock 16M: %s\n", mlock(p, n) ? ename(errno) : "ok");
    int id = shmget(IPC_PRIVATE, n, IPC_CREAT | 0600);
    printf("SHM_LOCK 16M: %s\n", shmctl(id, SHM_LOCK, NULL) ? ename(errno) : "ok");
    shmctl(id, IPC_RMID, NULL);
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    long a = argc > 2 ? atol(argv[2]) : 0;
    long b = argc > 3 ? atol(argv[3]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "forkbomb")) return forkbomb();
    if (!strcmp(m, "threadbomb")) return threadbomb();
    if (!strcmp(m, "touch")) return touchmem(a);
    if (!strcmp(m, "reserve")) return reserve(a);
    if (!strcmp(m, "children")) return children((int)a, b);
    if (!strcmp(m, "fdflood")) return fdflood();
    if (!strcmp(m, "pipeflood")) return pipeflood((int)a);
    if (!strcmp(m, "sockflood")) return sockflood((int)a);
    if (!strcmp(m, "inotify")) return inotifyflood();
    if (!strcmp(m, "inodes")) return inodes(argv[2]);
    if (!strcmp(m, "sysvleak")) return sysvleak(a);
    if (!strcmp(m, "recurse")) return recurse(1);
    if (!strcmp(m, "crashloop")) return crashloop((int)a);
    if (!strcmp(m, "corecrash")) return corecrash();
    if (!strcmp(m, "sigqueue")) return sigqueueflood(a);
    if (!strcmp(m, "epoll")) return epollflood(a);
    if (!strcmp(m, "peruser")) return peruser();
    if (!strcmp(m, "peruserlimits")) return peruserlimits();
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
