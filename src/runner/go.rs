//! The "go" hand-off between the supervisor and a prepared container.
//!
//! A container is prepared (namespaces, mounts, cgroup) before the run it
//! will serve is known, so everything run-specific reaches its init later:
//! argv, environment, working directory and rlimits are laid out by the
//! supervisor in a `MAP_SHARED` area mapped before clone (same address in
//! both processes, so the pointer arrays are valid on both sides), and the
//! descriptors (stdio, cgroup join fds, bind mounts) travel with one
//! `SCM_RIGHTS` message on a socketpair. The child side only reads memory
//! and makes raw syscalls: nothing in it allocates.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use crate::limits::rlimits::Rlimits;

/// Size of the shared area. Only touched pages cost memory; the kernel's
/// own limit for argv + environment is smaller than this.
pub const AREA_SIZE: usize = 8 << 20;
/// At most this many run-specific bind mounts.
pub const MAX_BINDS: usize = 64;
/// stdio + v1 cgroup join fds (one per hierarchy) + binds.
pub const MAX_FDS: usize = 3 + 8 + MAX_BINDS;

/// One run-specific bind: where it goes and whether it is a directory.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BindSlot {
    pub dest: *const libc::c_char,
    pub is_dir: bool,
}

/// What init reads after "go". The fds arrive in this order: stdin,
/// stdout, stderr, `ncg` cgroup join fds, `nbinds` mount fds.
#[repr(C)]
pub struct GoHeader {
    pub argv: *const *const libc::c_char,
    pub envp: *const *const libc::c_char,
    /// NULL-terminated candidate paths for execve (PATH search).
    pub candidates: *const *const libc::c_char,
    pub workdir: *const libc::c_char,
    pub binds: *const BindSlot,
    pub nbinds: usize,
    pub ncg: usize,
    pub rlimits: Rlimits,
}

/// Moments of a run stamped by the container's side into the area (for
/// the "run timeline" debug line; the area is gone from the program's
/// address space at its execve, so it cannot forge them).
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Stamp {
    InitStarted,
    MapsReceived,
    RootBuilt,
    Ready,
    GoReceived,
    PayloadStarted,
    Exec,
    PayloadEnded,
}
pub const STAMPS: usize = 8;
/// The stamps live in the area's last page, away from the run's strings.
const STAMP_OFF: usize = AREA_SIZE - 4096;

/// CLOCK_MONOTONIC in nanoseconds (vDSO; async-signal-safe).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The shared mapping. Owned by the supervisor; the child inherits the
/// mapping at the same address.
pub struct GoArea {
    ptr: *mut u8,
}

// SAFETY: the area is plain memory owned by this value; only one thread
// writes it at a time (`&mut self`), and the child reads it after the
// socket message that follows the writes.
unsafe impl Send for GoArea {}
// SAFETY: shared references only read the base address.
unsafe impl Sync for GoArea {}

#[derive(Debug, thiserror::Error)]
#[error("arguments, environment and bind paths take more than {} MiB", AREA_SIZE >> 20)]
pub struct TooBig;

impl GoArea {
    pub fn new() -> std::io::Result<GoArea> {
        // SAFETY: anonymous shared mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                AREA_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(GoArea { ptr: p.cast() })
    }

    /// Keeps the area out of processes forked from now on (the container
    /// that needs it already has it): other containers, cloned later from
    /// the same supervisor, must not carry this run's arguments.
    pub fn dont_fork(&self) {
        // SAFETY: advice on a mapping this value owns.
        unsafe { libc::madvise(self.ptr.cast(), AREA_SIZE, libc::MADV_DONTFORK) };
    }

    /// Child side: records `which` moment as now.
    pub fn stamp(&self, which: Stamp) {
        // SAFETY: an aligned u64 slot inside the mapping's last page; only
        // the container writes it, and the supervisor reads it after the
        // run's end has been reported.
        unsafe {
            (self.ptr.add(STAMP_OFF) as *mut u64)
                .add(which as usize)
                .write_volatile(now_ns())
        };
    }

    /// Supervisor side: every stamp (0 where the moment was not reached).
    pub fn stamps(&self) -> [u64; STAMPS] {
        let mut out = [0; STAMPS];
        for (i, v) in out.iter_mut().enumerate() {
            // SAFETY: as in `stamp`.
            *v = unsafe {
                (self.ptr.add(STAMP_OFF) as *const u64)
                    .add(i)
                    .read_volatile()
            };
        }
        out
    }

    /// Child side: the header written by [`GoArea::write`].
    pub fn header(&self) -> &GoHeader {
        // SAFETY: the mapping is page-aligned and at least a header long;
        // the supervisor wrote a valid header before sending "go".
        unsafe { &*(self.ptr as *const GoHeader) }
    }

    /// Lays out one run. Pointers written are valid in the child because
    /// the mapping sits at the same address there.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        argv: &[CString],
        envp: &[CString],
        candidates: &[CString],
        workdir: &CStr,
        binds: &[(CString, bool)],
        ncg: usize,
        rlimits: Rlimits,
    ) -> Result<(), TooBig> {
        let ptrs = argv.len() + envp.len() + candidates.len() + 3;
        let strings: usize = argv
            .iter()
            .chain(envp)
            .chain(candidates)
            .chain(binds.iter().map(|(d, _)| d))
            .map(|c| c.as_bytes_with_nul().len())
            .sum::<usize>()
            + workdir.to_bytes_with_nul().len();
        let hdr = std::mem::size_of::<GoHeader>().next_multiple_of(16);
        let slots = std::mem::size_of::<BindSlot>() * binds.len();
        let need = hdr + ptrs * std::mem::size_of::<usize>() + slots + strings + 64;
        let need = need + (AREA_SIZE - STAMP_OFF);
        if need > AREA_SIZE || binds.len() > MAX_BINDS {
            return Err(TooBig);
        }
        // A bump allocator over the area; every write below is in bounds
        // because `need` was checked above.
        let base = self.ptr;
        let mut off = hdr;
        let put_str = |off: &mut usize, s: &CStr| -> *const libc::c_char {
            let b = s.to_bytes_with_nul();
            // SAFETY: in bounds (see `need`); source and area do not overlap.
            unsafe {
                let dst = base.add(*off);
                std::ptr::copy_nonoverlapping(b.as_ptr(), dst, b.len());
                *off += b.len();
                dst as *const libc::c_char
            }
        };
        let arr_off = |off: &mut usize, n: usize| -> *mut *const libc::c_char {
            *off = off.next_multiple_of(8);
            // SAFETY: in bounds, 8-aligned.
            let p = unsafe { base.add(*off) } as *mut *const libc::c_char;
            *off += (n + 1) * std::mem::size_of::<usize>();
            p
        };
        let argv_p = arr_off(&mut off, argv.len());
        let envp_p = arr_off(&mut off, envp.len());
        let cand_p = arr_off(&mut off, candidates.len());
        off = off.next_multiple_of(8);
        // SAFETY: in bounds, 8-aligned (BindSlot has pointer alignment).
        let binds_p = unsafe { base.add(off) } as *mut BindSlot;
        off += slots;
        for (arr, list) in [(argv_p, argv), (envp_p, envp), (cand_p, candidates)] {
            for (i, s) in list.iter().enumerate() {
                let p = put_str(&mut off, s);
                // SAFETY: index < list.len(); the array has len + 1 slots.
                unsafe { *arr.add(i) = p };
            }
            // SAFETY: the terminating slot.
            unsafe { *arr.add(list.len()) = std::ptr::null() };
        }
        for (i, (dest, is_dir)) in binds.iter().enumerate() {
            let p = put_str(&mut off, dest);
            // SAFETY: i < binds.len() slots reserved above.
            unsafe {
                binds_p.add(i).write(BindSlot {
                    dest: p,
                    is_dir: *is_dir,
                })
            };
        }
        let wd = put_str(&mut off, workdir);
        let h = GoHeader {
            argv: argv_p,
            envp: envp_p,
            candidates: cand_p,
            workdir: wd,
            binds: binds_p,
            nbinds: binds.len(),
            ncg,
            rlimits,
        };
        // SAFETY: the header slot at offset 0 is aligned and in bounds.
        unsafe { (base as *mut GoHeader).write(h) };
        Ok(())
    }
}

impl Drop for GoArea {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns.
        unsafe { libc::munmap(self.ptr.cast(), AREA_SIZE) };
    }
}

/// Supervisor side: sends "go" with `fds` attached.
pub fn send_go(sock: RawFd, fds: &[RawFd]) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let iov = [std::io::IoSlice::new(b"g")];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// Child side: waits for "go" and stores the attached fds (close-on-exec)
/// in `out`. Returns how many arrived, or `Err(errno)`; `Err(0)` means the
/// supervisor hung up. Async-signal-safe: a raw `recvmsg` into stack
/// buffers.
pub fn recv_go(sock: RawFd, out: &mut [RawFd; MAX_FDS]) -> Result<usize, i32> {
    // Large enough for MAX_FDS descriptors (CMSG_SPACE(4 * MAX_FDS)).
    #[repr(C, align(8))]
    struct CBuf([u8; 16 + 4 * MAX_FDS + 8]);
    let mut cbuf = CBuf([0; 16 + 4 * MAX_FDS + 8]);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: zeroed msghdr is a valid empty header; fields set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len();
    let n = loop {
        // SAFETY: msg points at valid buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && crate::isolation::sys::errno() == libc::EINTR {
            continue;
        }
        break n;
    };
    if n < 0 {
        return Err(crate::isolation::sys::errno());
    }
    if n == 0 {
        return Err(0);
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(libc::EMSGSIZE);
    }
    let mut count = 0;
    // SAFETY: walking the control buffer the kernel filled, with libc's
    // CMSG helpers (pointer arithmetic within msg_control).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let k = len / std::mem::size_of::<RawFd>();
                for i in 0..k {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if count < MAX_FDS {
                        out[count] = fd;
                        count += 1;
                    } else {
                        libc::close(fd);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(count)
}
