//! Issue 15, part 4: `[network]` modes, the egress policy of `private`, the
//! bandwidth cap.
//!
//! Every address used here belongs to network namespaces the test makes:
//! an "outer" namespace (the host, from the run's point of view: pasta's
//! upstream) joined by a veth pair to a "servers" namespace holding the test
//! servers on 198.51.100.0/24 (TEST-NET-2, a documentation range standing for
//! the internet), 10.200.0.0/24 (a private range) and 169.254.169.254 (the
//! cloud metadata address). The outer namespace has no other link, so
//! nothing can leave it; `sandbox exec` runs inside it (nsenter). Servers are
//! threads of this process moved into the servers namespace; both
//! namespaces are deleted, and the servers stopped, when a test ends.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

macro_rules! root_net_or_skip {
    ($name:expr) => {
        if !require_root($name) {
            return;
        }
        for prog in ["ip", "pasta", "nft", "tc", "nsenter"] {
            assert!(
                have(prog),
                "{prog} is missing (.ci/run installs passt, iproute2, nftables)"
            );
        }
    };
}

/// What a test server does with each connection.
#[derive(Clone)]
enum Kind {
    /// Writes this line and closes.
    Hello(&'static str),
    /// Writes this many bytes and closes.
    Blob(usize),
    /// Reads this many bytes (or to EOF), records (bytes, seconds from
    /// accept), then answers "done" (a run's data in flight dies with it:
    /// the client waits for the answer).
    Sink(usize, Arc<Mutex<Vec<(usize, f64)>>>),
}

struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server on `addr` inside the named network namespace: a thread
/// that enters it (setns moves only the calling thread) and listens there.
fn serve(netns: &str, addr: &str, kind: Kind) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, addr, st) = (
        format!("/run/netns/{netns}"),
        addr.to_string(),
        stop.clone(),
    );
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns on this thread with a valid namespace fd.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        let l = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    let kind = kind.clone();
                    std::thread::spawn(move || {
                        let t0 = Instant::now();
                        match kind {
                            Kind::Hello(s) => {
                                let _ = c.write_all(format!("{s}\n").as_bytes());
                            }
                            Kind::Blob(n) => {
                                let _ = c.write_all(&vec![b'x'; n]);
                            }
                            Kind::Sink(want, rec) => {
                                let mut n = 0;
                                let mut buf = vec![0u8; 1 << 16];
                                while n < want {
                                    match c.read(&mut buf) {
                                        Ok(0) | Err(_) => break,
                                        Ok(k) => n += k,
                                    }
                                }
                                rec.lock().unwrap().push((n, t0.elapsed().as_secs_f64()));
                                let _ = c.write_all(b"done\n");
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    Server {
        stop,
        thread: Some(thread),
    }
}

/// A UDP server on `addr` in the named namespace answering each datagram
/// with "PONG:" and the datagram.
fn serve_udp(netns: &str, addr: &str) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, addr, st) = (
        format!("/run/netns/{netns}"),
        addr.to_string(),
        stop.clone(),
    );
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        // SAFETY: setns on this thread with a valid namespace fd.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        let u = std::net::UdpSocket::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        while !st.load(Ordering::Relaxed) {
            if let Ok((n, from)) = u.recv_from(&mut buf) {
                let mut reply = b"PONG:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = u.send_to(&reply, from);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    Server {
        stop,
        thread: Some(thread),
    }
}

/// Two network namespaces joined by a veth pair (see the module comment).
/// Dropping it stops its servers and deletes both namespaces.
struct Topo {
    outer: String,
    srv: String,
    /// The servers' end of the veth pair.
    srv_dev: String,
    servers: Vec<Server>,
    files: Vec<tempfile::NamedTempFile>,
}

impl Topo {
    fn new() -> Topo {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let (outer, srv) = (format!("sbxn{id}o"), format!("sbxn{id}s"));
        let (vo, vs) = (format!("sbxv{id}o"), format!("sbxv{id}s"));
        ip(&["netns", "add", &outer]);
        let t = Topo {
            outer: outer.clone(),
            srv: srv.clone(),
            srv_dev: vs.clone(),
            servers: vec![],
            files: vec![],
        };
        ip(&["netns", "add", &srv]);
        ip(&[
            "link", "add", &vo, "netns", &outer, "type", "veth", "peer", "name", &vs, "netns", &srv,
        ]);
        for a in ["198.51.100.1/24", "10.200.0.1/24"] {
            ip(&["-n", &outer, "addr", "add", a, "dev", &vo]);
        }
        for a in [
            "198.51.100.2/24",
            "10.200.0.2/24",
            "10.200.0.130/24",
            "169.254.169.254/16",
        ] {
            ip(&["-n", &srv, "addr", "add", a, "dev", &vs]);
        }
        for (ns, dev) in [(&outer, &vo), (&srv, &vs)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // pasta takes the interface of the default route as its template.
        ip(&[
            "-n",
            &outer,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.2",
        ]);
        t
    }

    fn serve_srv(&mut self, addr: &str, kind: Kind) {
        let s = serve(&self.srv, addr, kind);
        self.servers.push(s);
    }

    fn serve_outer(&mut self, addr: &str, kind: Kind) {
        let s = serve(&self.outer, addr, kind);
        self.servers.push(s);
    }

    /// A profile file: strict plus `body`.
    fn profile(&mut self, body: &str) -> String {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        write!(f, "extends = \"strict\"\n{body}\n").unwrap();
        let p = f.path().display().to_string();
        self.files.push(f);
        p
    }

    /// `sandbox exec --json -p PROFILE -- bash -c SCRIPT` inside the outer namespace.
    fn exec(&self, profile: &str, script: &str) -> Out {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.outer))
            .arg(&*SANDBOX)
            .args(["exec", "--json", "-p", profile, "--", "bash", "-c", script])
            .stdin(Stdio::null())
            .env("SANDBOX_HELPER", "off");
        let o = run_cmd(c);
        self.assert_no_process_left();
        o
    }

    /// No process is left in the outer namespace (pasta lives there while
    /// its run does; this process's server threads are not processes).
    fn assert_no_process_left(&self) {
        let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let outer = ino(&format!("/run/netns/{}", self.outer)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = vec![];
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.parse::<u32>().is_ok()
                    && name != std::process::id().to_string()
                    && ino(&format!("/proc/{name}/ns/net")).ok() == Some(outer)
                {
                    let cmd = std::fs::read(format!("/proc/{name}/cmdline")).unwrap_or_default();
                    left.push(format!(
                        "{name}: {}",
                        String::from_utf8_lossy(&cmd).replace('\0', " ")
                    ));
                }
            }
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left in the test's outer namespace: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.outer])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.srv])
            .status();
    }
}

/// A bash function `probe HOST PORT NAME` printing `NAME=<first line>` or
/// `NAME=FAIL` (connect refused, reset, unreachable or 3 s without answer).
const PROBE: &str = r#"probe() { if out=$(timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2 && head -n1 <&3" 2>/dev/null) && [ -n "$out" ]; then echo "$3=$out"; else echo "$3=FAIL"; fi; }
"#;

fn probes(o: &Out) -> std::collections::BTreeMap<String, String> {
    assert_eq!(o.status(), "ok", "{}\n{}", o.stdout_str(), o.stderr);
    o.prog_stdout()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn standard_servers(t: &mut Topo) {
    t.serve_srv("198.51.100.2:7001", Kind::Hello("PUBLIC"));
    t.serve_srv("10.200.0.2:7002", Kind::Hello("PRIVATE-ALLOWED"));
    t.serve_srv("10.200.0.130:7002", Kind::Hello("PRIVATE-DENIED"));
    t.serve_srv("169.254.169.254:7003", Kind::Hello("METADATA"));
    // The host's loopback, and a host service on all its addresses.
    t.serve_outer("127.0.0.1:7004", Kind::Hello("HOST-LOOPBACK"));
    t.serve_outer("0.0.0.0:7005", Kind::Hello("HOST-SERVICE"));
}

const PROBES: &str = "probe 198.51.100.2 7001 public
probe 10.200.0.2 7002 allowed
probe 10.200.0.130 7002 denied
probe 169.254.169.254 7003 metadata
probe 198.51.100.2 7004 gateway_to_host_loopback
probe 127.0.0.1 7004 loopback
probe 10.200.0.1 7005 host_address
probe 198.51.100.1 7005 host_primary_address
";

#[test]
fn private_egress_policy() {
    root_net_or_skip!("private_egress_policy");
    let mut t = Topo::new();
    standard_servers(&mut t);
    let p = t.profile("[network]\nmode = \"private\"\nallow = [\"10.200.0.0/25\"]\n");
    let o = t.exec(
        &p,
        &format!("{PROBE}{PROBES}cat /etc/resolv.conf | sed 's/^/resolv=/'"),
    );
    let got = probes(&o);
    let want = [
        ("public", "PUBLIC"),
        ("allowed", "PRIVATE-ALLOWED"),
        ("denied", "FAIL"),
        ("metadata", "FAIL"),
        ("gateway_to_host_loopback", "FAIL"),
        ("loopback", "FAIL"),
        ("host_address", "FAIL"),
        ("host_primary_address", "FAIL"),
        ("resolv", "nameserver 169.254.1.53"),
    ];
    for (k, v) in want {
        assert_eq!(got.get(k).map(String::as_str), Some(v), "{k}: {got:?}");
    }

    // The denied servers are there: an allow list naming them reaches them
    // (so the refusals above are the policy's, not the test network's).
    let p = t.profile(
        "[network]\nmode = \"private\"\nallow = [\"10.200.0.128/25\", \"169.254.169.254/32\", \"10.200.0.1/32\"]\n",
    );
    let got = probes(&t.exec(&p, &format!("{PROBE}{PROBES}")));
    for (k, v) in [
        ("public", "PUBLIC"),
        ("allowed", "FAIL"),
        ("denied", "PRIVATE-DENIED"),
        ("metadata", "METADATA"),
        ("host_address", "HOST-SERVICE"),
        // Never, whatever the allow list: pasta maps nothing to the host's loopback.
        ("gateway_to_host_loopback", "FAIL"),
    ] {
        assert_eq!(got.get(k).map(String::as_str), Some(v), "{k}: {got:?}");
    }
}

#[test]
fn none_reaches_nothing() {
    root_net_or_skip!("none_reaches_nothing");
    let mut t = Topo::new();
    standard_servers(&mut t);
    for body in ["", "[network]\nmode = \"none\"\n"] {
        let p = t.profile(body);
        let got = probes(&t.exec(&p, &format!("{PROBE}{PROBES}")));
        assert_eq!(got.len(), 8, "{got:?}");
        for (k, v) in &got {
            assert_eq!(v, "FAIL", "{k} reached with mode none: {got:?}");
        }
    }
    // The test network itself works: the outer namespace reaches the public server.
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", t.outer)).args([
        "bash",
        "-c",
        &format!("{PROBE}probe 198.51.100.2 7001 public"),
    ]);
    let o = c.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "public=PUBLIC");
}

/// Seconds the run took to read `bytes` from a blob server.
fn timed_download(t: &Topo, profile: &str, port: u16, bytes: usize) -> f64 {
    let script = format!(
        "s=$(date +%s%N); n=$(timeout 30 bash -c 'exec 3<>/dev/tcp/198.51.100.2/{port} && cat <&3 | wc -c'); e=$(date +%s%N); echo \"$n $(( (e - s) / 1000000 ))\""
    );
    let o = t.exec(profile, &script);
    assert_eq!(o.status(), "ok", "{}\n{}", o.stdout_str(), o.stderr);
    let out = o.prog_stdout();
    let mut it = out.split_whitespace();
    let n: usize = it.next().unwrap().parse().unwrap();
    let ms: f64 = it.next().unwrap().parse().unwrap();
    assert_eq!(n, bytes, "{out}");
    ms / 1e3
}

#[test]
fn bandwidth_cap_both_directions() {
    root_net_or_skip!("bandwidth_cap_both_directions");
    const BYTES: usize = 5_000_000;
    const CAP: f64 = 10e6;
    // No faster than the cap + 20 %.
    let min_secs = BYTES as f64 * 8.0 / (CAP * 1.2);
    let mut t = Topo::new();
    t.serve_srv("198.51.100.2:7010", Kind::Blob(BYTES));
    let sink = Arc::new(Mutex::new(vec![]));
    t.serve_srv("198.51.100.2:7011", Kind::Sink(BYTES, sink.clone()));
    let capped = t.profile("[network]\nmode = \"private\"\nbandwidth = \"10mbit\"\n");
    let free = t.profile("[network]\nmode = \"private\"\n");

    let down = timed_download(&t, &capped, 7010, BYTES);
    let rate = BYTES as f64 * 8.0 / down / 1e6;
    eprintln!("download of {BYTES} bytes under a 10mbit cap: {down:.2} s = {rate:.2} Mbit/s");
    assert!(
        down >= min_secs,
        "{down:.2} s < {min_secs:.2} s: {rate:.2} Mbit/s beats the cap"
    );
    let down_free = timed_download(&t, &free, 7010, BYTES);
    eprintln!("the same without a cap: {down_free:.3} s");
    assert!(
        down_free * 3.0 < down,
        "uncapped {down_free:.3} s vs capped {down:.2} s"
    );

    let o = t.exec(
        &capped,
        "exec 3<>/dev/tcp/198.51.100.2/7011 && head -c 5000000 /dev/zero >&3 && timeout 30 head -n1 <&3",
    );
    assert_eq!(o.status(), "ok", "{}\n{}", o.stdout_str(), o.stderr);
    assert_eq!(o.prog_stdout().trim(), "done");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (n, up) = loop {
        if let Some(&r) = sink.lock().unwrap().first() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never ended at the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rate = n as f64 * 8.0 / up / 1e6;
    eprintln!(
        "upload of {n} bytes under a 10mbit cap, at the server: {up:.2} s = {rate:.2} Mbit/s"
    );
    assert_eq!(n, BYTES);
    assert!(
        up >= min_secs,
        "{up:.2} s < {min_secs:.2} s: {rate:.2} Mbit/s beats the cap"
    );
}

#[test]
fn dns_goes_to_the_hosts_resolver() {
    root_net_or_skip!("dns_goes_to_the_hosts_resolver");
    // pasta forwards to the first resolver of the host's /etc/resolv.conf:
    // the test's "resolver" takes that address inside the test's own
    // namespaces (the servers' namespace, or the outer one's loopback for a
    // 127.x stub), so the query never leaves them.
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let first = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .find_map(|a| a.parse::<std::net::IpAddr>().ok());
    let Some(std::net::IpAddr::V4(resolver)) = first else {
        eprintln!(
            "\n!!!!!!!! SKIPPED: the host's first resolver is not IPv4 ({first:?}) !!!!!!!!\n"
        );
        return;
    };
    let mut t = Topo::new();
    let ns = if resolver.is_loopback() {
        t.outer.clone()
    } else {
        ip(&[
            "-n",
            &t.srv,
            "addr",
            "add",
            &format!("{resolver}/32"),
            "dev",
            &t.srv_dev,
        ]);
        t.srv.clone()
    };
    let s = serve_udp(&ns, &format!("{resolver}:53"));
    t.servers.push(s);
    let p = t.profile("[network]\nmode = \"private\"\n");
    let o = t.exec(
        &p,
        "read -r _ ns < /etc/resolv.conf; exec 3<>/dev/udp/$ns/53; printf query >&3; timeout 3 head -c 10 <&3; echo; \
         exec 4<>/dev/udp/$ns/54; printf other >&4; timeout 2 head -c 10 <&4 || echo no-answer",
    );
    assert_eq!(o.status(), "ok", "{}\n{}", o.stdout_str(), o.stderr);
    // Port 53 of the forwarder reaches the resolver; no other port of it does.
    assert_eq!(
        o.prog_stdout(),
        "PONG:query\nno-answer\n",
        "{}",
        o.stdout_str()
    );
}

#[test]
fn pasta_failure_is_a_sandbox_error() {
    root_net_or_skip!("pasta_failure_is_a_sandbox_error");
    // A namespace without a default route: pasta finds no interface to copy.
    let t = Topo::new();
    ip(&["-n", &t.outer, "route", "del", "default"]);
    let mut t = t;
    let p = t.profile("[network]\nmode = \"private\"\n");
    let o = t.exec(&p, "echo never");
    assert_eq!(
        o.status(),
        "sandbox_error",
        "{}\n{}",
        o.stdout_str(),
        o.stderr
    );
    assert!(!o.prog_stdout().contains("never"));
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(all.contains("pasta"), "{all}");
}

// ---- profile keys (no root needed)

fn check(body: &str) -> Out {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(body.as_bytes()).unwrap();
    let o = run(&["profile", "check", &f.path().display().to_string()]);
    drop(f);
    o
}

#[test]
fn network_keys_are_checked() {
    let o = check("extends = \"strict\"\n[network]\nmode = \"private\"\nbandwidth = \"10mb\"\n");
    assert_eq!(o.code, 2);
    assert!(
        o.stdout_str()
            .contains(":4:1: network.bandwidth: invalid rate \"10mb\""),
        "{}",
        o.stdout_str()
    );
    let o = check("[network]\nmode = \"privat\"\n");
    assert!(
        o.stdout_str()
            .contains("network.mode: unknown network mode \"privat\""),
        "{}",
        o.stdout_str()
    );
    assert!(
        o.stdout_str().contains("did you mean \"private\""),
        "{}",
        o.stdout_str()
    );
    let o = check("[network]\nmode = \"private\"\nallow = [\"10.1.2.3/8\"]\n");
    assert!(
        o.stdout_str().contains("network.allow[0]: invalid CIDR"),
        "{}",
        o.stdout_str()
    );
    let o = check("[network]\nmode = \"none\"\nbandwidth = \"1mbit\"\n");
    assert!(
        o.stdout_str().contains(
            "network.bandwidth: network.bandwidth applies only to network.mode = \"private\""
        ),
        "{}",
        o.stdout_str()
    );
    // One file setting both keys, in contradiction: an error naming both.
    let o = check("[namespaces]\nnetwork = true\n[network]\nmode = \"host\"\n");
    assert_eq!(o.code, 2);
    assert!(
        o.stdout_str()
            .contains("network.mode = \"host\" contradicts namespaces.network = true"),
        "{}",
        o.stdout_str()
    );
    let o = check("[network]\nmode = \"private\"\n[capabilities]\nkeep = [\"CAP_NET_ADMIN\"]\n");
    assert!(
        o.stdout_str().contains(
            "capabilities.keep[0]: keeping CAP_NET_ADMIN with network.mode = \"private\""
        ),
        "{}",
        o.stdout_str()
    );
    let o = check(
        "[network]\nmode = \"private\"\n[namespaces]\nuser = false\npid = false\n[process]\nhost_uid = 65534\nuid = 65534\ngid = 65534\n",
    );
    assert!(
        o.stdout_str().contains("needs a user namespace"),
        "{}",
        o.stdout_str()
    );
}

#[test]
fn old_and_new_keys_both_work_through_extends() {
    // strict sets both keys; the nearer file wins.
    for body in [
        "extends = \"strict\"\n[namespaces]\nnetwork = false\n",
        "extends = \"strict\"\n[network]\nmode = \"host\"\n",
    ] {
        let o = check(body);
        assert_eq!(o.code, 0, "{body}: {}", o.stdout_str());
        let out = o.stdout_str();
        assert!(out.contains(": ok\n"), "{out}");
        assert!(out.contains(": warning: network.mode: \"host\""), "{out}");
    }
    let o = check(
        "extends = \"strict\"\n[network]\nmode = \"private\"\nallow = [\"10.0.0.0/8\"]\nbandwidth = \"1gbit\"\n",
    );
    assert_eq!(o.code, 0, "{}", o.stdout_str());
    assert!(!o.stdout_str().contains("warning"), "{}", o.stdout_str());
    // A private profile extended back to the old key: host.
    let mut parent = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    parent
        .write_all(b"extends = \"strict\"\n[network]\nmode = \"private\"\n")
        .unwrap();
    let o = check(&format!(
        "extends = \"{}\"\n[namespaces]\nnetwork = false\n",
        parent.path().display()
    ));
    assert_eq!(o.code, 0, "{}", o.stdout_str());
    assert!(
        o.stdout_str().contains("warning: network.mode"),
        "{}",
        o.stdout_str()
    );
    // The resolved profile shows both, and loads again.
    let o = run(&["profile", "show", "strict"]);
    let shown = o.stdout_str();
    assert!(shown.contains("[network]\nmode = \"none\""), "{shown}");
    assert!(check(&shown).stdout_str().contains(": ok"));
}
