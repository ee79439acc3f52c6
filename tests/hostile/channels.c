/* Hostile program: covert channels between runs.
 *
 * Usage: channels MODE [ARGS...]; the "put"/"hold" modes plant something and
 * keep it for SECS seconds, the "get"/"try" modes look for it and print
 * what they found ("absent: ERRNO" when the channel is closed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EWOULDBLOCK: return "EWOULDBLOCK";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    default: return strerror(e);
    }
}

static int shm_put(key_t key, const char *secret, int secs) {
    int id = shmget(key, 4096, IPC_CREAT | 0666);
    if (id < 0) { printf("shmget: %s\n", en(errno)); return 1; }
    char *p = shmat(id, NULL, 0);
    strcpy(p, secret);
    int sem = semget(key, 1, IPC_CREAT | 0666);
    semctl(sem, 0, SETVAL, 42);
    int q = msgget(key, IPC_CREAT | 0666);
    struct { long t; char s[64]; } m = {1, ""};
    strncpy(m.s, secret, sizeof m.s - 1);
    msgsnd(q, &m, sizeof m.s, IPC_NOWAIT);
    puts("planted");
    sleep(secs);
    return 0;
}

static int shm_get(key_t key) {
    int id = shmget(key, 0, 0);
    if (id < 0) printf("shm absent: %s\n", en(errno));
    else printf("shm FOUND: %s\n", (char *)shmat(id, NULL, SHM_RDONLY));
    int sem = semget(key, 0, 0);
    if (sem < 0) printf("sem absent: %s\n", en(errno));
    else printf("sem FOUND: %d\n", semctl(sem, 0, GETVAL));
    int q = msgget(key, 0);
    if (q < 0) printf("msg absent: %s\n", en(errno));
    else {
        struct { long t; char s[64]; } m;
        ssize_t n = msgrcv(q, &m, sizeof m.s, 0, IPC_NOWAIT);
        printf("msg FOUND: %s\n", n > 0 ? m.s : "(empty)");
    }
    return 0;
}

static socklen_t abstract(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + 1, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static int abs_listen(const char *name, const char *secret, int secs) {
    struct sockaddr_un a;
    socklen_t len = abstract(&a, name);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(s, (struct sockaddr *)&a, len) || listen(s, 8)) {
        printf("listen: %s\n", en(errno));
        return 1;
    }
    puts("listening");
    fflush(stdout);
    struct timeval tv = {secs, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int c = accept(s, NULL, NULL);
    if (c >= 0) {
        if (write(c, secret, strlen(secret)) < 0) return 1;
        puts("served a peer");
    }
    return 0;
}

static int abs_connect(const char *name) {
    struct sockaddr_un a;
    socklen_t len = abstract(&a, name);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&a, len)) {
        printf("socket absent: %s\n", en(errno));
        return 0;
    }
    char buf[128] = "";
    ssize_t n = read(s, buf, sizeof buf - 1);
    printf("socket FOUND: %s\n", n > 0 ? buf : "");
    return 0;
}

static int lock_hold(const char *path, int secs) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("open: %s\n", en(errno)); return 1; }
    if (flock(fd, LOCK_EX)) { printf("flock: %s\n", en(errno)); return 1; }
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl)) { printf("fcntl: %s\n", en(errno)); return 1; }
    puts("locked");
    fflush(stdout);
    sleep(secs);
    return 0;
}

static int lock_try(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) fd = open(path, O_RDONLY);
    if (fd < 0) { printf("open: %s\n", en(errno)); return 1; }
    int r = flock(fd, LOCK_EX | LOCK_NB);
    printf("flock %s\n", r ? en(errno) : "free");
    if (r == 0) flock(fd, LOCK_UN);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    r = fcntl(fd, F_GETLK, &fl);
    printf("posix-lock %s\n", r ? en(errno) : (fl.l_type == F_UNLCK ? "free" : "HELD"));
    FILE *f = fopen("/proc/locks", "r");
    int n = 0;
    char line[256];
    while (f && fgets(line, sizeof line, f)) n++;
    printf("proc-locks %d\n", n);
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "shm_put")) return shm_put((key_t)strtol(argv[2], 0, 0), argv[3], atoi(argv[4]));
    if (!strcmp(m, "shm_get")) return shm_get((key_t)strtol(argv[2], 0, 0));
    if (!strcmp(m, "abs_listen")) return abs_listen(argv[2], argv[3], atoi(argv[4]));
    if (!strcmp(m, "abs_connect")) return abs_connect(argv[2]);
    if (!strcmp(m, "lock_hold")) return lock_hold(argv[2], atoi(argv[3]));
    if (!strcmp(m, "lock_try")) return lock_try(argv[2]);
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
