/* v2-lane guest init: PID 1 of the QEMU guest (see .ci/v2-lane.md).
 *
 * Built statically by .ci/v2-lane and placed as /init in a small initramfs
 * next to the kernel modules it needs (/modules/order lists them, dependencies
 * first). The run directory comes from the kernel command line
 * (v2lane_run=PATH, which the kernel hands to init as an environment
 * variable).
 *
 * Stage 1 (in the initramfs): load the modules, mount the host's "/" (9p tag
 * "hostroot", page cache on) and make it the root; mount the run directory
 * (9p tag "run", no cache, so the host sees output as it is written) at its
 * own path.
 * Stage 2 (on the host's tree): mount the guest's own /proc, /sys, cgroup2,
 * /dev, /tmp and /run over the host's directories, refusing to go on unless
 * they really are the guest's; place the cgroup; run $RUN/run.sh (bash, which
 * execs COMMAND); write $RUN/rc; power off. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#define PROC_MAGIC 0x9fa0
#define SYSFS_MAGIC 0x62656572
#define TMPFS_MAGIC 0x01021994

static char run[PATH_MAX];

static void wfile(const char *name, const char *fmt, ...) {
  char p[PATH_MAX], buf[256];
  va_list ap; va_start(ap, fmt); vsnprintf(buf, sizeof buf, fmt, ap); va_end(ap);
  if (name[0] == '/') snprintf(p, sizeof p, "%s", name); else snprintf(p, sizeof p, "%s/%s", run, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) { if (write(fd, buf, strlen(buf)) < 0) {} close(fd); }
}
static void poweroff(void) {
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}
/* Before the run directory is mounted, errors only reach the console (which
 * the host prints when the guest ends without an exit status). */
static void fail(const char *what) {
  fprintf(stderr, "v2-lane init: %s: %s\n", what, strerror(errno));
  if (run[0]) wfile("rc.init", "125\n");
  poweroff();
}
static void mnt(const char *src, const char *dst, const char *type, unsigned long fl, const char *data) {
  if (mount(src, dst, type, fl, data)) { char m[PATH_MAX + 64]; snprintf(m, sizeof m, "mount %s on %s", type ? type : src, dst); fail(m); }
}
static void expect_fs(const char *p, long magic) {
  struct statfs s;
  if (statfs(p, &s) || (long)s.f_type != magic) { errno = EINVAL; char m[PATH_MAX + 32]; snprintf(m, sizeof m, "%s has wrong fs type", p); fail(m); }
}
static void mkdirs(const char *path) {
  char p[PATH_MAX]; snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++) if (*s == '/') { *s = 0; mkdir(p, 0755); *s = '/'; }
  mkdir(p, 0755);
}
static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

/* Stage 1: from the initramfs to the host's tree. */
static void switch_to_host_root(void) {
  mkdir("/dev", 0755);
  mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
  int con = open("/dev/console", O_RDWR);
  if (con >= 0) { dup2(con, 0); dup2(con, 1); dup2(con, 2); if (con > 2) close(con); }

  FILE *f = fopen("/modules/order", "r");
  if (!f) fail("/modules/order");
  char line[256];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0]) continue;
    char p[PATH_MAX]; snprintf(p, sizeof p, "/modules/%s", line);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(p);
    if (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST) fail(p);
    close(fd);
  }
  fclose(f);

  /* msize: 9p's largest message over virtio (fewer round trips per read).
   * cache=loose: the host's files do not change while the guest runs, and
   * without a page cache every exec re-reads its binary and libraries. */
  mkdir("/host", 0755);
  const char *opts = "trans=virtio,version=9p2000.L,msize=512000,cache=loose";
  /* The virtio device is probed asynchronously after the module loads. */
  for (int i = 0; mount("hostroot", "/host", "9p", 0, opts); i++) {
    if (i == 200) fail("mount 9p hostroot on /host");
    usleep(10000);
  }
  if (chdir("/host")) fail("chdir /host");
  mnt(".", "/", NULL, MS_MOVE, NULL);
  if (chroot(".") || chdir("/")) fail("chroot into the host's tree");
  /* (9p reports the host's fs type in statfs: check we left the initramfs.) */
  if (access("/modules/order", F_OK) == 0) { errno = EEXIST; fail("still in the initramfs after the switch"); }
  mnt("run", run, "9p", 0, "trans=virtio,version=9p2000.L,msize=512000,cache=none");
}

int main(void) {
  const char *r = getenv("v2lane_run");
  if (!r || r[0] != '/' || strlen(r) >= sizeof run) { errno = EINVAL; fail("v2lane_run= missing from the kernel command line"); }
  snprintf(run, sizeof run, "%s", r);
  switch_to_host_root();
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/init.log", run);
  int lf = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (lf >= 0) { dup2(lf, 1); dup2(lf, 2); close(lf); }

  mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  expect_fs("/proc", PROC_MAGIC);
  mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  expect_fs("/sys", SYSFS_MAGIC);
  mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate");
  expect_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC);
  mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
  expect_fs("/dev", TMPFS_MAGIC);
  static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    struct stat st; snprintf(p, sizeof p, "/dev/%s", nodes[i]);
    if (stat(p, &st) || !S_ISCHR(st.st_mode)) { errno = ENOENT; fail(p); }
  }
  mkdir("/dev/pts", 0755); mkdir("/dev/shm", 01777); mkdir("/dev/mqueue", 01777);
  mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
  unlink("/dev/ptmx"); if (symlink("pts/ptmx", "/dev/ptmx")) {}
  mnt("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  if (symlink("/proc/self/fd", "/dev/fd")) {}
  if (symlink("/proc/self/fd/0", "/dev/stdin")) {}
  if (symlink("/proc/self/fd/1", "/dev/stdout")) {}
  if (symlink("/proc/self/fd/2", "/dev/stderr")) {}
  mnt("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");

  /* Fresh /tmp; re-expose the caller's cwd / command dir if under /tmp. */
  char hold[PATH_MAX]; snprintf(hold, sizeof hold, "%s/hosttmp", run);
  mnt("/tmp", hold, NULL, MS_BIND, NULL);
  mnt("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  snprintf(p, sizeof p, "%s/keep", run);
  FILE *kf = fopen(p, "r");
  if (kf) {
    char *line = NULL; size_t n = 0; ssize_t len;
    while ((len = getdelim(&line, &n, '\0', kf)) > 0) {
      if (strncmp(line, "/tmp/", 5) != 0) continue;
      char src[PATH_MAX]; snprintf(src, sizeof src, "%s/%s", hold, line + 5);
      struct stat st; if (stat(src, &st) || !S_ISDIR(st.st_mode)) continue;
      mkdirs(line);
      mnt(src, line, NULL, MS_BIND | MS_REC, NULL);
    }
    fclose(kf); free(line);
  }
  umount2(hold, MNT_DETACH);

  /* lo up */
  int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sk >= 0) {
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr); strcpy(ifr.ifr_name, "lo");
    if (!ioctl(sk, SIOCGIFFLAGS, &ifr)) { ifr.ifr_flags |= IFF_UP; ioctl(sk, SIOCSIFFLAGS, &ifr); }
    close(sk);
  }
  if (sethostname("v2lane", 6)) {}

  /* cgroup placement: "root" = leave the root cgroup as-is, run there;
   * "leaf" = enable +cpu +memory +pids at the root and run the command (not
   * PID 1) in the leaf /lane, like a systemd unit with Delegate=yes. */
  char mode[16] = "root";
  snprintf(p, sizeof p, "%s/cgmode", run);
  FILE *cf = fopen(p, "r"); if (cf) { if (fscanf(cf, "%15s", mode) != 1) {} fclose(cf); }
  if (!strcmp(mode, "leaf")) {
    int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY);
    if (fd < 0 || write(fd, "+cpu +memory +pids", 18) != 18) fail("enable +cpu +memory +pids");
    close(fd);
    if (mkdir("/sys/fs/cgroup/lane", 0755) && errno != EEXIST) fail("mkdir /sys/fs/cgroup/lane");
  }

  wfile("t_cmd", "%lld\n", now_ns());
  snprintf(p, sizeof p, "%s/run.sh", run);
  pid_t pid = fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    clearenv();
    if (!strcmp(mode, "leaf")) {   /* only the command goes to the leaf; PID 1 stays in / */
      int fd = open("/sys/fs/cgroup/lane/cgroup.procs", O_WRONLY);
      if (fd < 0 || write(fd, "0", 1) != 1) { perror("v2-lane init: move into /lane"); _exit(125); }
      close(fd);
    }
    int nul = open("/dev/null", O_RDONLY); if (nul >= 0) { dup2(nul, 0); close(nul); }
    execl("/bin/bash", "bash", p, (char *)NULL);
    _exit(127);
  }
  int st = 0, rc = 125;
  for (;;) {
    pid_t w = wait(&st);
    if (w == pid) { rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); break; }
    if (w < 0 && errno == ECHILD) break;
  }
  wfile("t_done", "%lld\n", now_ns());
  wfile("rc", "%d\n", rc);
  poweroff();
}
