//! `sandbox serve` under a service manager (`Type=notify`): with
//! `NOTIFY_SOCKET` set it sends READY=1 once it answers, RELOADING=1 and
//! READY=1 around a SIGHUP reload, STOPPING=1 when the drain begins.

mod common_server;

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common_server::{free_port, request};

fn bin() -> String {
    std::env::var("SANDBOX_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sandbox").to_string())
}

fn spawn(dir: &std::path::Path, addr: &str, notify_socket: &str) -> Child {
    Command::new(bin())
        .args(["serve", "--listen", addr, "--work-dir"])
        .arg(dir.join("jobs"))
        .env_remove("SANDBOX_TOKEN")
        .env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("server.log")).expect("log"),
        ))
        .spawn()
        .expect("spawn sandbox serve")
}

/// The next datagram (20 s at most).
fn recv(sock: &UnixDatagram, dir: &std::path::Path) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no notification: {e}\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        )
    });
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn lifecycle(sock: UnixDatagram, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn(dir.path(), &addr, name);
    assert_eq!(recv(&sock, dir.path()), "READY=1");
    // Ready means answering, at once.
    let r = request(&addr, "GET", "/healthz", None, None).expect("healthz");
    assert_eq!(r.status, 200);

    signal(&child, libc::SIGHUP);
    let reloading = recv(&sock, dir.path());
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(recv(&sock, dir.path()), "READY=1");

    signal(&child, libc::SIGTERM);
    assert_eq!(recv(&sock, dir.path()), "STOPPING=1");
    let st = child.wait().expect("wait");
    assert!(st.success(), "{st}");
}

#[test]
fn notifies_a_path_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind");
    lifecycle(sock, path.to_str().expect("utf-8"));
}

#[test]
fn notifies_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("sandbox-test-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(
        &SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name"),
    )
    .expect("bind");
    lifecycle(sock, &format!("@{name}"));
}

#[test]
fn an_unreachable_socket_does_not_stop_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let missing = dir.path().join("nobody-listens.sock");
    let mut child = spawn(dir.path(), &addr, missing.to_str().expect("utf-8"));
    let t0 = std::time::Instant::now();
    while request(&addr, "GET", "/healthz", None, None).map_or(true, |r| r.status != 200) {
        assert!(child.try_wait().expect("wait").is_none(), "server exited");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, libc::SIGTERM);
    assert!(child.wait().expect("wait").success());
}
