//! `sandbox exec`'s side of the helper socket.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{Reply, Request, WireBind, read_body, recv_frame, send_frame};
use crate::exec::ExecRequest;
use crate::runner::{OpenedBind, RunResult};

/// What became of the attempt.
pub enum Outcome {
    /// The helper ran it (or failed in a way that must not be retried).
    Served(RunResult),
    /// No helper, or it declined: run in-process.
    NotServed,
}

/// Hands the run to the helper at `path`, if one listens there.
pub fn exec(path: &Path, a: &ExecRequest) -> Outcome {
    let t0 = std::time::Instant::now();
    // No socket, no helper (the usual case): nothing else is spent.
    if std::fs::symlink_metadata(path).is_err() {
        tracing::debug!("no helper at {}", path.display());
        return Outcome::NotServed;
    }
    // A terminal stays with the in-process path: there, Ctrl-Z and
    // background job control stop the supervisor with the shell's job; the
    // helper has no controlling terminal and would go on reading and
    // writing it.
    // SAFETY: isatty only inspects the fd.
    let tty = |fd: RawFd| unsafe { libc::isatty(fd) } == 1;
    if (a.stdin.is_none() && tty(0)) || tty(1) || tty(2) {
        tracing::debug!("a terminal: not using the helper");
        return Outcome::NotServed;
    }
    let Ok(cwd) = std::env::current_dir() else {
        return Outcome::NotServed;
    };
    // Binds are opened here, in the client's view of the filesystem. Any
    // error: the in-process run reports it, in its usual order.
    let mut opened = Vec::new();
    for b in &a.binds {
        match OpenedBind::open(b) {
            Ok(Some(o)) => opened.push(o),
            Ok(None) => {}
            Err(_) => return Outcome::NotServed,
        }
    }
    let stdin: OwnedFd = match &a.stdin {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => f.into(),
            Err(_) => return Outcome::NotServed,
        },
        None => match std_fd(0, false) {
            Some(f) => f,
            None => return Outcome::NotServed,
        },
    };
    let (Some(out), Some(err)) = (std_fd(1, true), std_fd(2, true)) else {
        return Outcome::NotServed;
    };
    let req = Request {
        exec: a.clone(),
        cwd,
        caller_env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        binds: opened
            .iter()
            .map(|b| WireBind {
                dest: b.dest.to_string_lossy().into_owned(),
                is_dir: b.is_dir,
                name: b.name.clone(),
            })
            .collect(),
        context: super::context::Context::current(),
    };
    let head = match serde_json::to_vec(&req) {
        Ok(h) => h,
        Err(_) => return Outcome::NotServed,
    };
    // The request is ready before we connect: the helper's thread, woken
    // by the connection, finds it waiting instead of sleeping again.
    let sock = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no helper at {}: {e}", path.display());
            return Outcome::NotServed;
        }
    };
    // Only a helper of our own uid gets our stdio and bind trees.
    match nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials) {
        // SAFETY: geteuid cannot fail.
        Ok(c) if c.uid() == unsafe { libc::geteuid() } => {}
        Ok(c) => {
            eprintln!(
                "sandbox: ignoring the helper at {}: it runs as uid {}",
                path.display(),
                c.uid()
            );
            return Outcome::NotServed;
        }
        Err(_) => return Outcome::NotServed,
    }
    let mut fds: Vec<RawFd> = vec![stdin.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd()];
    fds.extend(opened.iter().map(|b| b.fd.as_raw_fd()));
    if let Err(e) = send_frame(&sock, &head, &[], &fds) {
        // Nothing was started: the helper only acts on a whole request.
        tracing::debug!("helper at {}: {e}", path.display());
        return Outcome::NotServed;
    }
    drop((stdin, out, err, opened));
    let t_sent = t0.elapsed();
    let lost = |e: &dyn std::fmt::Display| {
        Outcome::Served(RunResult::sandbox_error(format!(
            "the helper at {} failed during the run: {e}",
            path.display()
        )))
    };
    let (head, _) = match recv_frame(&sock) {
        Ok(f) => f,
        Err(e) => return lost(&e),
    };
    tracing::debug!(
        sent_ms = t_sent.as_secs_f64() * 1e3,
        replied_ms = t0.elapsed().as_secs_f64() * 1e3,
        "helper client"
    );
    match serde_json::from_slice::<Reply>(&head) {
        Ok(Reply::Fallback { reason }) => {
            tracing::debug!("helper at {} declined: {reason}", path.display());
            Outcome::NotServed
        }
        Ok(Reply::Result {
            mut result,
            stdout_len,
            stderr_len,
        }) => {
            for (len, body) in [
                (stdout_len, &mut result.stdout),
                (stderr_len, &mut result.stderr),
            ] {
                match read_body(&sock, len) {
                    Ok(b) => *body = b,
                    Err(e) => return lost(&e),
                }
            }
            Outcome::Served(result)
        }
        Err(e) => lost(&e),
    }
}

/// A copy of this process's fd `n` to send, or /dev/null when it is closed
/// (what an in-process run does with a closed stdin).
fn std_fd(n: RawFd, write: bool) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only tests whether the fd is open.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } >= 0 {
        // SAFETY: borrowing an open fd of this process for the call.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
        b.try_clone_to_owned().ok()
    } else {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .ok()
            .map(Into::into)
    }
}
