//! HTTP throughput and latency of `sandbox serve` for a trivial one-step
//! job (`/bin/true`, wait=true) at 1, 2 and 8 concurrent clients.
//!
//! cargo run --release --example http_bench -- [--url http://HOST:PORT]
//!     [--token T] [--seconds N] [--workers N] [--bin PATH]
//!
//!     [--job true|compile] [--clients 1,2,8] [--out PATH]
//!
//! --job compile submits gcc -O2 of a small C file plus a run step with 10
//! tests (a+b) instead of /bin/true; the default stays /bin/true.
//! --out overrides the JSON path (default bench/results/http.json).
//!
//! Without --url it starts `sandbox serve` itself (from --bin, or the
//! `sandbox` binary next to this example) on a free loopback port.
//! Prints a table and writes bench/results/http.json.

#[path = "../tests/common_server/http.rs"]
#[allow(dead_code)]
mod http;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{free_port, request};
use serde_json::json;

struct Args {
    url: Option<String>,
    token: Option<String>,
    seconds: u64,
    workers: Option<usize>,
    bin: Option<String>,
    job: String,
    clients: Vec<usize>,
    out: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        url: None,
        token: std::env::var("SANDBOX_TOKEN").ok(),
        seconds: 10,
        workers: None,
        bin: None,
        job: "true".into(),
        clients: vec![1, 2, 8],
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))
        };
        match k.as_str() {
            "--url" => a.url = Some(v()?),
            "--token" => a.token = Some(v()?),
            "--seconds" => a.seconds = v()?.parse()?,
            "--workers" => a.workers = Some(v()?.parse()?),
            "--bin" => a.bin = Some(v()?),
            "--job" => {
                a.job = v()?;
                anyhow::ensure!(
                    a.job == "true" || a.job == "compile",
                    "--job is true or compile"
                );
            }
            "--clients" => {
                a.clients = v()?
                    .split(',')
                    .map(|c| c.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--out" => a.out = Some(v()?),
            _ => anyhow::bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let mut child = None;
    let addr = match &a.url {
        Some(u) => u
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
        None => {
            let bin = a.bin.clone().unwrap_or_else(|| {
                let exe = std::env::current_exe().unwrap_or_default();
                // target/<profile>/examples/http_bench → target/<profile>/sandbox
                exe.parent()
                    .and_then(|p| p.parent())
                    .map(|p| p.join("sandbox").display().to_string())
                    .unwrap_or_else(|| "sandbox".into())
            });
            let addr = format!("127.0.0.1:{}", free_port());
            let dir = tempfile::tempdir()?;
            let mut cmd = Command::new(&bin);
            cmd.args(["serve", "--listen", &addr, "--queue", "256", "--work-dir"])
                .arg(dir.path().join("jobs"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(w) = a.workers {
                cmd.args(["--workers", &w.to_string()]);
            }
            if let Some(t) = &a.token {
                cmd.env("SANDBOX_TOKEN", t);
            }
            child = Some((cmd.spawn()?, dir));
            let t0 = Instant::now();
            while request(&addr, "GET", "/healthz", None, None).map_or(true, |r| r.status != 200) {
                anyhow::ensure!(
                    t0.elapsed() < Duration::from_secs(20),
                    "server did not start ({bin})"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            addr
        }
    };
    let job = if a.job == "compile" {
        let tests: Vec<_> = (0..10)
            .map(|i| json!({"stdin": format!("{i} {}\n", i * 7), "expected_stdout": format!("{}\n", i * 8)}))
            .collect();
        json!({
            "files": [{"path": "main.c", "content": "#include <stdio.h>\nint main(){long a,b;if(scanf(\"%ld %ld\",&a,&b)!=2)return 1;printf(\"%ld\\n\",a+b);return 0;}\n"}],
            "steps": [
                {"name": "compile", "command": ["/usr/bin/gcc", "-O2", "-o", "main", "main.c"],
                 "limits": {"cpu_time": "10s", "wall_time": "20s", "memory": "512M"}},
                {"name": "run", "command": ["./main"], "limits": {"cpu_time": "1s", "memory": "64M"},
                 "tests": tests}
            ]
        })
    } else {
        json!({"steps": [{"command": ["/bin/true"]}]})
    };
    let body = serde_json::to_vec(&job)?;
    // Warm-up (profile preparation, page cache).
    for _ in 0..5 {
        request(
            &addr,
            "POST",
            "/v1/jobs?wait=true",
            a.token.as_deref(),
            Some(&body),
        )?;
    }
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "clients", "jobs", "jobs/s", "p50 ms", "p99 ms", "errors"
    );
    for &clients in &a.clients {
        let lat = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(0u64));
        let deadline = Instant::now() + Duration::from_secs(a.seconds);
        let start = Instant::now();
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                let (lat, errors, addr, body, token) = (
                    lat.clone(),
                    errors.clone(),
                    addr.clone(),
                    body.clone(),
                    a.token.clone(),
                );
                std::thread::spawn(move || {
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let ok = request(
                            &addr,
                            "POST",
                            "/v1/jobs?wait=true",
                            token.as_deref(),
                            Some(&body),
                        )
                        .is_ok_and(|r| {
                            r.status == 200
                                && serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(
                                    |v| {
                                        v["steps"].as_array().is_some_and(|st| {
                                            !st.is_empty() && st.iter().all(|s| s["status"] == "ok")
                                        })
                                    },
                                )
                        });
                        if ok {
                            lat.lock()
                                .map(|mut l| l.push(t.elapsed().as_secs_f64() * 1e3))
                                .ok();
                        } else {
                            errors.lock().map(|mut e| *e += 1).ok();
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            let _ = h.join();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_by(|a, b| a.total_cmp(b));
        let errors = errors.lock().map(|e| *e).unwrap_or(0);
        let row = json!({
            "clients": clients,
            "jobs": l.len(),
            "seconds": elapsed,
            "jobs_per_sec": l.len() as f64 / elapsed,
            "p50_ms": pct(&l, 0.50),
            "p99_ms": pct(&l, 0.99),
            "errors": errors,
        });
        println!(
            "{:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>8}",
            clients,
            l.len(),
            l.len() as f64 / elapsed,
            pct(&l, 0.50),
            pct(&l, 0.99),
            errors
        );
        rows.push(row);
    }
    let out = json!({
        "job_kind": a.job,
        "job": job,
        "url": format!("http://{addr}"),
        "seconds_per_level": a.seconds,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": rows,
    });
    let path = match &a.out {
        Some(o) => std::path::PathBuf::from(o),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/http.json"),
    };
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&out)? + "\n")?;
    println!("wrote {}", path.display());
    if let Some((mut c, _dir)) = child {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
    Ok(())
}
