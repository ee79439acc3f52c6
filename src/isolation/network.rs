//! A `private` run's network: user-mode NAT by `pasta` (Debian's `passt`
//! package) into the run's own network namespace, an egress policy and a
//! bandwidth cap, all set up by the supervisor before the program starts.
//!
//! Order, from [`PrivateNet::start`] (called while the container is made,
//! so before "go"; nothing here runs in the cloned child):
//! 1. `pasta` is started as a child of the supervisor, in the foreground
//!    (`-f`, so its pid stays ours to kill), on the run's user and network
//!    namespaces handed to it as inherited descriptors. It makes the tap
//!    interface `eth0` with the host's address and default gateway
//!    (`--config-net`), and writes its pid into a pipe (`-P`) once that is
//!    done: the supervisor waits for that line (or pasta's exit) before it
//!    goes on. Options that matter for the policy: no port forwarding in
//!    either direction (`-t none -u none -T none -U none`: pasta's default
//!    `auto` would bind the run's listening ports on the host and, with
//!    `-T`, the host's loopback ports inside the run), and `--no-map-gw` (the
//!    gateway address is not turned into the host's loopback). So the host's
//!    loopback is unreachable from the run whatever the rules below say; UDP
//!    to [`DNS_FORWARDER`] port 53 is the one thing pasta redirects, to the
//!    host's first resolver (`--dns-forward`).
//! 2. The egress policy: an nftables table in the run's namespace (`nft -f`
//!    run by the supervisor inside it). Its output hook accepts loopback
//!    traffic (the run's own `lo`), IPv6 neighbour discovery, DNS to the
//!    forwarder, then every
//!    `network.allow` CIDR, and refuses (TCP reset, else ICMP
//!    administratively prohibited) the default-denied ranges
//!    ([`DENIED_BY_DEFAULT`]) and the host's own addresses. A filter rather
//!    than routes: a `prohibit` route is skipped by lookups with a narrower
//!    scope (`SO_DONTROUTE`), the connected subnet pasta configures would
//!    outrank a shorter deny prefix, and the gateway is needed as a next
//!    hop even when its address is private; the output hook sees every
//!    packet the run's sockets send, whatever the routing. An `allow` entry
//!    wins over every default range that contains it (it is matched first).
//! 3. The bandwidth cap: a token bucket (`tc tbf`) on `eth0`'s egress, and
//!    the same on an `ifb` device that `eth0`'s ingress is redirected to
//!    (`tc ... action mirred`): both directions, shaped rather than
//!    policed (dropping pasta's 64 KiB frames makes TCP crawl).
//!
//! The program cannot undo any of it: the namespace belongs to the run's
//! user namespace, in which the program has no capability (a profile that
//! keeps CAP_NET_ADMIN, CAP_NET_RAW or CAP_SYS_ADMIN with `private` is
//! refused when it loads).
//!
//! pasta runs as the job's host uid (the owner of the run's user namespace,
//! so it may join it) when `/dev/net/tun` is usable by that uid (Debian's
//! default mode 0666); otherwise as uid 0 joined to the run's user
//! namespace, where its capabilities are the run's namespace's and none of
//! the host's. Either way it confines itself (its own namespaces, seccomp,
//! no_new_privs). Dropping [`PrivateNet`] kills it by pid and reaps it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::profile::network::DENIED_BY_DEFAULT;
use crate::profile::{Cidr, Network};

/// Where a private run sends DNS queries (its `/etc/resolv.conf` names it):
/// pasta maps UDP port 53 of this address to the host's first resolver.
/// A link-local address, like the DNS of the big clouds' metadata ranges:
/// it is never a real host of the run's network.
pub const DNS_FORWARDER: &str = "169.254.1.53";
/// The tap interface inside the run.
pub const IFACE: &str = "eth0";
const IFB: &str = "sbx-ifb";
/// How long pasta may take to set the namespace up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// tbf's queue: with less, the ingress side drops pasta's large frames
/// and TCP falls far below the cap.
const TBF_LIMIT: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network.mode = \"private\": starting pasta (Debian package passt): {0}")]
    Spawn(std::io::Error),
    #[error("network.mode = \"private\": pasta failed ({status}): {stderr}")]
    Pasta { status: String, stderr: String },
    #[error("network.mode = \"private\": pasta did not set the network up within {0:?}")]
    Timeout(Duration),
    #[error("network.mode = \"private\": {what} in the run's network namespace: {detail}")]
    Command { what: String, detail: String },
    #[error("network.mode = \"private\": {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// A running pasta for one container. Dropping it kills pasta (by its pid,
/// our own unreaped child) and reaps it.
pub struct PrivateNet {
    pasta: Child,
}

impl Drop for PrivateNet {
    fn drop(&mut self) {
        let _ = self.pasta.kill();
        let _ = self.pasta.wait();
    }
}

impl PrivateNet {
    pub fn pid(&self) -> u32 {
        self.pasta.id()
    }

    /// Gives the namespaces of `pid` (the run's init, its user namespace
    /// owned by `owner` when `Some`) their network, policy and cap; returns
    /// once all three are in place.
    pub fn start(
        pid: i32,
        net: &Network,
        owner: Option<(u32, u32)>,
    ) -> Result<PrivateNet, NetworkError> {
        let t0 = Instant::now();
        let open = |ns: &str| {
            File::open(format!("/proc/{pid}/ns/{ns}"))
                .map(OwnedFd::from)
                .map_err(io(format!("opening the run's {ns} namespace")))
        };
        let netns = open("net")?;
        let userns = open("user")?;
        let pasta = spawn_pasta(&netns, &userns, owner)?;
        let me = PrivateNet { pasta };
        tracing::debug!(
            pid = me.pid(),
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "pasta ready"
        );
        let rules = ruleset(&net.allow, &host_addresses());
        in_netns(
            &netns,
            "nft",
            &["-f", "-"],
            &rules,
            "installing the egress policy (nft)",
        )?;
        if let Some(rate) = net.bandwidth {
            in_netns(
                &netns,
                "ip",
                &["-batch", "-"],
                &format!("link add {IFB} type ifb\nlink set {IFB} up\n"),
                "adding the ingress device for network.bandwidth (ip link add type ifb)",
            )?;
            in_netns(
                &netns,
                "tc",
                &["-batch", "-"],
                &shaping(rate),
                "setting network.bandwidth (tc)",
            )?;
        }
        tracing::debug!(
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "private network ready"
        );
        Ok(me)
    }
}

/// Whether `uid` may open /dev/net/tun (pasta opens it after dropping to
/// the uid it runs as).
fn tun_usable_by_others() -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata("/dev/net/tun").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006)
}

fn spawn_pasta(
    netns: &OwnedFd,
    userns: &OwnedFd,
    owner: Option<(u32, u32)>,
) -> Result<Child, NetworkError> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("pipe")(e.into()))?;
    let stderr = tempfile::tempfile().map_err(io("a file for pasta's messages"))?;
    let runas = match owner {
        Some((uid, gid)) if tun_usable_by_others() => {
            // pasta opens the pipe again by its /proc/self/fd path once it
            // is that uid: the pipe must be the uid's.
            // SAFETY: fchown of a pipe we own, with integer ids.
            if unsafe { libc::fchown(ready_w.as_raw_fd(), uid, gid) } != 0 {
                return Err(io("handing the readiness pipe to the job's uid")(
                    std::io::Error::last_os_error(),
                ));
            }
            format!("{uid}:{gid}")
        }
        _ => "0:0".to_string(),
    };
    let (n, u, w) = (netns.as_raw_fd(), userns.as_raw_fd(), ready_w.as_raw_fd());
    // SAFETY: getpriority of the main thread; no pointers.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t) };
    let mut cmd = Command::new("pasta");
    cmd.args(["--runas", &runas, "-q", "-f", "--config-net", "-I", IFACE])
        .args([
            "-t",
            "none",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
            "--no-map-gw",
        ])
        .args(["--dns-forward", DNS_FORWARDER])
        .arg("-P")
        .arg(format!("/proc/self/fd/{w}"))
        .arg("--userns")
        .arg(format!("/proc/self/fd/{u}"))
        .arg("--netns")
        .arg(format!("/proc/self/fd/{n}"))
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            stderr
                .try_clone()
                .map_err(io("a file for pasta's messages"))?,
        );
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe raw syscalls (fcntl, setpriority, prctl).
    unsafe {
        cmd.pre_exec(move || {
            for fd in [n, u, w] {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // A pool thread making containers runs at nice 19: pasta
            // serves the run, at the supervisor's own priority.
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            // Until pasta changes its uid (which clears it).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(NetworkError::Spawn)?;
    drop(ready_w);
    let failed = |child: &mut Child, status: String| {
        let _ = child.kill();
        let _ = child.wait();
        NetworkError::Pasta {
            status,
            stderr: read_messages(&stderr),
        }
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut line = Vec::new();
    let mut ready = File::from(ready_r);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NetworkError::Timeout(READY_TIMEOUT));
        }
        let mut pfd = libc::pollfd {
            fd: ready.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(failed(&mut child, format!("poll: {e}")));
        }
        if r == 0 {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(failed(&mut child, st.to_string()));
            }
            continue;
        }
        let mut buf = [0u8; 64];
        match ready.read(&mut buf) {
            Ok(0) => {
                // pasta closed the pipe without a pid: it is exiting.
                let st = child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                return Err(failed(&mut child, st));
            }
            Ok(k) => {
                line.extend_from_slice(&buf[..k]);
                if line.contains(&b'\n') {
                    return Ok(child);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(&mut child, format!("reading its pid: {e}"))),
        }
    }
}

/// pasta's messages, one line, without its syslog noise.
fn read_messages(f: &File) -> String {
    let mut f = match f.try_clone() {
        Ok(f) => f,
        Err(e) => return e.to_string(),
    };
    let _ = f.rewind();
    let mut s = String::new();
    let _ = f.take(64 << 10).read_to_string(&mut s);
    let lines: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Failed to send")
                && !l.contains("routable interface for IPv6")
        })
        .collect();
    if lines.is_empty() {
        "no message".into()
    } else {
        lines.join("; ")
    }
}

/// Runs `prog args` with `input` on its stdin inside the network namespace
/// `netns` (entered between fork and exec), as the supervisor (root).
fn in_netns(
    netns: &OwnedFd,
    prog: &str,
    args: &[&str],
    input: &str,
    what: &str,
) -> Result<(), NetworkError> {
    let fd: RawFd = netns.as_raw_fd();
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setns is one raw syscall, async-signal-safe; it moves only
    // the forked child, before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let err = |detail: String| NetworkError::Command {
        what: what.to_string(),
        detail,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("running {prog}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| err(format!("writing to {prog}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for {prog}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr);
        Err(err(format!(
            "{prog} {}: {}",
            out.status,
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        )))
    }
}

/// The addresses of the supervisor's own network namespace (the host's),
/// loopback excepted: a run reaching them reaches the host.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned; its
        // address, when not NULL, is a sockaddr of the family it says.
        unsafe {
            let a = (*cur).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    out.retain(|a| !a.is_loopback());
    out.sort();
    out.dedup();
    out
}

/// The nftables ruleset of a private run (see the module comment). The
/// host's own addresses are refused before the allow list is looked at
/// (an allowed `10.0.0.0/8` must not open the host's services on
/// `10.0.0.5`), unless an allow entry names exactly that address.
pub fn ruleset(allow: &[Cidr], host: &[IpAddr]) -> String {
    let one = |addr: IpAddr| Cidr {
        addr,
        prefix: if addr.is_ipv4() { 32 } else { 128 },
    };
    let host: Vec<Cidr> = host
        .iter()
        .map(|&a| one(a))
        .filter(|h| !allow.contains(h))
        .collect();
    let denied: Vec<Cidr> = DENIED_BY_DEFAULT
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let set = |name: &str, v4: bool, list: &[Cidr]| {
        let ty = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        let elems: Vec<String> = list
            .iter()
            .filter(|c| c.is_v4() == v4)
            .map(|c| c.to_string())
            .collect();
        let elements = if elems.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", elems.join(", "))
        };
        format!("  set {name} {{ type {ty}; flags interval; auto-merge;{elements} }}\n")
    };
    let mut s = String::from("table inet sandbox {\n");
    for (name, list) in [
        ("host", &host),
        ("allow", &allow.to_vec()),
        ("deny", &denied),
    ] {
        s += &set(&format!("{name}4"), true, list);
        s += &set(&format!("{name}6"), false, list);
    }
    s += "  chain output {\n    type filter hook output priority 0; policy accept;\n";
    s += "    oif \"lo\" accept\n";
    // IPv6 neighbour discovery with pasta's link-local router (unicast
    // probes go to fe80::/10): no data reaches a service that way.
    s += "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept\n";
    s += &format!("    ip daddr {DNS_FORWARDER} udp dport 53 accept\n");
    let refuse = |s: &mut String, set: &str| {
        for (fam, n) in [("ip", "4"), ("ip6", "6")] {
            *s += &format!("    {fam} daddr @{set}{n} meta l4proto tcp reject with tcp reset\n");
            *s += &format!("    {fam} daddr @{set}{n} reject with icmpx admin-prohibited\n");
        }
    };
    refuse(&mut s, "host");
    s += "    ip daddr @allow4 accept\n    ip6 daddr @allow6 accept\n";
    refuse(&mut s, "deny");
    s += "  }\n}\n";
    s
}

/// tc commands for a cap of `rate` bits per second each way.
pub fn shaping(rate: u64) -> String {
    // The bucket must hold pasta's largest frame (64 KiB) or nothing
    // passes; 10 ms of traffic at higher rates.
    let burst = (rate / 8 / 100).max(128 << 10);
    let tbf = format!("tbf rate {rate}bit burst {burst} limit {TBF_LIMIT}");
    format!(
        "qdisc add dev {IFACE} root {tbf}\n\
         qdisc add dev {IFACE} handle ffff: ingress\n\
         filter add dev {IFACE} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev {IFB}\n\
         qdisc add dev {IFB} root {tbf}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_allows_before_it_denies() {
        let allow = [
            "10.200.0.0/24".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ];
        let r = ruleset(&allow, &["198.51.100.1".parse().unwrap()]);
        assert!(r.contains("set allow4 { type ipv4_addr; flags interval; auto-merge; elements = { 10.200.0.0/24 }; }"), "{r}");
        assert!(r.contains("elements = { fd00::/8 }"), "{r}");
        assert!(r.contains("set host4 { type ipv4_addr; flags interval; auto-merge; elements = { 198.51.100.1/32 }; }"), "{r}");
        assert!(
            r.contains("169.254.0.0/16") && r.contains("fe80::/10"),
            "{r}"
        );
        let h = r.find("daddr @host4").unwrap();
        let a = r.find("@allow4 accept").unwrap();
        let d = r.find("daddr @deny4").unwrap();
        assert!(h < a && a < d, "{r}");
        // An allow entry naming a host address exactly opens it.
        let r = ruleset(
            &["10.0.0.5/32".parse().unwrap()],
            &["10.0.0.5".parse().unwrap()],
        );
        assert!(
            r.contains("set host4 { type ipv4_addr; flags interval; auto-merge; }"),
            "{r}"
        );
        let empty = ruleset(&[], &[]);
        assert!(
            empty.contains("set allow4 { type ipv4_addr; flags interval; auto-merge; }"),
            "{empty}"
        );
    }

    #[test]
    fn shaping_holds_a_large_frame() {
        let s = shaping(10_000_000);
        assert!(
            s.contains("rate 10000000bit burst 131072 limit 4194304"),
            "{s}"
        );
        assert!(s.contains("redirect dev sbx-ifb"));
        assert!(shaping(1_000_000_000).contains("burst 1250000 "));
    }
}
