//! The resident helper: `sandbox exec` served from containers prepared
//! ahead of time.
//!
//! A `sandbox exec` process otherwise pays for a whole container on its
//! critical path (namespaces, root, cgroup: ~2.5 ms of ~5.5 here). `sandbox
//! helper` is a long-lived root process that keeps a [`Sandbox::pooled`]
//! pool per profile; `sandbox exec` hands it the run over a root-only unix
//! socket and prints the result exactly as it would have. What crosses the
//! socket:
//! - client → helper, one frame: a JSON [`Request`] (argv, flags, the
//!   client's working directory and environment) with the client's stdin,
//!   stdout, stderr and every bind source attached as fds (`SCM_RIGHTS`).
//!   Binds are opened by the client (`open_tree`), so paths resolve in the
//!   client's view, never the helper's.
//! - helper → client, one frame: a JSON [`Reply`], then the captured
//!   stdout and stderr bodies raw.
//!
//! Trust, both ways (`SO_PEERCRED`): the helper serves only peers of its own
//! uid, and the client talks only to a helper of its own uid; the socket's
//! directory must not be writable by others. A client whose [`context`]
//! differs from the helper's (namespaces, root, cgroup, rlimits, umask,
//! nice, affinity, OOM score), a profile the helper cannot load, or a
//! helper shutting down get a `fallback` reply, and the client
//! runs in-process as if no helper existed (which then reports any error
//! itself). A client that goes away (Ctrl-C) closes the socket, which
//! cancels its run. A reply that never comes after the request was sent
//! is an error, never a silent second run.

pub mod client;
pub mod context;
pub mod daemon;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::exec::ExecRequest;
use crate::runner::RunResult;

/// Where `sandbox helper` listens and `sandbox exec` looks by default.
pub const DEFAULT_SOCKET: &str = "/run/sandbox/helper.sock";

/// Largest frame either side accepts (argv and environment included).
pub const MAX_FRAME: usize = 16 << 20;

/// Most fds one request may carry: stdin, stdout, stderr and the binds.
pub const MAX_REQUEST_FDS: usize = 3 + crate::runner::go::MAX_BINDS;

/// The socket `sandbox exec` uses: `$SANDBOX_HELPER` (`off` or empty: none),
/// else [`DEFAULT_SOCKET`].
pub fn client_socket() -> Option<PathBuf> {
    match std::env::var_os("SANDBOX_HELPER") {
        Some(v) if v.is_empty() || v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from(DEFAULT_SOCKET)),
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WireBind {
    pub dest: String,
    pub is_dir: bool,
    pub name: String,
}

/// One `sandbox exec` (already checked by the client), with what the
/// helper needs to run it as the client would have.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// The request; its profile path, if relative, is relative to `cwd`,
    /// and its binds and stdin come as fds.
    pub exec: ExecRequest,
    /// The client's working directory.
    pub cwd: PathBuf,
    /// The client's environment (for the profile's `env_passthrough`).
    pub caller_env: Vec<(String, String)>,
    /// One per bind fd, in order after the three stdio fds.
    pub binds: Vec<WireBind>,
    /// The client's process context (`None`: unknown, never served).
    pub context: Option<context::Context>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// The run's result; `stdout_len` + `stderr_len` raw bytes follow.
    Result {
        result: RunResult,
        stdout_len: u64,
        stderr_len: u64,
    },
    /// Not served here: the client runs the command itself.
    Fallback { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(u64),
    #[error("bad frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the peer closed the connection")]
    Closed,
}

fn wio(what: &'static str) -> impl FnOnce(std::io::Error) -> WireError {
    move |source| WireError::Io { what, source }
}

/// Sends `head` (length-prefixed JSON), then `tail` raw, with `fds`
/// attached to the first bytes.
pub fn send_frame(
    sock: &UnixStream,
    head: &[u8],
    tail: &[&[u8]],
    fds: &[RawFd],
) -> Result<(), WireError> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let len = (head.len() as u32).to_le_bytes();
    let iov = [std::io::IoSlice::new(&len), std::io::IoSlice::new(head)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(
        |e| WireError::Io {
            what: "sending to the helper socket",
            source: e.into(),
        },
    )?;
    // The rest (a large request or output) without the fds.
    let whole = 4 + head.len();
    let mut w = sock;
    if sent < whole {
        let mut rest = Vec::with_capacity(whole - sent);
        rest.extend_from_slice(&len);
        rest.extend_from_slice(head);
        w.write_all(&rest[sent..])
            .map_err(wio("sending to the helper socket"))?;
    }
    for t in tail {
        w.write_all(t)
            .map_err(wio("sending to the helper socket"))?;
    }
    Ok(())
}

/// Receives a frame's JSON head and the fds that came with it.
pub fn recv_frame(sock: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), WireError> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    // Only the length prefix: the fds arrive with a stream's first byte,
    // and nothing past this frame may be consumed here.
    let mut first = [0u8; 4];
    let mut fds: Vec<OwnedFd> = Vec::new();
    let n = {
        let mut iov = [std::io::IoSliceMut::new(&mut first)];
        // Room for the most one message can carry (SCM_MAX_FD), so the
        // kernel never truncates and every fd that came is ours to close.
        let mut cbuf = nix::cmsg_space!([RawFd; 253]);
        let msg = loop {
            match recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cbuf),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r,
            }
        }
        .map_err(|e| WireError::Io {
            what: "reading from the helper socket",
            source: e.into(),
        })?;
        if let Ok(cm) = msg.cmsgs() {
            for c in cm {
                if let ControlMessageOwned::ScmRights(v) = c {
                    // SAFETY: the kernel just installed these fds for us.
                    fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        msg.bytes
    };
    if n == 0 {
        return Err(WireError::Closed);
    }
    read_exact(sock, &mut first[n..])?;
    let len = u32::from_le_bytes(first) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len as u64));
    }
    let head = read_body(sock, len as u64)?;
    Ok((head, fds))
}

/// Reads exactly `len` bytes, growing the buffer as they come (a length
/// alone never allocates).
pub fn read_body(sock: &UnixStream, len: u64) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    let mut r = sock;
    (&mut r)
        .take(len)
        .read_to_end(&mut out)
        .map_err(wio("reading from the helper socket"))?;
    if (out.len() as u64) < len {
        return Err(WireError::Closed);
    }
    Ok(out)
}

/// Reads exactly `buf.len()` bytes.
pub fn read_exact(sock: &UnixStream, buf: &mut [u8]) -> Result<(), WireError> {
    let mut r = sock;
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Closed
        } else {
            WireError::Io {
                what: "reading from the helper socket",
                source: e,
            }
        }
    })
}
