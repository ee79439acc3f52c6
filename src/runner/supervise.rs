//! The supervisor's side of a run, from "go" to the end: one poll loop
//! over named slots (init's pidfd, the child's reports, the program's
//! output, cancellation, a terminal relay), the output caps, the CPU and
//! wall limits, and pass-through output that never blocks past a deadline.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::Status;
use super::report::{Ended, SetupFailed};
use super::spec::{OutputSpec, OutputStream, RunSpec};
use crate::isolation::sys;
use crate::limits::cgroup::RunCgroup;
use crate::profile::Limits;

/// The poll loop's slots, in the order of its pollfd array.
#[derive(Clone, Copy)]
enum Slot {
    /// init's pidfd: init has exited.
    Init,
    /// The error pipe: a setup failure, or EOF at the program's execve.
    SetupError,
    /// The status pipe: the program ended, the rest of the run is dead.
    Ended,
    Stdout,
    Stderr,
    /// The caller's cancellation fd.
    Cancel,
    /// The caller's terminal (stdin relayed to the program).
    Terminal,
    /// The relay pipe's write end, when it has data to take.
    Relay,
}

impl Slot {
    const COUNT: usize = Slot::Relay as usize + 1;
}

pub(super) struct Supervisor<'a> {
    pub(super) spec: &'a RunSpec,
    pub(super) limits: &'a Limits,
    pub(super) cgroup: Option<&'a RunCgroup>,
    pub(super) pidfd: RawFd,
    pub(super) err_r: RawFd,
    pub(super) status_r: RawFd,
    pub(super) out: [RawFd; 2],
    pub(super) start: Instant,
    pub(super) use_init: bool,
    /// Write end of the stdin relay (the caller's stdin is a terminal).
    pub(super) relay_w: Option<RawFd>,
    /// The caller's stdin (the relay's source), stdout and stderr.
    pub(super) caller: [RawFd; 3],
    /// CPU time in the cgroup before the program's run (see `base`).
    pub(super) cpu_base_ns: u64,
}

#[derive(Default)]
pub(super) struct Outcome {
    /// Wait status of the program (payload), if it ended by itself.
    pub(super) status: Option<i32>,
    /// The run was killed by the supervisor for this verdict.
    pub(super) killed_for: Option<Status>,
    pub(super) cancelled: bool,
    /// A setup step the child reported failed before exec.
    pub(super) child_error: Option<SetupFailed>,
    pub(super) output: [Vec<u8>; 2],
    pub(super) truncated: [bool; 2],
    pub(super) wall: Duration,
    pub(super) cpu_ns_at_kill: Option<u64>,
    /// When the program's execve succeeded (the error pipe closed), from "go".
    pub(super) exec_at: Option<Duration>,
    /// Init was reaped (otherwise it reported that everything else is dead
    /// and is still exiting).
    pub(super) init_reaped: bool,
}

impl Supervisor<'_> {
    pub(super) fn supervise(&self, pid: i32) -> Outcome {
        let mut o = Outcome::default();
        let cap = self.limits.output.unwrap_or(u64::MAX);
        // The wall clock starts when the program's execve succeeds; until
        // then a generous deadline covers a setup that hangs.
        let mut wall_deadline = self
            .limits
            .wall_time
            .map(|d| self.start + d + Duration::from_secs(5));
        let mut exec_at: Option<Instant> = None;
        let cpu_limit_ns = self.limits.cpu_time.map(|d| d.as_nanos() as u64);
        let mut open = [true, true];
        let mut err_open = true;
        let mut status_open = true;
        let mut init_done = false;
        // Init reported the program's status after killing and reaping
        // everything else: the run is over even before init is reaped.
        let mut all_dead = false;
        let mut killed = false;
        let mut buf = vec![0u8; 64 * 1024];
        let mut passed = [0u64; 2];
        let mut relay_open = self.relay_w.is_some();
        // Writes to a regular file never wait on a reader.
        let regular = [1, 2].map(|i| {
            // SAFETY: a zeroed stat is a valid value, filled by fstat.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let ok = unsafe { libc::fstat(self.caller[i], &mut st) } == 0;
            ok && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
        });
        let mut relay_buf: Vec<u8> = Vec::new();
        let kill = |o: &mut Outcome, why: Option<Status>, killed: &mut bool| {
            if !*killed {
                // SAFETY: signalling our own child (pid namespace init).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // With a pid namespace, init's death kills everything.
                if !self.use_init
                    && let Some(cg) = self.cgroup
                {
                    let _ = cg.kill_all();
                }
                *killed = true;
                if o.killed_for.is_none() && !o.cancelled {
                    o.killed_for = why;
                }
            }
        };
        loop {
            if (init_done || all_dead) && !open[0] && !open[1] {
                break;
            }
            // One pollfd per slot; -1 leaves a slot out this round.
            let mut fds = [libc::pollfd {
                fd: -1,
                events: libc::POLLIN,
                revents: 0,
            }; Slot::COUNT];
            let mut set =
                |slot: Slot, on: bool, fd: RawFd| fds[slot as usize].fd = if on { fd } else { -1 };
            set(Slot::Init, !init_done, self.pidfd);
            set(Slot::SetupError, err_open, self.err_r);
            set(Slot::Ended, status_open, self.status_r);
            set(Slot::Stdout, open[0], self.out[0]);
            set(Slot::Stderr, open[1], self.out[1]);
            set(
                Slot::Cancel,
                !killed,
                self.spec.cancel.as_ref().map_or(-1, |c| c.as_raw_fd()),
            );
            // The caller's terminal, read only when the relay has room.
            set(
                Slot::Terminal,
                relay_open && relay_buf.is_empty() && !killed && !init_done,
                self.caller[0],
            );
            // The relay pipe, when there is something to pass on.
            set(
                Slot::Relay,
                relay_open && !relay_buf.is_empty(),
                self.relay_w.unwrap_or(-1),
            );
            fds[Slot::Relay as usize].events = libc::POLLOUT;
            // How long to sleep: until the wall deadline, and short ticks
            // while a CPU limit needs sampling.
            let now = Instant::now();
            let mut timeout: i32 = -1;
            if !killed {
                if let Some(d) = wall_deadline {
                    timeout = d
                        .saturating_duration_since(now)
                        .as_millis()
                        .min(i32::MAX as u128) as i32
                        + 1;
                }
                if cpu_limit_ns.is_some() {
                    timeout = if timeout < 0 { 10 } else { timeout.min(10) };
                }
            } else if init_done {
                // Draining after the end: writers are dead, EOF is near.
                timeout = 1000;
            }
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 && sys::errno() != libc::EINTR {
                kill(&mut o, None, &mut killed);
            }
            if n == 0 && init_done {
                break; // a writer we cannot kill holds the pipe: stop waiting
            }
            let ready = |slot: Slot| fds[slot as usize].revents != 0;
            // Output first, so nothing is lost on the way out.
            for (k, slot) in [Slot::Stdout, Slot::Stderr].into_iter().enumerate() {
                if open[k] && ready(slot) {
                    // SAFETY: reading into our own buffer.
                    let r = unsafe { libc::read(self.out[k], buf.as_mut_ptr().cast(), buf.len()) };
                    if r <= 0 {
                        if r == 0 || sys::errno() != libc::EINTR {
                            open[k] = false;
                        }
                        continue;
                    }
                    let chunk = &buf[..r as usize];
                    let seen = o.output[k].len() as u64 + passed[k];
                    let room = cap.saturating_sub(seen) as usize;
                    let take = &chunk[..chunk.len().min(room)];
                    let pass = if k == 0 {
                        self.spec.stdout
                    } else {
                        self.spec.stderr
                    };
                    if let Some(tap) = &self.spec.tap
                        && !take.is_empty()
                    {
                        let stream = if k == 0 {
                            OutputStream::Stdout
                        } else {
                            OutputStream::Stderr
                        };
                        tap.output(stream, take);
                    }
                    match pass {
                        OutputSpec::Capture => o.output[k].extend_from_slice(take),
                        OutputSpec::PassThrough if regular[k] => {
                            passed[k] += take.len() as u64;
                            sys::write_all(self.caller[k + 1], take);
                        }
                        OutputSpec::PassThrough => {
                            passed[k] += take.len() as u64;
                            match self.pass_through(self.caller[k + 1], take, wall_deadline) {
                                Passed::Done => {}
                                Passed::Deadline => {
                                    kill(&mut o, Some(Status::WallTimeLimit), &mut killed)
                                }
                                Passed::Cancelled => {
                                    o.cancelled = true;
                                    kill(&mut o, None, &mut killed);
                                }
                            }
                        }
                    }
                    if chunk.len() > room {
                        o.truncated[k] = true;
                        kill(&mut o, Some(Status::OutputLimit), &mut killed);
                    }
                }
            }
            if err_open && ready(Slot::SetupError) {
                let mut msg = [0u8; SetupFailed::LEN];
                if sys::read_full(self.err_r, &mut msg) == SetupFailed::LEN as isize {
                    o.child_error = Some(SetupFailed::decode(&msg));
                    kill(&mut o, None, &mut killed);
                }
                if o.child_error.is_none() {
                    let now = Instant::now();
                    o.exec_at = Some(now - self.start);
                    exec_at = Some(now);
                    wall_deadline = self.limits.wall_time.map(|d| now + d);
                }
                err_open = false;
            }
            if status_open && ready(Slot::Ended) {
                let mut msg = [0u8; Ended::LEN];
                if sys::read_full(self.status_r, &mut msg) == Ended::LEN as isize
                    && let Some(end) = Ended::decode(&msg)
                {
                    all_dead = true;
                    o.status = Some(end.status);
                    if o.wall.is_zero() {
                        o.wall = exec_at.unwrap_or(self.start).elapsed();
                    }
                }
                status_open = false;
            }
            if !init_done && ready(Slot::Init) {
                let mut st = 0;
                // SAFETY: reaping our own child; pidfd says it has exited.
                let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                if r == pid {
                    init_done = true;
                    if o.wall.is_zero() {
                        o.wall = exec_at.unwrap_or(self.start).elapsed();
                    }
                    if !self.use_init && o.status.is_none() && o.child_error.is_none() {
                        o.status = Some(st);
                    }
                    // Without a pid namespace the program's children may live on.
                    if !self.use_init
                        && let Some(cg) = self.cgroup
                        && !cg.is_empty()
                    {
                        let _ = cg.kill_all();
                    }
                }
            }
            if relay_open && ready(Slot::Terminal) {
                // SAFETY: reading from the caller's stdin into our own buffer.
                let r = unsafe { libc::read(self.caller[0], buf.as_mut_ptr().cast(), buf.len()) };
                if r > 0 {
                    relay_buf.extend_from_slice(&buf[..r as usize]);
                } else if r == 0 || !matches!(sys::errno(), libc::EINTR | libc::EAGAIN) {
                    relay_open = false; // EOF (^D) or error: the program sees EOF
                    relay_close(self.relay_w);
                }
            }
            if relay_open
                && ready(Slot::Relay)
                && let Some(w) = self.relay_w
            {
                // SAFETY: writing our own buffer to our own pipe.
                let r = unsafe { libc::write(w, relay_buf.as_ptr().cast(), relay_buf.len()) };
                if r > 0 {
                    relay_buf.drain(..r as usize);
                } else if r < 0 && sys::errno() != libc::EAGAIN && sys::errno() != libc::EINTR {
                    relay_open = false; // the program closed its stdin
                    relay_close(self.relay_w);
                }
            }
            if !killed && ready(Slot::Cancel) {
                o.cancelled = true;
                kill(&mut o, None, &mut killed);
            }
            if !killed && !init_done && !all_dead {
                if let Some(limit) = cpu_limit_ns
                    && let Some(cg) = self.cgroup
                    && let Ok(total) = cg.cpu_usage_ns()
                    && let used = total.saturating_sub(self.cpu_base_ns)
                    && used >= limit
                {
                    o.cpu_ns_at_kill = Some(used);
                    kill(&mut o, Some(Status::TimeLimit), &mut killed);
                }
                if let Some(d) = wall_deadline
                    && Instant::now() >= d
                {
                    kill(&mut o, Some(Status::WallTimeLimit), &mut killed);
                }
            }
        }
        if !init_done && !all_dead {
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            init_done = true;
        }
        o.init_reaped = init_done;
        if o.wall.is_zero() {
            o.wall = exec_at.unwrap_or(self.start).elapsed();
        }
        o
    }
}

enum Passed {
    /// Written, or dropped because the reader is gone (EPIPE and the like).
    Done,
    /// The reader stopped reading and the wall-time limit ran out.
    Deadline,
    /// The reader stopped reading and the run was cancelled.
    Cancelled,
}

impl Supervisor<'_> {
    /// Copies output to the caller's fd without ever blocking past the
    /// run's wall-time deadline or its cancellation: a reader that stops
    /// reading (a full pipe) must not stall the limits. Writes go in pieces
    /// of at most PIPE_BUF, each after POLLOUT, so a blocking fd never
    /// blocks for long.
    fn pass_through(&self, fd: RawFd, mut data: &[u8], deadline: Option<Instant>) -> Passed {
        while !data.is_empty() {
            let mut fds = [
                libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.spec.cancel.as_ref().map_or(-1, |c| c.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32
            });
            // SAFETY: a valid array of two pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if n < 0 {
                if sys::errno() == libc::EINTR {
                    continue;
                }
                return Passed::Done;
            }
            if fds[1].revents != 0 {
                return Passed::Cancelled;
            }
            if n == 0 {
                return Passed::Deadline;
            }
            if fds[0].revents & libc::POLLOUT == 0 {
                return Passed::Done; // POLLERR/POLLHUP: nobody reads any more
            }
            let piece = &data[..data.len().min(libc::PIPE_BUF)];
            // SAFETY: writing a slice we own.
            let w = unsafe { libc::write(fd, piece.as_ptr().cast(), piece.len()) };
            if w < 0 {
                match sys::errno() {
                    libc::EINTR => continue,
                    // A non-blocking fd (shared with the caller) may report
                    // room it then refuses: wait a little, never spin.
                    libc::EAGAIN => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    _ => return Passed::Done,
                }
            }
            data = &data[w as usize..];
        }
        Passed::Done
    }
}

/// Close the relay's write end early (EOF for the program); the OwnedFd
/// that owns it is dropped later, so it is replaced by /dev/null here
/// rather than closed twice.
fn relay_close(fd: Option<RawFd>) {
    if let Some(fd) = fd
        && let Ok(null) = std::fs::File::open("/dev/null")
    {
        // SAFETY: dup2 onto an fd we own; it stays valid until its OwnedFd drops.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}
