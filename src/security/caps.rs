//! Capabilities: everything outside the profile's kept set is dropped from
//! all five sets (bounding, permitted, effective, inheritable, ambient).
//!
//! The `caps` crate allocates and acts per thread, so the child side uses
//! raw prctl/capset on a mask computed before the fork.

use crate::profile::Capabilities;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct CapPlan {
    pub keep: u64,
    pub last_cap: u32,
}

/// Which step failed, for the error report.
#[derive(Debug, Clone, Copy)]
pub enum CapStep {
    Bounding,
    KeepCaps,
    Capset,
    Ambient,
}

impl CapPlan {
    pub fn new(c: &Capabilities) -> CapPlan {
        let keep = c.keep.iter().fold(0u64, |m, cap| m | cap.bitmask());
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        CapPlan { keep, last_cap }
    }

    /// Drops every capability outside the kept set from the bounding set
    /// (inherited by children, so a container's init does it once, ahead
    /// of the run).
    pub fn drop_bounding(&self) -> Result<(), (CapStep, i32)> {
        for cap in 0..=self.last_cap {
            if self.keep & (1u64 << cap) == 0 {
                // SAFETY: plain prctl with integer arguments.
                let r =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                if r < 0 && crate::isolation::sys::errno() != libc::EINVAL {
                    return Err((CapStep::Bounding, crate::isolation::sys::errno()));
                }
            }
        }
        Ok(())
    }

    /// Keep the permitted set across the coming setuid.
    pub fn keep_caps() -> Result<(), (CapStep, i32)> {
        // SAFETY: plain prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
            return Err((CapStep::KeepCaps, crate::isolation::sys::errno()));
        }
        Ok(())
    }

    /// Make the effective set equal to the permitted set again (after a
    /// setuid under PR_SET_KEEPCAPS cleared it).
    pub fn raise_effective() -> Result<(), i32> {
        let hdr = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: header and a two-element data array as capget(2) requires.
        if unsafe { libc::syscall(libc::SYS_capget, &hdr as *const Header, data.as_mut_ptr()) } < 0
        {
            return Err(crate::isolation::sys::errno());
        }
        for d in &mut data {
            d.effective = d.permitted;
        }
        // SAFETY: as above, for capset(2).
        if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } < 0 {
            return Err(crate::isolation::sys::errno());
        }
        Ok(())
    }

    /// After switching uid: permitted = effective = inheritable = kept,
    /// ambient = kept (so a non-root program keeps them across execve).
    pub fn after_setuid(&self) -> Result<(), (CapStep, i32)> {
        let lo = self.keep as u32;
        let hi = (self.keep >> 32) as u32;
        let hdr = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [
            Data {
                effective: lo,
                permitted: lo,
                inheritable: lo,
            },
            Data {
                effective: hi,
                permitted: hi,
                inheritable: hi,
            },
        ];
        // SAFETY: header and a two-element data array as capset(2) requires.
        if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } < 0 {
            return Err((CapStep::Capset, crate::isolation::sys::errno()));
        }
        // SAFETY: plain prctl calls with integer arguments.
        unsafe {
            if libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err((CapStep::Ambient, crate::isolation::sys::errno()));
            }
            for cap in 0..=self.last_cap.min(63) {
                if self.keep & (1u64 << cap) != 0
                    && libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    ) < 0
                {
                    return Err((CapStep::Ambient, crate::isolation::sys::errno()));
                }
            }
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        }
        Ok(())
    }
}
