//! `sandbox serve` as a service: several servers on one work directory,
//! stale instance directories, infrastructure failures as `failed`,
//! `/healthz`, draining on SIGTERM and reloading on SIGHUP. Needs root,
//! as the other server tests.

mod common_server;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common_server::{Server, left_in, request};
use serde_json::{Value, json};

fn signal(s: &Server, sig: i32) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(s.pid() as i32, sig) };
}

/// Waits for the server's exit (SIGKILL after `limit`), returning its status.
fn wait_exit(s: &mut Server, limit: Duration) -> std::process::ExitStatus {
    let mut c = s.child.take().expect("running");
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = c.kill();
            panic!("server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_running(s: &Server, id: &str) {
    let t0 = Instant::now();
    while s.get(&format!("/v1/jobs/{id}")).json()["status"] != "running" {
        assert!(t0.elapsed() < Duration::from_secs(10), "job never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sh(cmd: &str) -> Value {
    json!({"steps": [{"command": ["/bin/sh", "-c", cmd]}]})
}

fn instance_dirs(work: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = left_in(work)
        .into_iter()
        .filter(|n| n.starts_with("instance-"))
        .collect();
    v.sort();
    v
}

#[test]
fn two_servers_share_a_work_dir_without_touching_each_other() {
    let shared = tempfile::tempdir().expect("tempdir");
    let work = shared.path().join("jobs");
    let mut a = Server::start_in(Some(&work), &[], None, &[]);
    let b = Server::start_in(Some(&work), &[], None, &[]);
    assert_eq!(instance_dirs(&work).len(), 2, "one instance directory each");
    let r = b.post("/v1/jobs", &sh("sleep 1; echo from-b"));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_string();
    wait_running(&b, &id);
    let st = a.stop().expect("a's status");
    assert!(st.success(), "{st}: {}", a.log());
    assert!(work.is_dir(), "the shared base stays");
    assert_eq!(instance_dirs(&work).len(), 1, "only a's own directory went");
    let j = b.wait_job(&id, Duration::from_secs(20));
    assert_eq!(j["status"], "completed", "{j}");
    assert_eq!(j["steps"][0]["status"], "ok", "{j}");
    assert_eq!(j["steps"][0]["stdout"], "from-b\n", "{j}");
    for i in 0..3 {
        let j = b.run(&sh(&format!("echo later-{i} > f; cat f")));
        assert_eq!(j["status"], "completed", "{j}");
        assert_eq!(j["steps"][0]["stdout"], format!("later-{i}\n"), "{j}");
    }
    assert_eq!(b.get("/healthz").status, 200);
}

#[test]
fn stale_instance_directories_are_removed_held_ones_kept() {
    let shared = tempfile::tempdir().expect("tempdir");
    let work = shared.path().join("jobs");
    std::fs::create_dir(&work).expect("mkdir");
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o711))
        .expect("chmod");
    // A dead server's: its lock file held by nobody, and a leftover file.
    let stale = work.join("instance-999999999-0badc0de");
    std::fs::create_dir(&stale).expect("mkdir");
    std::fs::write(stale.join("lock"), "").expect("lock");
    std::fs::create_dir(stale.join("job")).expect("mkdir");
    // Its workspace still a tmpfs mount (here, on the host).
    nix::mount::mount(
        Some("tmpfs"),
        &stale.join("job"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount tmpfs");
    std::fs::write(stale.join("job/left"), "data").expect("file");
    // A live one's: this test holds its lock.
    let held = work.join("instance-1-c0ffee");
    std::fs::create_dir(&held).expect("mkdir");
    let lock = std::fs::File::create(held.join("lock")).expect("lock");
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "flock");
    std::fs::write(held.join("keep"), "data").expect("file");
    // Something that is no instance directory is not touched.
    std::fs::write(work.join("other"), "").expect("file");

    let mut s = Server::start_in(Some(&work), &[], None, &[]);
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(stale.to_str().expect("utf-8"))
    };
    if stale.exists() || mounted() {
        let _ = nix::mount::umount2(&stale.join("job"), nix::mount::MntFlags::MNT_DETACH);
        panic!("stale instance directory left (mounted: {})", mounted());
    }
    assert!(held.join("keep").exists(), "a held one is kept");
    assert!(work.join("other").exists());
    let j = s.run(&sh("echo ok"));
    assert_eq!(j["steps"][0]["stdout"], "ok\n", "{j}");
    let st = s.stop().expect("status");
    assert!(st.success(), "{st}: {}", s.log());
    let mut left = left_in(&work);
    left.sort();
    assert_eq!(left, ["instance-1-c0ffee", "other"], "only its own went");
    drop(lock);
}

#[test]
fn an_infrastructure_failure_is_status_failed_and_healthz_says_why() {
    let s = Server::start(&[], None);
    assert_eq!(s.get("/healthz").json()["status"], "ok");
    // Its instance directory vanishes (an operator's rm -rf): no job can
    // have a workspace any more.
    let dirs = instance_dirs(&s.work_dir);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    std::fs::remove_dir_all(s.work_dir.join(&dirs[0])).expect("rm");
    let j = s.run(&sh("echo never"));
    assert_eq!(j["status"], "failed", "{j}");
    let err = j["error"].as_str().unwrap_or_default();
    assert!(err.contains("workspace"), "{j}");
    assert_eq!(j["steps"], json!([]), "{j}");
    let m = s.get("/metrics").text();
    assert!(m.contains("sandbox_jobs_failed_total 1"), "{m}");
    assert!(
        m.contains("sandbox_jobs_finished_total{status=\"failed\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sandbox_jobs_finished_total{status=\"completed\"} 0"),
        "{m}"
    );
    let h = s.get("/healthz");
    assert_eq!(h.status, 503, "{}", h.text());
    let h = h.json();
    assert_eq!(h["status"], "unhealthy", "{h}");
    assert!(
        h["failed"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("work directory:"),
        "{h}"
    );
    // The event stream's end says failed too.
    let id = j["id"].as_str().expect("id");
    let ev = s.get(&format!("/v1/jobs/{id}/events")).text();
    assert!(
        ev.contains("\"event\":\"job.ended\",\"status\":\"failed\""),
        "{ev}"
    );
}

#[test]
fn sigterm_lets_a_running_job_finish_then_exits_zero() {
    let mut s = Server::start(&[], None);
    let addr = s.addr.clone();
    let body = serde_json::to_vec(&sh("sleep 2; echo finished")).expect("json");
    let waiter = std::thread::spawn(move || {
        request(&addr, "POST", "/v1/jobs?wait=true", None, Some(&body)).expect("request")
    });
    let t0 = Instant::now();
    while s.metric("sandbox_jobs_running") != Some(1.0) {
        assert!(t0.elapsed() < Duration::from_secs(10), "never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&s, libc::SIGTERM);
    // Draining: no new jobs, but the server still answers.
    std::thread::sleep(Duration::from_millis(200));
    let r = s.post("/v1/jobs", &sh("echo late"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(s.get("/healthz").status, 503);
    let st = wait_exit(&mut s, Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "{st}: {}", s.log());
    let r = waiter.join().expect("waiter");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "completed", "{j}");
    assert_eq!(j["steps"][0]["stdout"], "finished\n", "{j}");
    let left = left_in(&s.work_dir);
    assert!(left.is_empty(), "left in the work dir: {left:?}");
}

#[test]
fn a_job_past_the_drain_timeout_is_cancelled() {
    let mut s = Server::start(&["--drain-timeout", "1s", "--workers", "1"], None);
    let addr = s.addr.clone();
    let body = serde_json::to_vec(&sh("sleep 10")).expect("json");
    let waiter = std::thread::spawn(move || {
        request(&addr, "POST", "/v1/jobs?wait=true", None, Some(&body)).expect("request")
    });
    let t0 = Instant::now();
    while s.metric("sandbox_jobs_running") != Some(1.0) {
        assert!(t0.elapsed() < Duration::from_secs(10), "never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Queued behind it: cancelled at once.
    let q = s.post("/v1/jobs", &sh("echo queued"));
    assert_eq!(q.status, 202, "{}", q.text());
    let qid = q.json()["id"].as_str().expect("id").to_string();
    let t0 = Instant::now();
    signal(&s, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let qj = s.get(&format!("/v1/jobs/{qid}")).json();
    assert_eq!(qj["status"], "cancelled", "{qj}");
    let st = wait_exit(&mut s, Duration::from_secs(15));
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "{st}: {}", s.log());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let r = waiter.join().expect("waiter");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "cancelled", "{j}");
    assert!(s.log().contains("drain timeout"), "{}", s.log());
    assert!(left_in(&s.work_dir).is_empty());
}

#[test]
fn sighup_reloads_profiles_and_never_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edited.toml");
    let write = |n: u32| {
        std::fs::write(
            &path,
            format!("extends = \"strict\"\n[limits]\nopen_files = {n}\n"),
        )
        .expect("profile")
    };
    write(64);
    let profiles = dir.path().to_str().expect("utf-8 path");
    let mut s = Server::start_with_env(&[], None, &[("SANDBOX_PROFILE_DIR", profiles)]);
    let job = json!({"profile": "edited", "steps": [{"command": ["/bin/sh", "-c", "ulimit -n"]}]});
    let nofile = |s: &Server| {
        let j = s.run(&job);
        assert_eq!(j["steps"][0]["status"], "ok", "{j}");
        j["steps"][0]["stdout"]
            .as_str()
            .expect("stdout")
            .trim()
            .to_string()
    };
    assert_eq!(nofile(&s), "64");
    write(77);
    signal(&s, libc::SIGHUP);
    let t0 = Instant::now();
    while !s.log().contains("SIGHUP: profiles reloaded") {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", s.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(nofile(&s), "77", "the edit applies after SIGHUP");
    signal(&s, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(nofile(&s), "77");
    let child = s.child.as_mut().expect("child");
    assert!(child.try_wait().expect("try_wait").is_none(), "still up");
    let st = s.stop().expect("status");
    assert!(st.success(), "{st}");
}

/// A profile bind with a relative source names a directory of the job's
/// workspace; a symlink an earlier step planted there must not bind the
/// host directory it points to into a later step.
#[test]
fn a_relative_bind_source_never_leaves_the_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cache.toml"),
        "extends = \"strict\"\n[[filesystem.bind_add]]\nsource = \"cache\"\ndest = \"/cache\"\nwritable = true\noptional = true\n",
    )
    .expect("profile");
    let profiles = dir.path().to_str().expect("utf-8 path");
    let mut s = Server::start_with_env(&[], None, &[("SANDBOX_PROFILE_DIR", profiles)]);
    // A real directory of the workspace is bound, read-write.
    let j = s.run(&json!({"profile": "cache", "steps": [
        {"command": ["/bin/sh", "-c", "mkdir cache && echo kept > cache/f"]},
        {"command": ["/bin/sh", "-c", "cat /cache/f; echo new > /cache/g; cat cache/g"]}
    ]}));
    assert_eq!(j["steps"][1]["status"], "ok", "{j}");
    assert_eq!(j["steps"][1]["stdout"], "kept\nnew\n", "{j}");
    // A symlink out of the workspace: refused, the host's /etc not bound.
    let j = s.run(&json!({"profile": "cache", "steps": [
        {"command": ["/bin/ln", "-s", "/etc", "cache"]},
        {"command": ["/bin/cat", "/cache/hostname"]}
    ]}));
    let step = &j["steps"][1];
    assert_eq!(step["status"], "sandbox_error", "{j}");
    assert!(
        step["message"]
            .as_str()
            .unwrap_or_default()
            .contains("outside"),
        "{j}"
    );
    assert_eq!(step["stdout"], "", "{j}");
    let st = s.stop().expect("status");
    assert!(st.success(), "{st}");
}
