//! Rlimits::apply in a pre_exec child (setrlimit only).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use sandbox::limits::Rlimits;
use sandbox::profile::Limits;

#[test]
fn rlimits_apply_in_child() {
    let limits = Limits {
        cpu_time: Some(Duration::from_millis(1500)),
        file_size: Some(1 << 20),
        open_files: Some(64),
        stack: Some(8 << 20),
        ..Default::default()
    };
    let r = Rlimits::from_limits(&limits);
    assert_eq!(r.cpu_secs, Some(3));
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("ulimit -t; ulimit -f; ulimit -n; ulimit -s; ulimit -c");
    // SAFETY: apply() only calls setrlimit (async-signal-safe, no allocation).
    unsafe {
        cmd.pre_exec(move || r.apply().map_err(std::io::Error::from));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    // dash/bash report -f in 512- or 1024-byte blocks depending on the shell.
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "3", "{s}");
    assert!(lines[1] == "2048" || lines[1] == "1024", "{s}");
    assert_eq!(lines[2], "64", "{s}");
    assert_eq!(lines[3], "8192", "{s}");
    assert_eq!(lines[4], "0", "{s}");
}
