//! Cancelling a run from outside: [`CancelOn`] is what the supervisor polls
//! (a run is killed once its fd turns readable or hangs up), [`Canceller`]
//! the side that sets it. One `CancelOn` is shared by everything that must
//! see the same cancellation (a job's steps and tests); the byte a
//! `Canceller` writes stays unread, so every later check sees it too.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// A cancellation to watch (cheap to clone).
#[derive(Debug, Clone)]
pub struct CancelOn(Arc<OwnedFd>);

/// Sets the [`CancelOn`] it was made with ([`CancelOn::pair`]).
#[derive(Debug)]
pub struct Canceller(OwnedFd);

impl CancelOn {
    /// Watches any pollable fd (the helper's client socket turns readable
    /// only when the client goes away).
    pub fn new(fd: OwnedFd) -> CancelOn {
        CancelOn(Arc::new(fd))
    }

    /// A pipe: the canceller writes, this watches.
    pub fn pair() -> nix::Result<(CancelOn, Canceller)> {
        use nix::fcntl::OFlag;
        // Non-blocking: cancelling never waits, even if cancelled often.
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok((CancelOn::new(r), Canceller(w)))
    }

    /// Whether it is set now (without waiting).
    pub fn is_set(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut p = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Canceller {
    /// Sets it (again: harmless).
    pub fn cancel(&self) {
        let _ = nix::unistd::write(&self.0, b"c");
    }
}

impl AsRawFd for CancelOn {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_once_seen_by_every_clone_and_every_later_check() {
        let (on, c) = CancelOn::pair().expect("pipe");
        let other = on.clone();
        assert!(!on.is_set());
        c.cancel();
        c.cancel();
        assert!(on.is_set() && other.is_set() && on.is_set());
        drop(c);
        assert!(on.is_set(), "still set once the canceller is gone");
    }
}
