//! `sandbox serve` for SREs: the access log (one line per request, target
//! `sandbox::access`), request ids (`X-Request-Id` kept when sane, made
//! otherwise, returned on every answer), `--log-format json`, and the
//! metrics families of /metrics. The real binary on a loopback port; needs
//! root, as the other server tests.

mod common;
mod common_server;

use std::time::{Duration, Instant};

use common_server::http::request_with;
use common_server::{Server, metric};
use serde_json::{Value, json};

fn sh(cmd: &str) -> Value {
    json!({"steps": [{"command": ["/bin/sh", "-c", cmd]}]})
}

/// A request with extra headers (`token`: the Authorization bearer).
fn send(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> common_server::Response {
    let b = body.map(|b| serde_json::to_vec(b).expect("json"));
    request_with(&s.addr, method, path, token, headers, b.as_deref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The access log lines of the server's log so far.
fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("sandbox::access"))
        .collect()
}

/// The one access line with `request_id=id` (waits a little: the line is
/// written just after the answer).
fn access_line(s: &Server, id: &str) -> String {
    let t0 = Instant::now();
    loop {
        let log = s.log();
        let lines: Vec<&str> = access_lines(&log)
            .into_iter()
            .filter(|l| l.contains(&format!("request_id={id} ")))
            .collect();
        if lines.len() == 1 {
            return lines[0].to_string();
        }
        assert!(lines.len() < 2, "logged twice: {lines:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no access line for {id} in\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn every_answer_is_logged_once_with_its_status_and_request_id() {
    if !common::require_root("every_answer_is_logged_once_with_its_status_and_request_id") {
        return;
    }
    let token = "s3cret-token-obs";
    let s = Server::start(&["--max-body", "64K"], Some(token));
    // (method, path, token sent, expected status, request id sent)
    let cases = [
        ("GET", "/healthz", None, 200, "health-1"),
        (
            "GET",
            "/v1/profiles",
            Some("wrong-token-xyz"),
            401,
            "auth-1",
        ),
        ("GET", "/v1/profiles", None, 401, "auth-2"),
        ("GET", "/no/such/endpoint", Some(token), 404, "nf-1"),
        ("PUT", "/v1/jobs", Some(token), 405, "m-1"),
        (
            "GET",
            "/v1/profiles?api_key=query-secret-abc",
            Some(token),
            200,
            "q-1",
        ),
    ];
    for (method, path, tok, status, id) in cases {
        let r = send(&s, method, path, tok, &[("X-Request-Id", id)], None);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(r.header("x-request-id"), Some(id), "{method} {path} echoed");
        let line = access_line(&s, id);
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("method={method} ")), "{line}");
        let bare = path.split('?').next().unwrap_or(path);
        assert!(line.contains(&format!("path={bare} ")), "{line}");
        assert!(line.contains(&format!("status={status} ")), "{line}");
        assert!(line.contains("ms="), "{line}");
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
    }
    // A 400 too (malformed JSON), and a 413 (over --max-body).
    let r = send(
        &s,
        "POST",
        "/v1/jobs",
        Some(token),
        &[("X-Request-Id", "bad-json-1")],
        Some(&json!("not a job")),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(access_line(&s, "bad-json-1").contains("status=400 "));
    let big = vec![b'x'; 100_000];
    let r = request_with(
        &s.addr,
        "POST",
        "/v1/jobs",
        Some(token),
        &[("X-Request-Id", "big-1")],
        Some(&big),
    )
    .expect("413");
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("big-1"));
    assert!(access_line(&s, "big-1").contains("status=413 "));

    // Ids that are not sane are replaced by one of the server's own.
    let long = "a".repeat(300);
    for bogus in [long.as_str(), "has space", "semi;colon", "x=y"] {
        let r = send(
            &s,
            "GET",
            "/healthz",
            None,
            &[("X-Request-Id", bogus)],
            None,
        );
        assert_eq!(r.status, 200);
        let id = r.header("x-request-id").expect("an id").to_string();
        assert_ne!(id, bogus);
        assert!(is_generated_id(&id), "{id}");
        assert!(access_line(&s, &id).contains("path=/healthz "));
    }
    // None sent: one made, unique per request.
    let a = send(&s, "GET", "/healthz", None, &[], None);
    let b = send(&s, "GET", "/healthz", None, &[], None);
    let (a, b) = (
        a.header("x-request-id").expect("id").to_string(),
        b.header("x-request-id").expect("id").to_string(),
    );
    assert!(
        is_generated_id(&a) && is_generated_id(&b) && a != b,
        "{a} {b}"
    );
    access_line(&s, &a);

    let log = s.log();
    for secret in [token, "wrong-token-xyz", "query-secret-abc", &long] {
        assert!(!log.contains(secret), "{secret:?} logged:\n{log}");
    }
    // Answers by code, counted by the same layer.
    let m = s.get("/metrics").text();
    assert!(metric(&m, "sandbox_http_responses_total{code=\"401\"}").unwrap_or(0.0) >= 2.0);
    assert!(metric(&m, "sandbox_http_responses_total{code=\"404\"}").unwrap_or(0.0) >= 1.0);
    assert!(metric(&m, "sandbox_http_responses_total{code=\"405\"}").unwrap_or(0.0) >= 1.0);
    assert!(metric(&m, "sandbox_http_responses_total{code=\"413\"}").unwrap_or(0.0) >= 1.0);
}

#[test]
fn a_refused_job_logs_the_request_id_and_no_job_id_of_its_own() {
    if !common::require_root("a_refused_job_logs_the_request_id_and_no_job_id_of_its_own") {
        return;
    }
    let s = Server::start(&["--workers", "1", "--queue", "1"], None);
    let mut given = Vec::new();
    let mut refused = None;
    for i in 0..6 {
        let rid = format!("fill-{i}");
        let r = send(
            &s,
            "POST",
            "/v1/jobs",
            None,
            &[("X-Request-Id", &rid)],
            Some(&sh("sleep 3")),
        );
        assert_eq!(r.header("x-request-id"), Some(rid.as_str()));
        match r.status {
            202 => given.push(r.json()["id"].as_str().expect("id").to_string()),
            429 => {
                assert!(r.header("retry-after").is_some());
                refused = Some(rid);
                break;
            }
            st => panic!("{st}: {}", r.text()),
        }
    }
    let refused = refused.expect("a 429 with one worker and a queue of 1");
    let line = access_line(&s, &refused);
    assert!(line.contains("status=429 "), "{line}");
    let log = s.log();
    let about: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("request_id={refused}")))
        .collect();
    assert!(
        about.iter().any(|l| l.contains("job refused")),
        "the refusal logged under its request id:\n{log}"
    );
    assert!(
        about.iter().all(|l| !l.contains("job{id=")),
        "a refused request names no job:\n{about:?}"
    );
    // Every job id the log names was given to a client, and its lines
    // carry the request id it was submitted with.
    for l in log.lines() {
        if let Some(rest) = l.split("job{id=").nth(1) {
            let id: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            let i = given
                .iter()
                .position(|g| *g == id)
                .unwrap_or_else(|| panic!("job {id} logged, never given: {l}"));
            assert!(l.contains(&format!("request_id=fill-{i}")), "{l}");
        }
    }
    for id in &given {
        s.req("DELETE", &format!("/v1/jobs/{id}"), None);
    }
}

#[test]
fn json_log_lines_are_objects_with_level_target_and_fields() {
    if !common::require_root("json_log_lines_are_objects_with_level_target_and_fields") {
        return;
    }
    let mut s = Server::start(&["--log-format", "json"], None);
    let r = send(
        &s,
        "POST",
        "/v1/jobs?wait=true",
        None,
        &[("X-Request-Id", "json-req-1")],
        Some(&sh("echo hi")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let job = r.json()["id"].as_str().expect("id").to_string();
    let r = send(
        &s,
        "GET",
        "/nope",
        None,
        &[("X-Request-Id", "json-404")],
        None,
    );
    assert_eq!(r.status, 404);
    s.stop();
    let log = s.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 5, "{log}");
    for v in &lines {
        assert!(v["timestamp"].is_string(), "{v}");
        assert!(
            ["INFO", "WARN", "ERROR", "DEBUG"].contains(&v["level"].as_str().unwrap_or("")),
            "{v}"
        );
        assert!(
            v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("sandbox")),
            "{v}"
        );
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
    let access = |id: &str| -> &Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|v| v["target"] == "sandbox::access" && v["fields"]["request_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "{id}: {log}");
        found[0]
    };
    let a = access("json-req-1");
    assert_eq!(a["level"], "INFO");
    assert_eq!(a["fields"]["method"], "POST");
    assert_eq!(a["fields"]["path"], "/v1/jobs");
    assert_eq!(a["fields"]["status"], 200);
    assert!(a["fields"]["ms"].as_f64().is_some_and(|ms| ms > 0.0), "{a}");
    assert!(
        a["fields"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    assert_eq!(access("json-404")["fields"]["status"], 404);
    // The job's own lines carry the request they came with, and its id.
    let finished = lines
        .iter()
        .find(|v| v["fields"]["message"] == "job finished")
        .unwrap_or_else(|| panic!("no job finished in {log}"));
    let spans = finished["spans"].as_array().expect("spans");
    assert!(
        spans.iter().any(|s| s["request_id"] == "json-req-1"),
        "{finished}"
    );
    assert!(spans.iter().any(|s| s["id"] == job.as_str()), "{finished}");
}

#[test]
fn the_log_format_comes_from_the_environment_too_and_is_checked() {
    if !common::require_root("the_log_format_comes_from_the_environment_too_and_is_checked") {
        return;
    }
    let s = Server::start_with_env(&[], None, &[("SANDBOX_LOG_FORMAT", "json")]);
    let r = send(
        &s,
        "GET",
        "/healthz",
        None,
        &[("X-Request-Id", "env-1")],
        None,
    );
    assert_eq!(r.status, 200);
    let t0 = Instant::now();
    loop {
        let log = s.log();
        if log.contains("env-1") {
            for l in log.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                assert!(v["level"].is_string(), "{v}");
            }
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The flag wins over the environment; a bad value is refused.
    let bin = env!("CARGO_BIN_EXE_sandbox");
    let out = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:1", "--log-format", "xml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("xml"));
    let out = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:1"])
        .env("SANDBOX_LOG_FORMAT", "yaml")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SANDBOX_LOG_FORMAT") && err.contains("yaml"),
        "{err}"
    );
}

#[test]
fn metrics_count_verdicts_queue_waits_answers_and_the_process() {
    if !common::require_root("metrics_count_verdicts_queue_waits_answers_and_the_process") {
        return;
    }
    let s = Server::start(&[], None);
    let before = s.get("/metrics").text();
    assert_eq!(
        metric(&before, "sandbox_verdicts_total{verdict=\"ok\"}"),
        Some(0.0),
        "known verdicts show from the start"
    );
    let j = s.run(&sh("echo ok"));
    assert_eq!(j["steps"][0]["status"], "ok", "{j}");
    let tl = json!({"steps": [{
        "command": ["/bin/sh", "-c", "while :; do :; done"],
        "limits": {"cpu_time": "500ms", "wall_time": "10s"},
    }]});
    let j = s.run(&tl);
    assert_eq!(j["steps"][0]["status"], "time_limit", "{j}");
    // A step with tests: each test is a run.
    let tests = json!({"steps": [{
        "command": ["/bin/cat"],
        "tests": [
            {"stdin": "a\n", "expected_stdout": "a\n"},
            {"stdin": "b\n", "expected_stdout": "not b\n"},
        ],
    }]});
    let j = s.run(&tests);
    assert_eq!(j["steps"][0]["tests"][1]["status"], "wrong_answer", "{j}");
    let r = s.post("/v1/jobs", &sh("true"));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().expect("id").to_string();
    s.wait_job(&id, Duration::from_secs(20));

    let t = s.get("/metrics").text();
    let m = |name: &str| metric(&t, name).unwrap_or_else(|| panic!("{name} in\n{t}"));
    assert!(m("sandbox_verdicts_total{verdict=\"ok\"}") >= 3.0, "{t}");
    assert!(
        m("sandbox_verdicts_total{verdict=\"time_limit\"}") >= 1.0,
        "{t}"
    );
    assert!(
        m("sandbox_verdicts_total{verdict=\"wrong_answer\"}") >= 1.0,
        "{t}"
    );
    assert_eq!(m("sandbox_errors_total"), 0.0, "{t}");
    assert!(
        m("sandbox_http_responses_total{code=\"202\"}") >= 1.0,
        "{t}"
    );
    assert!(
        m("sandbox_http_responses_total{code=\"200\"}") >= 3.0,
        "{t}"
    );
    assert_eq!(m("sandbox_queue_wait_seconds_count"), 4.0, "{t}");
    assert_eq!(
        m("sandbox_queue_wait_seconds_bucket{le=\"+Inf\"}"),
        4.0,
        "{t}"
    );
    assert!(m("sandbox_queue_wait_seconds_sum") >= 0.0);
    // Every run took a prepared container or made its own.
    assert!(
        m("sandbox_pool_hits_total") + m("sandbox_pool_misses_total") >= 5.0,
        "{t}"
    );
    assert!(m("sandbox_pool_ready") >= 0.0);
    assert!(m("process_resident_memory_bytes") > 0.0, "{t}");
    assert!(m("process_virtual_memory_bytes") > 0.0, "{t}");
    assert!(m("process_open_fds") > 0.0, "{t}");
    assert!(m("process_max_fds") >= m("process_open_fds"), "{t}");
    assert!(m("process_cpu_seconds_total") >= 0.0, "{t}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let start = m("process_start_time_seconds");
    assert!(
        start > now - 600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    assert_eq!(
        m(&format!(
            "sandbox_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    for family in [
        "sandbox_verdicts_total counter",
        "sandbox_errors_total counter",
        "sandbox_pool_ready gauge",
        "sandbox_pool_hits_total counter",
        "sandbox_pool_misses_total counter",
        "sandbox_queue_wait_seconds histogram",
        "sandbox_http_responses_total counter",
        "process_cpu_seconds_total counter",
        "process_resident_memory_bytes gauge",
        "process_virtual_memory_bytes gauge",
        "process_open_fds gauge",
        "process_max_fds gauge",
        "process_start_time_seconds gauge",
        "sandbox_build_info gauge",
    ] {
        let name = family.split(' ').next().unwrap_or_default();
        assert!(t.contains(&format!("# TYPE {family}\n")), "{family}");
        assert!(t.contains(&format!("# HELP {name} ")), "{family}");
    }
}
