//! What the container tells the supervisor, and the byte format of it (the
//! one place that knows it): a setup failure ([`SetupFailed`]: the step
//! and errno, on the error pipe, which otherwise closes at the program's
//! execve) and the program's end ([`Ended`]: its wait status, on the status
//! pipe, once init has killed and reaped everything else). Encoding runs in
//! the child between clone and exec: fixed-size stack buffers, no
//! allocation.

/// A step of the container's setup failed with an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupFailed {
    /// A mount-plan index, a `child::Step`, or a bind's step.
    pub step: u32,
    pub errno: i32,
}

impl SetupFailed {
    pub const LEN: usize = 8;

    pub fn encode(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&self.step.to_ne_bytes());
        b[4..].copy_from_slice(&self.errno.to_ne_bytes());
        b
    }

    pub fn decode(b: &[u8; Self::LEN]) -> SetupFailed {
        let [s0, s1, s2, s3, e0, e1, e2, e3] = *b;
        SetupFailed {
            step: u32::from_ne_bytes([s0, s1, s2, s3]),
            errno: i32::from_ne_bytes([e0, e1, e2, e3]),
        }
    }
}

/// The program ended with this wait status, and nothing else of the run is
/// left alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub status: i32,
}

impl Ended {
    pub const LEN: usize = 5;
    /// The first byte: what the message is (one kind so far).
    const TAG: u8 = 1;

    pub fn encode(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = Self::TAG;
        b[1..].copy_from_slice(&self.status.to_ne_bytes());
        b
    }

    /// `None`: not a report of this kind.
    pub fn decode(b: &[u8; Self::LEN]) -> Option<Ended> {
        let [tag, s0, s1, s2, s3] = *b;
        (tag == Self::TAG).then(|| Ended {
            status: i32::from_ne_bytes([s0, s1, s2, s3]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let f = SetupFailed {
            step: 1 << 20 | 7,
            errno: libc::EPERM,
        };
        assert_eq!(SetupFailed::decode(&f.encode()), f);
        let e = Ended { status: 0x0b00 };
        assert_eq!(Ended::decode(&e.encode()), Some(e));
        assert_eq!(Ended::decode(&[0, 1, 2, 3, 4]), None);
    }
}
