//! Thin wrappers over the raw syscalls the child side needs and libc does
//! not wrap (clone3, pivot_root). Every function here is async-signal-safe:
//! no allocation, no locks, so they may run between fork and exec.

use std::ffi::CStr;
use std::os::fd::RawFd;

/// `struct clone_args` from <linux/sched.h> (size 88, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Fork-like clone3 (no new stack: the child returns here, like fork).
/// Returns the child's pid in the parent, 0 in the child, -errno on failure.
/// With `pidfd_out`, CLONE_PIDFD is set and the pidfd stored there.
/// With `cgroup_fd`, the child is created directly inside that cgroup (v2).
///
/// Unlike glibc's fork this runs no atfork handlers and takes no malloc
/// locks, so the child of a multi-threaded parent is only safe while it
/// sticks to async-signal-safe calls, which is how every caller uses it.
pub fn clone3(flags: u64, pidfd_out: Option<&mut RawFd>, cgroup_fd: Option<RawFd>) -> i64 {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if pidfd_out.is_some() {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = &mut pidfd as *mut RawFd as u64;
    }
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: args is a valid clone_args of the size passed; no stack is given,
    // so the child resumes on a copy of this stack exactly like fork().
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return -(errno() as i64);
    }
    if ret > 0
        && let Some(out) = pidfd_out
    {
        *out = pidfd;
    }
    ret
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

/// Returns 0 or -errno.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> i32 {
    // SAFETY: both are valid NUL-terminated strings.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if r < 0 { -errno() } else { 0 }
}

/// Write all of `buf` to `fd`, retrying on EINTR. Async-signal-safe.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is a valid readable slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Read exactly `buf.len()` bytes, or fewer at EOF; returns the count or -errno.
pub fn read_full(fd: RawFd, buf: &mut [u8]) -> isize {
    let mut got = 0usize;
    while got < buf.len() {
        // SAFETY: the destination range is inside buf.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return -(errno() as isize);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    got as isize
}
