//! Readiness notification to the service manager (systemd's `sd_notify`
//! protocol, `Type=notify`): this module owns the `NOTIFY_SOCKET` the
//! server was started with and the messages sent to it — `READY=1` once
//! it listens and answers, `RELOADING=1` then `READY=1` around a SIGHUP
//! reload, `STOPPING=1` when the drain begins.
//!
//! Hand-written rather than the `sd-notify` crate: the protocol is one
//! datagram of `KEY=value` lines to a Unix socket named by the variable (a
//! path, or an abstract name written with a leading `@`), which std's
//! `UnixDatagram` sends in a few lines, without another dependency. A
//! failed send is logged and otherwise ignored, as `sd_notify(3)` does:
//! the server works the same without a manager listening.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable naming the manager's socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go: the value of `NOTIFY_SOCKET`.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: OsString,
}

impl Notifier {
    /// A notifier for the socket `NOTIFY_SOCKET` names (`None` when unset
    /// or empty: no manager waits for us).
    pub fn new(socket: OsString) -> Option<Notifier> {
        (!socket.is_empty()).then_some(Notifier { socket })
    }

    fn address(&self) -> std::io::Result<SocketAddr> {
        let bytes = self.socket.as_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
            None => SocketAddr::from_pathname(std::path::Path::new(&self.socket)),
        }
    }

    /// Sends `state` (newline-separated `KEY=value` assignments).
    pub fn notify(&self, state: &str) {
        let sent = self.address().and_then(|addr| {
            let sock = UnixDatagram::unbound()?;
            sock.send_to_addr(state.as_bytes(), &addr)
        });
        match sent {
            Ok(_) => tracing::debug!(state, "notified the service manager"),
            Err(e) => tracing::warn!(
                socket = %self.socket.to_string_lossy(),
                state,
                "cannot notify the service manager: {e}"
            ),
        }
    }

    /// `RELOADING=1`, with the `MONOTONIC_USEC` newer systemd versions
    /// require of it.
    pub fn reloading(&self) {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `t`, ours.
        let now = if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } == 0 {
            t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
        } else {
            0
        };
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }
}

/// Sends `state` if there is a notifier.
pub fn notify(n: Option<&Notifier>, state: &str) {
    if let Some(n) = n {
        n.notify(state);
    }
}
