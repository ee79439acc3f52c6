//! `sandbox helper`: the listening side (see the module above for the
//! protocol). Threads made ahead accept and serve one client each at a
//! time (see [`spawn_acceptor`]); a pooled [`Sandbox`] per profile from a
//! [`SandboxCache`], replaced when the profile's content changes.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::context::Context;
use super::{Reply, Request, send_frame};
use crate::runner::PullPolicy;
use crate::runner::cache::SandboxCache;
use crate::runner::{CancelOn, OpenedBind, RunResult, RunSpec, Sandbox, StdinSpec};

/// Most profiles kept pooled at once; the least recently used goes first.
const MAX_PROFILES: usize = 8;

pub struct Options {
    pub socket: PathBuf,
    /// Containers kept ready per profile.
    pub pool: usize,
    /// Clients served at once; more wait in the socket's backlog.
    pub max_clients: usize,
    /// Bundled names or paths to load (and pool) at start.
    pub preload: Vec<String>,
    /// Exit when stdin reaches EOF (a supervisor holding a pipe).
    pub lifeline_stdin: bool,
    /// Serve clients in other cgroups too (their runs then live in the
    /// helper's cgroup, outside the client's limits).
    pub any_cgroup: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("{path}: {what}: {source}")]
    Socket {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: a helper is already listening there")]
    InUse { path: PathBuf },
    #[error("{path}: exists and is not a socket; refusing to replace it")]
    NotSocket { path: PathBuf },
    #[error(
        "{path}: the socket's directory must belong to uid {uid} and not be writable by group or others"
    )]
    UnsafeDir { path: PathBuf, uid: u32 },
    #[error("cannot read this process's context from /proc")]
    NoContext,
    #[error("--profile {name}: {msg}")]
    Profile { name: String, msg: String },
}

struct State {
    pool: usize,
    max_clients: usize,
    /// Threads accepting or serving clients, and how many of them wait in
    /// accept.
    acceptors: AtomicUsize,
    idle: AtomicUsize,
    stopping: AtomicBool,
    /// The pooled sandbox of every profile in use.
    sandboxes: SandboxCache,
    /// What runs inherit from this process (clients must match it).
    context: Context,
    any_cgroup: bool,
    /// Connections being served (a stop past its grace cancels their runs).
    active: Mutex<Vec<RawFd>>,
}

/// How long a stopping helper lets runs in progress go on before it
/// cancels them (a second signal cancels them at once).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Counts an acceptor thread until it ends, however it ends.
struct Slot(Arc<State>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.acceptors.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a client has to send its request, and to take its reply.
const CLIENT_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the helper until SIGINT/SIGTERM (SIGHUP reloads profiles; or stdin's EOF with
/// `lifeline_stdin`); returns once every client is done and every pooled
/// container is torn down.
pub fn serve(o: Options) -> Result<(), HelperError> {
    let context = Context::current().ok_or(HelperError::NoContext)?;
    let listener = bind_socket(&o.socket)?;
    let socket = o.socket.clone();
    let r = serve_on(o, listener, context);
    if r.is_err() {
        // Nobody will listen behind it (a helper that stops cleanly has
        // removed it already).
        let _ = std::fs::remove_file(&socket);
    }
    r
}

fn serve_on(o: Options, listener: UnixListener, context: Context) -> Result<(), HelperError> {
    // Signals are taken by one thread with sigwait: block them everywhere
    // before any other thread exists.
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::SIGINT,
        nix::sys::signal::SIGTERM,
        nix::sys::signal::SIGHUP,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    let pool = o.pool.max(1);
    let state = Arc::new(State {
        pool,
        max_clients: o.max_clients.max(1),
        acceptors: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        sandboxes: helper_cache(pool),
        context,
        any_cgroup: o.any_cgroup,
        active: Mutex::new(Vec::new()),
    });
    let r = serve_state(&o, listener, &state, set);
    // Whatever happened, nothing is left behind: replaced pools finish
    // their teardown, then every pool still held goes.
    state.sandboxes.shutdown();
    r
}

fn serve_state(
    o: &Options,
    listener: UnixListener,
    state: &Arc<State>,
    set: nix::sys::signal::SigSet,
) -> Result<(), HelperError> {
    for name in &o.preload {
        state
            .sandboxes
            .get(name, Path::new("/"), None)
            .map_err(|e| HelperError::Profile {
                name: name.clone(),
                msg: e.to_string(),
            })?;
    }
    let lfd = listener.as_raw_fd();
    if o.lifeline_stdin {
        std::thread::Builder::new()
            .name("helper-lifeline".into())
            .spawn(move || {
                let mut b = [0u8; 256];
                // SAFETY: reading our own stdin into our own buffer.
                while unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) } > 0 {}
                tracing::info!("stdin closed: stopping");
                // SAFETY: signalling this process; the main thread takes it.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            })
            .map_err(|e| sock_err(&o.socket, "starting the lifeline thread", e))?;
    }
    let listener = Arc::new(listener);
    for _ in 0..2.min(state.max_clients) {
        spawn_acceptor(state, &listener);
    }
    if state.acceptors.load(Ordering::SeqCst) == 0 {
        return Err(sock_err(
            &o.socket,
            "starting the client threads",
            std::io::Error::other("no thread could be started"),
        ));
    }
    tracing::info!(socket = %o.socket.display(), pool = state.pool, "helper listening");
    eprintln!("sandbox helper: listening on {}", o.socket.display());
    // SIGHUP reloads the profiles (the cached sandboxes are dropped: the
    // next run of each profile loads it fresh); it never stops the helper.
    loop {
        match set.wait() {
            Ok(nix::sys::signal::SIGHUP) => {
                let n = state.sandboxes.clear();
                tracing::info!(dropped = n, "SIGHUP: profiles reloaded");
            }
            Ok(sig) => {
                tracing::info!("{sig}: stopping");
                break;
            }
            Err(e) => {
                tracing::warn!("sigwait: {e}; stopping");
                break;
            }
        }
    }
    stop(state, lfd, &o.socket);
    // Runs in progress may finish within the grace; then (or at a second
    // signal) they are cancelled, and their clients still get the result.
    let t0 = Instant::now();
    let mut cancelled = false;
    while state.acceptors.load(Ordering::SeqCst) > 0 {
        if !cancelled && (t0.elapsed() >= STOP_GRACE || signalled(&set, Duration::from_millis(10)))
        {
            tracing::info!("cancelling the runs in progress");
            for &fd in lock(&state.active).iter() {
                // SAFETY: the fd is open while listed (its thread removes it
                // before closing); SHUT_RD makes it readable, which is the
                // run's cancel signal, and leaves the reply's way open.
                unsafe { libc::shutdown(fd, libc::SHUT_RD) };
            }
            cancelled = true;
        } else if cancelled {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Waits up to `d` for one of `set`'s signals (blocked in every thread)
/// other than SIGHUP (taken and ignored while stopping).
fn signalled(set: &nix::sys::signal::SigSet, d: Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid signal set and timespec; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    sig > 0 && sig != libc::SIGHUP
}

/// Starts a thread that accepts and serves clients, one at a time. Threads
/// are made ahead (a client never waits for one to start): whenever the
/// last idle one takes a client, it starts another, up to `max_clients`;
/// beyond that, clients wait in the socket's backlog.
fn spawn_acceptor(state: &Arc<State>, listener: &Arc<UnixListener>) {
    let max = state.max_clients;
    if state
        .acceptors
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_err()
    {
        return;
    }
    let (st, l) = (state.clone(), listener.clone());
    let spawned = std::thread::Builder::new()
        .name("helper-client".into())
        .spawn(move || {
            let _slot = Slot(st.clone());
            accept_loop(&st, &l);
        });
    if let Err(e) = spawned {
        state.acceptors.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!("starting a client thread: {e}");
    }
}

fn accept_loop(state: &Arc<State>, listener: &Arc<UnixListener>) {
    let mut backoff = false;
    loop {
        state.idle.fetch_add(1, Ordering::SeqCst);
        let r = listener.accept();
        let idle = state.idle.fetch_sub(1, Ordering::SeqCst) - 1;
        match r {
            Ok((conn, _)) => {
                backoff = false;
                if state.stopping.load(Ordering::SeqCst) {
                    // Connected before the socket went away: told to run
                    // in-process, never left to a reset.
                    decline(&conn, "the helper is stopping");
                    continue;
                }
                if idle == 0 {
                    spawn_acceptor(state, listener);
                }
                // A bug in one client's handling must not take the thread
                // (and, with --max-clients 1, the whole helper) with it.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_client(state, &conn)
                }));
                if served.is_err() {
                    tracing::error!("a client's handling panicked; the client gets no reply");
                }
            }
            Err(_) if state.stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                // EMFILE and the like: pause rather than spin.
                if !backoff {
                    tracing::warn!("accept: {e}");
                }
                backoff = true;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn stop(state: &State, listener: RawFd, socket: &Path) {
    if state.stopping.swap(true, Ordering::SeqCst) {
        return;
    }
    // New clients find no socket (and run in-process); the ones already
    // queued are accepted and declined, then accept fails and the loop ends.
    let _ = std::fs::remove_file(socket);
    // SAFETY: shutdown on the listening socket wakes the blocked accept.
    unsafe { libc::shutdown(listener, libc::SHUT_RDWR) };
}

fn sock_err(path: &Path, what: &'static str, source: std::io::Error) -> HelperError {
    HelperError::Socket {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Binds a socket only this uid may use (mode 0600 from the start).
fn bind_socket(path: &Path) -> Result<UnixListener, HelperError> {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| sock_err(dir, "creating the socket's directory", e))?;
        // Whoever may write the directory may replace the socket with one
        // of their own, and be handed clients' stdio and bind trees.
        let m = std::fs::symlink_metadata(dir)
            .map_err(|e| sock_err(dir, "checking the socket's directory", e))?;
        if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
            return Err(HelperError::UnsafeDir {
                path: dir.to_path_buf(),
                uid: me,
            });
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match UnixStream::connect(path) {
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                    // A dead helper's socket.
                    std::fs::remove_file(path)
                        .map_err(|e| sock_err(path, "removing a stale socket", e))?;
                }
                // Alive (or too busy to tell): never steal its socket.
                _ => {
                    return Err(HelperError::InUse {
                        path: path.to_path_buf(),
                    });
                }
            }
        }
        Ok(_) => {
            return Err(HelperError::NotSocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    // SAFETY: umask is process-wide, and no other thread exists yet.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    l.map_err(|e| sock_err(path, "binding", e))
}

fn decline(conn: &UnixStream, reason: &str) {
    let r = Reply::Fallback {
        reason: reason.to_string(),
    };
    if let Ok(head) = serde_json::to_vec(&r) {
        let _ = send_frame(conn, &head, &[], &[]);
    }
}

/// Lists a connection in [`State::active`] while it is served.
struct Active<'a>(&'a State, RawFd);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        lock(&self.0.active).retain(|&fd| fd != self.1);
    }
}

fn serve_client(state: &State, conn: &UnixStream) {
    lock(&state.active).push(conn.as_raw_fd());
    let _active = Active(state, conn.as_raw_fd());
    let cred = match nix::sys::socket::getsockopt(conn, nix::sys::socket::sockopt::PeerCredentials)
    {
        Ok(c) => c,
        Err(e) => return decline(conn, &format!("SO_PEERCRED: {e}")),
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if cred.uid() != me {
        tracing::warn!(
            uid = cred.uid(),
            pid = cred.pid(),
            "refused a client of another uid"
        );
        return decline(conn, "the helper serves only its own uid");
    }
    let _ = conn.set_read_timeout(Some(CLIENT_IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(CLIENT_IO_TIMEOUT));
    let t0 = Instant::now();
    let (head, fds) = match super::recv_frame(conn) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("client request: {e}");
            return;
        }
    };
    let req: Request = match serde_json::from_slice(&head) {
        Ok(r) => r,
        Err(e) => return decline(conn, &format!("bad request: {e}")),
    };
    // A run here must inherit what it would have inherited in-process.
    let diff = match &req.context {
        Some(c) => state.context.differences(c, !state.any_cgroup),
        None => vec!["context (unknown)"],
    };
    if !diff.is_empty() {
        let hint = if diff == ["cgroup"] {
            " (sandbox helper --any-cgroup serves other cgroups)"
        } else {
            ""
        };
        return decline(
            conn,
            &format!(
                "the client's {} differ(s) from the helper's{hint}",
                diff.join(", ")
            ),
        );
    }
    if fds.len() != 3 + req.binds.len() {
        return decline(
            conn,
            &format!(
                "{} fds came with the request, {} expected",
                fds.len(),
                3 + req.binds.len()
            ),
        );
    }
    let t_recv = t0.elapsed();
    // Bundled names resolve through the override directory: the client's
    // must be ours.
    let ovr = crate::profile::bundled::OVERRIDE_ENV;
    let theirs = req
        .caller_env
        .iter()
        .find(|(k, _)| k == ovr)
        .map(|(_, v)| v.as_str());
    if theirs.map(std::ffi::OsStr::new) != std::env::var_os(ovr).as_deref() {
        return decline(
            conn,
            &format!("the client's {ovr} differs from the helper's"),
        );
    }
    let sb = match state
        .sandboxes
        .get(&req.exec.profile, &req.cwd, req.exec.image.as_deref())
    {
        Ok(s) => s,
        // The client loads it itself and reports the error its own way.
        Err(e) => return decline(conn, &e.to_string()),
    };
    // Images from the helper's own store only, and never pulled here: a
    // run in an image of another store, or told to pull, runs in the
    // client.
    if sb.image().is_some() {
        let ours = state.sandboxes.images().map(|i| i.store().path());
        if ours != Some(req.exec.store.as_path()) || req.exec.pull == PullPolicy::Always {
            return decline(
                conn,
                "the run's image store or pull policy is not the helper's",
            );
        }
    }
    // Whose ids such a run is depends on the client's checkout (its binds
    // and working directory, ci's "." is the client's own): decided where
    // they are, in-process. Its containers are made for it anyway.
    if sb.profile.process.run_as_checkout_owner {
        return decline(
            conn,
            &format!(
                "profile {} acts as the checkout's owner (process.run_as_checkout_owner): run in-process",
                sb.profile.name
            ),
        );
    }
    // A client that gave up while its request waited (Ctrl-C while queued)
    // must not have its command started at all.
    let mut pfd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: polling one valid pollfd without waiting.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
        tracing::debug!("client gone before its run started");
        return;
    }
    let t_load = t0.elapsed();
    let result = run(&sb, &req, fds, conn);
    let t_run = t0.elapsed();
    let reply = Reply::Result {
        result: result.clone(),
        stdout_len: result.stdout.len() as u64,
        stderr_len: result.stderr.len() as u64,
    };
    match serde_json::to_vec(&reply) {
        Ok(head) => {
            if let Err(e) = send_frame(conn, &head, &[&result.stdout, &result.stderr], &[]) {
                tracing::debug!("client gone before its result: {e}");
            }
        }
        Err(e) => tracing::warn!("encoding a result: {e}"),
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        recv_ms = ms(t_recv),
        profile_ms = ms(t_load - t_recv),
        run_ms = ms(t_run - t_load),
        reply_ms = ms(t0.elapsed() - t_run),
        "client served"
    );
}

fn run(sb: &Sandbox, req: &Request, mut fds: Vec<OwnedFd>, conn: &UnixStream) -> RunResult {
    let binds: Vec<OwnedFd> = fds.split_off(3);
    let mut opened = Vec::with_capacity(binds.len());
    for (fd, b) in binds.into_iter().zip(&req.binds) {
        let dest = match std::ffi::CString::new(b.dest.as_bytes()) {
            Ok(d) => d,
            Err(_) => return RunResult::sandbox_error("bind destination contains a NUL byte"),
        };
        opened.push(OpenedBind {
            fd: Arc::new(fd),
            dest,
            is_dir: b.is_dir,
            name: b.name.clone(),
        });
    }
    let spec = RunSpec {
        // Stdin (a file or the client's own) is the first fd it sent.
        stdin: StdinSpec::Inherit,
        // The client never writes after its request: the socket turns
        // readable only when it goes away, which cancels the run.
        cancel: match conn.try_clone() {
            Ok(c) => Some(CancelOn::new(c.into())),
            Err(e) => return RunResult::sandbox_error(format!("watching the client socket: {e}")),
        },
        caller_fds: Some([fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()]),
        caller_env: Some(req.caller_env.clone()),
        opened_binds: opened,
        // The profile's relative binds are the client's directories.
        base_dir: Some(req.cwd.clone()),
        ..req.exec.spec(&sb.profile)
    };
    sb.run(&spec)
}

/// The helper's sandboxes, with the images of its store (`$SANDBOX_STORE`
/// or the default) when it can be opened: never pulled by the helper.
fn helper_cache(pool: usize) -> SandboxCache {
    let cache = SandboxCache::new(pool, MAX_PROFILES);
    match crate::image::Store::open(crate::image::store_path(None)) {
        Ok(store) => cache.with_images(Arc::new(crate::runner::Images::new(
            store,
            PullPolicy::Never,
            None,
        ))),
        Err(e) => {
            tracing::info!("no image store, runs in images are left to clients: {e}");
            cache
        }
    }
}
