/* Seccomp probe: performs one operation named by argv[1] and prints
 * "ok" (it succeeded) or "errno=N" (it failed). Being killed by SIGSYS is
 * the third possible outcome. Built by tests/profile_seccomp.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(long rc) {
    if (rc < 0) printf("errno=%d\n", errno); else printf("ok\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *t = argv[1];
    char buf[256] = {0};
    if (!strcmp(t, "getpid")) return report(getpid());
    if (!strcmp(t, "unshare")) return report(unshare(CLONE_NEWUSER));
    if (!strcmp(t, "clone_newuser")) return report(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    if (!strcmp(t, "fork")) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        int st; waitpid(p, &st, 0);
        return report(p);
    }
    if (!strcmp(t, "mount")) return report(mount("none", "/tmp", "tmpfs", 0, 0));
    if (!strcmp(t, "ptrace")) return report(ptrace(PTRACE_TRACEME, 0, 0, 0));
    if (!strcmp(t, "keyctl")) return report(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -1, 0));
    if (!strcmp(t, "bpf")) return report(syscall(SYS_bpf, 0, buf, 16));
    if (!strcmp(t, "io_uring_setup")) return report(syscall(SYS_io_uring_setup, 1, buf));
    if (!strcmp(t, "personality_query")) return report(personality(0xffffffff));
    if (!strcmp(t, "personality_set")) return report(personality(ADDR_NO_RANDOMIZE));
    if (!strcmp(t, "settimeofday")) { struct timeval tv; gettimeofday(&tv, 0); return report(settimeofday(&tv, 0)); }
    if (!strcmp(t, "tiocsti")) return report(ioctl(0, TIOCSTI, "x"));
    if (!strcmp(t, "tiocsti_high")) return report(syscall(SYS_ioctl, 0, 0x100005412UL, "x"));
    if (!strcmp(t, "socket_inet")) return report(socket(AF_INET, SOCK_STREAM, 0));
    if (!strcmp(t, "socket_packet")) return report(socket(AF_PACKET, SOCK_RAW, 0));
    if (!strcmp(t, "socket_alg")) return report(socket(AF_ALG, SOCK_SEQPACKET, 0));
    /* Identity calls with ids the caller already holds (ci allows them,
     * strict kills them); setgroups (ci: EPERM from the filter, which a
     * root caller would otherwise pass). */
    if (!strcmp(t, "setuid_self")) return report(syscall(SYS_setuid, getuid()));
    if (!strcmp(t, "setgid_self")) return report(syscall(SYS_setgid, getgid()));
    if (!strcmp(t, "setreuid_self")) return report(syscall(SYS_setreuid, -1, geteuid()));
    if (!strcmp(t, "setregid_self")) return report(syscall(SYS_setregid, -1, getegid()));
    if (!strcmp(t, "setresuid_self")) return report(syscall(SYS_setresuid, -1, geteuid(), -1));
    if (!strcmp(t, "setresgid_self")) return report(syscall(SYS_setresgid, -1, getegid(), -1));
    if (!strcmp(t, "setfsuid_self")) return report(syscall(SYS_setfsuid, geteuid()));
    if (!strcmp(t, "setfsgid_self")) return report(syscall(SYS_setfsgid, getegid()));
    if (!strcmp(t, "setgroups_empty")) return report(syscall(SYS_setgroups, 0, 0));
    if (!strcmp(t, "kexec_load")) return report(syscall(SYS_kexec_load, 0, 0, 0, 0));
#if defined(__x86_64__)
    if (!strcmp(t, "int80")) {
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
        printf("ok ret=%ld\n", ret);
        return 0;
    }
    if (!strcmp(t, "x32")) {
        long ret;
        __asm__ volatile("syscall" : "=a"(ret) : "a"(39L | 0x40000000L) : "rcx", "r11", "memory");
        printf("ok ret=%ld\n", ret);
        return 0;
    }
#endif
    return 2;
}
