/* Hostile program: privilege and kernel-surface probes.
 *
 * Usage: kernel ATTACK...
 * Each ATTACK runs in a forked child (a seccomp kill takes only that child)
 * and prints one line "ATTACK: RESULT" where RESULT is
 *   "SUCCEEDED"        the call worked (a hole),
 *   "errno NAME"       the call failed with that errno,
 *   "signal N"         the child was killed by signal N (31 = SIGSYS).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>

struct clone_args_ {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOTTY: return "ENOTTY";
    case ENXIO: return "ENXIO";
    case EROFS: return "EROFS";
    case ESRCH: return "ESRCH";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case ETXTBSY: return "ETXTBSY";
    case EIO: return "EIO";
    default: return "other";
    }
}

/* A victim process for ptrace/process_vm_readv: a sibling that sleeps. */
static pid_t victim(void) {
    pid_t p = fork();
    if (p == 0) {
        for (;;) pause();
    }
    usleep(20000);
    return p;
}

static long a_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long a_unshare_mnt(void) { return unshare(CLONE_NEWNS); }
static long a_unshare_net(void) { return unshare(CLONE_NEWNET); }
static long a_clone_newuser(void) {
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return r < 0 ? -1 : 0;
}
static long a_clone_newpid(void) {
    long r = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return r < 0 ? -1 : 0;
}
static long a_clone3_newuser(void) {
    struct clone_args_ a;
    memset(&a, 0, sizeof a);
    a.flags = CLONE_NEWUSER;
    a.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return r < 0 ? -1 : 0;
}
static long a_setns(void) {
    int fd = open("/proc/self/ns/user", O_RDONLY);
    if (fd < 0) return -1;
    return setns(fd, 0);
}
static long a_int80_getpid(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory", "rcx", "r11");
    if (r > 0) return 0;
    errno = (int)-r;
    return -1;
}
static long a_int80_unshare(void) {
    /* i386 unshare = 310: would bypass an x86_64-only filter. */
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(310L), "b"((long)CLONE_NEWUSER) : "memory", "rcx", "r11");
    if (r == 0) return 0;
    errno = (int)-r;
    return -1;
}
static long a_x32_getpid(void) { return syscall(0x40000000L | 39) > 0 ? 0 : -1; }
static long a_x32_unshare(void) { return syscall(0x40000000L | 272, CLONE_NEWUSER); }
static long a_tiocsti(void) {
    char c = 'X';
    return ioctl(0, TIOCSTI, &c);
}
static long a_tiocsti_highbits(void) {
    /* Upper bits set: the kernel truncates the command to 32 bits. */
    char c = 'X';
    return syscall(SYS_ioctl, 0, 0xdead000000000000UL | TIOCSTI, &c);
}
static long a_tiocsti_own_pty(void) {
    /* A pty the program creates itself inside its devpts. */
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0) return -1;
    char c = 'X';
    return ioctl(m, TIOCSTI, &c);
}
static long a_tioclinux(void) {
    char sub = 0;
    return ioctl(0, TIOCLINUX, &sub);
}
static long a_io_uring(void) {
    char p[120];
    memset(p, 0, sizeof p);
    return syscall(SYS_io_uring_setup, 4, p);
}
static long a_bpf(void) {
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1;
    return syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a);
}
static long a_perf(void) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE;
    a.size = sizeof a;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}
static long a_userfaultfd(void) { return syscall(SYS_userfaultfd, O_CLOEXEC | 1); }
static long a_keyctl(void) { return syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "hostile"); }
static long a_add_key(void) {
    return syscall(SYS_add_key, "user", "hostile", "secret", 6, KEY_SPEC_SESSION_KEYRING);
}
static long a_request_key(void) {
    return syscall(SYS_request_key, "user", "hostile", NULL, KEY_SPEC_SESSION_KEYRING);
}
static long a_ptrace_sibling(void) {
    pid_t v = victim();
    long r = ptrace(PTRACE_ATTACH, v, NULL, NULL);
    int e = errno;
    kill(v, SIGKILL);
    waitpid(v, NULL, 0);
    errno = e;
    return r;
}
static long a_ptrace_init(void) { return ptrace(PTRACE_ATTACH, 1, NULL, NULL); }
static long a_ptrace_traceme(void) { return ptrace(PTRACE_TRACEME, 0, NULL, NULL); }
static long a_pvm_readv_sibling(void) {
    static char secret[32] = "sibling-secret";
    pid_t v = victim();
    char buf[32];
    struct iovec l = {buf, sizeof buf}, r = {secret, sizeof secret};
    long n = syscall(SYS_process_vm_readv, v, &l, 1, &r, 1, 0);
    int e = errno;
    kill(v, SIGKILL);
    waitpid(v, NULL, 0);
    errno = e;
    return n < 0 ? -1 : 0;
}
static long a_pvm_writev_init(void) {
    char buf[8] = "x";
    struct iovec l = {buf, 1}, r = {(void *)0x400000, 1};
    return syscall(SYS_process_vm_writev, 1, &l, 1, &r, 1, 0) < 0 ? -1 : 0;
}
static long a_proc1_mem(void) {
    int fd = open("/proc/1/mem", O_RDONLY);
    return fd < 0 ? -1 : 0;
}
static long a_personality(void) { return personality(ADDR_NO_RANDOMIZE) < 0 ? -1 : 0; }
static long a_af_packet(void) { return socket(AF_PACKET, SOCK_RAW, 0); }
static long a_af_alg(void) { return socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0); }
static long a_af_vsock(void) { return socket(40 /* AF_VSOCK */, SOCK_STREAM, 0); }
static long a_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long a_finit_module(void) { return syscall(SYS_finit_module, 0, "", 0); }
static long a_kexec_load(void) { return syscall(SYS_kexec_load, 0, 0, NULL, 0); }
static long a_reboot(void) {
    return syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, 0);
}
static long a_open_by_handle_at(void) {
    struct {
        unsigned int bytes;
        int type;
        unsigned char h[128];
    } fh;
    memset(&fh, 0, sizeof fh);
    fh.bytes = 8;
    fh.type = 1;
    return syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY);
}
static long a_swapon(void) { return syscall(SYS_swapon, "/tmp/swap", 0); }
static long a_mount_tmpfs(void) { return mount("none", "/tmp", "tmpfs", 0, NULL); }
static long a_mount_bind_root(void) { return mount("/", "/tmp", NULL, MS_BIND | MS_REC, NULL); }
static long a_umount_proc(void) { return umount2("/proc", MNT_DETACH); }
static long a_pivot_root(void) { return syscall(SYS_pivot_root, "/tmp", "/tmp"); }
static long a_chroot(void) { return chroot("/tmp"); }
static long a_open_tree(void) { return syscall(428 /* open_tree */, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */); }
static long a_fsopen(void) { return syscall(430 /* fsopen */, "tmpfs", 0); }
static long a_settimeofday(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return settimeofday(&tv, NULL);
}
static long a_clock_settime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 3600;
    return clock_settime(CLOCK_REALTIME, &ts);
}
static long a_adjtimex(void) {
    struct timex t;
    memset(&t, 0, sizeof t);
    t.modes = ADJ_OFFSET;
    t.offset = 1000;
    return adjtimex(&t) < 0 ? -1 : 0;
}
static long a_clock_adjtime(void) {
    struct timex t;
    memset(&t, 0, sizeof t);
    t.modes = ADJ_FREQUENCY;
    t.freq = 1000;
    return syscall(SYS_clock_adjtime, CLOCK_REALTIME, &t) < 0 ? -1 : 0;
}
static long a_sethostname(void) { return sethostname("pwned", 5); }
static long a_setuid0(void) { return setuid(0); }
/* The identity calls ci allows (issue #15). Raw syscalls, so each probe is
 * exactly the call named (glibc's seteuid is setresuid, for instance). */
static long a_setresuid0(void) { return syscall(SYS_setresuid, 0, 0, 0); }
static long a_setreuid0(void) { return syscall(SYS_setreuid, 0, 0); }
static long a_setgid0(void) { return syscall(SYS_setgid, 0); }
static long a_setresgid0(void) { return syscall(SYS_setresgid, 0, 0, 0); }
/* setuid to an id the run does not hold (mapped or not) */
static long a_setuid_other(void) { return syscall(SYS_setuid, 1001); }
/* setfsuid/setfsgid report no error, only the previous id: refused means
 * the id did not change (printed as EPERM). */
static long a_setfsuid0(void) {
    syscall(SYS_setfsuid, 0);
    if (syscall(SYS_setfsuid, -1) == 0) return 0;
    errno = EPERM;
    return -1;
}
static long a_setfsgid0(void) {
    syscall(SYS_setfsgid, 0);
    if (syscall(SYS_setfsgid, -1) == 0) return 0;
    errno = EPERM;
    return -1;
}
static long a_setgroups_drop(void) { return syscall(SYS_setgroups, 0, NULL); }
static long a_setgroups_root(void) {
    gid_t g = 0;
    return syscall(SYS_setgroups, 1, &g);
}
/* What make does around every job: seteuid/setegid to ids already held. */
static long a_setresuid_own(void) { return syscall(SYS_setresuid, -1, getuid(), -1); }
static long a_setresgid_own(void) { return syscall(SYS_setresgid, -1, getgid(), -1); }
static long a_setuid_own(void) { return syscall(SYS_setuid, getuid()); }
static long a_core_rlimit_zero(void) {
    struct rlimit r = {0, 0};
    return setrlimit(RLIMIT_CORE, &r);
}
static long a_core_prlimit_zero(void) {
    struct rlimit r = {0, 0};
    return prlimit(0, RLIMIT_CORE, &r, NULL);
}
static long a_core_prlimit_highptr(void) {
    /* new_limit at an address whose low 32 bits are zero: a filter that
     * compared only 32 bits of the pointer would see NULL. */
    void *p = mmap((void *)0x200000000UL, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != (void *)0x200000000UL) return -2;
    memset(p, 0, sizeof(struct rlimit));
    return syscall(SYS_prlimit64, 0, RLIMIT_CORE, p, NULL);
}
static long a_core_prlimit_read(void) {
    struct rlimit r;
    long rc = prlimit(0, RLIMIT_CORE, NULL, &r);
    if (rc == 0 && r.rlim_cur != 1) return -2;
    return rc;
}
static long a_core_setrlimit_highbits(void) {
    /* resource with garbage in the upper 32 bits (the kernel truncates). */
    struct rlimit r = {0, 0};
    return syscall(SYS_setrlimit, 0xffffffff00000000UL | RLIMIT_CORE, &r);
}

struct attack {
    const char *name;
    long (*fn)(void);
};

static const struct attack ATTACKS[] = {
    {"unshare_user", a_unshare_user},
    {"unshare_mnt", a_unshare_mnt},
    {"unshare_net", a_unshare_net},
    {"clone_newuser", a_clone_newuser},
    {"clone_newpid", a_clone_newpid},
    {"clone3_newuser", a_clone3_newuser},
    {"setns", a_setns},
    {"int80_getpid", a_int80_getpid},
    {"int80_unshare", a_int80_unshare},
    {"x32_getpid", a_x32_getpid},
    {"x32_unshare", a_x32_unshare},
    {"tiocsti", a_tiocsti},
    {"tiocsti_highbits", a_tiocsti_highbits},
    {"tiocsti_own_pty", a_tiocsti_own_pty},
    {"tioclinux", a_tioclinux},
    {"io_uring", a_io_uring},
    {"bpf", a_bpf},
    {"perf_event_open", a_perf},
    {"userfaultfd", a_userfaultfd},
    {"keyctl", a_keyctl},
    {"add_key", a_add_key},
    {"request_key", a_request_key},
    {"ptrace_sibling", a_ptrace_sibling},
    {"ptrace_init", a_ptrace_init},
    {"ptrace_traceme", a_ptrace_traceme},
    {"process_vm_readv_sibling", a_pvm_readv_sibling},
    {"process_vm_writev_init", a_pvm_writev_init},
    {"proc1_mem", a_proc1_mem},
    {"personality", a_personality},
    {"af_packet", a_af_packet},
    {"af_alg", a_af_alg},
    {"af_vsock", a_af_vsock},
    {"init_module", a_init_module},
    {"finit_module", a_finit_module},
    {"kexec_load", a_kexec_load},
    {"reboot", a_reboot},
    {"open_by_handle_at", a_open_by_handle_at},
    {"swapon", a_swapon},
    {"mount_tmpfs", a_mount_tmpfs},
    {"mount_bind_root", a_mount_bind_root},
    {"umount_proc", a_umount_proc},
    {"pivot_root", a_pivot_root},
    {"chroot", a_chroot},
    {"open_tree", a_open_tree},
    {"fsopen", a_fsopen},
    {"settimeofday", a_settimeofday},
    {"clock_settime", a_clock_settime},
    {"adjtimex", a_adjtimex},
    {"clock_adjtime", a_clock_adjtime},
    {"sethostname", a_sethostname},
    {"setuid0", a_setuid0},
    {"setresuid0", a_setresuid0},
    {"setreuid0", a_setreuid0},
    {"setgid0", a_setgid0},
    {"setresgid0", a_setresgid0},
    {"setuid_other", a_setuid_other},
    {"setfsuid0", a_setfsuid0},
    {"setfsgid0", a_setfsgid0},
    {"setgroups_drop", a_setgroups_drop},
    {"setgroups_root", a_setgroups_root},
    {"setresuid_own", a_setresuid_own},
    {"setresgid_own", a_setresgid_own},
    {"setuid_own", a_setuid_own},
    {"core_rlimit_zero", a_core_rlimit_zero},
    {"core_prlimit_zero", a_core_prlimit_zero},
    {"core_prlimit_highptr", a_core_prlimit_highptr},
    {"core_prlimit_read", a_core_prlimit_read},
    {"core_setrlimit_highbits", a_core_setrlimit_highbits},
};

static void run(const struct attack *a) {
    int p[2];
    if (pipe(p)) { perror("pipe"); exit(2); }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        errno = 0;
        long r = a->fn();
        int e = errno;
        int msg[2] = {r == -1 ? 1 : (r == -2 ? 2 : 0), e};
        if (write(p[1], msg, sizeof msg) < 0) _exit(3);
        _exit(0);
    }
    close(p[1]);
    int msg[2] = {0, 0};
    ssize_t n = read(p[0], msg, sizeof msg);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        printf("%s: signal %d\n", a->name, WTERMSIG(st));
    else if (n != (ssize_t)sizeof msg)
        printf("%s: no report (status %d)\n", a->name, st);
    else if (msg[0] == 2)
        printf("%s: setup failed\n", a->name);
    else if (msg[0] == 1)
        printf("%s: errno %s\n", a->name, errname(msg[1]));
    else
        printf("%s: SUCCEEDED\n", a->name);
    fflush(stdout);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int found = 0;
        for (size_t j = 0; j < sizeof ATTACKS / sizeof ATTACKS[0]; j++) {
            if (!strcmp(argv[i], ATTACKS[j].name)) {
                run(&ATTACKS[j]);
                found = 1;
            }
        }
        if (!found) {
            printf("%s: unknown attack\n", argv[i]);
            return 2;
        }
    }
    return 0;
}
