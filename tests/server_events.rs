//! `GET /v1/jobs/{id}/events` end to end: the real `sandbox serve` on a
//! loopback port, read as a raw Server-Sent Events stream over TCP (and
//! with `curl -N` where curl is installed). Needs root, like tests/server.rs.

mod common_server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common_server::{Server, rss_bytes};
use serde_json::{Value, json};

/// One event as a client sees it, with the time it arrived.
#[derive(Debug, Clone)]
struct Ev {
    id: u64,
    name: String,
    data: Value,
    at: Instant,
}

/// A raw SSE client: one GET, the chunked body decoded as it arrives.
struct Sse {
    r: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    /// Body text received and not yet split into blocks.
    pending: String,
    chunked: bool,
    eof: bool,
    /// `: keep-alive` comments seen so far.
    comments: usize,
}

impl Sse {
    fn open(s: &Server, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut t = TcpStream::connect(&s.addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            s.addr
        );
        if let Some(tok) = &s.token {
            req.push_str(&format!("Authorization: Bearer {tok}\r\n"));
        }
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        t.write_all(req.as_bytes()).expect("send");
        let mut r = BufReader::new(t);
        let mut line = String::new();
        r.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        Sse {
            r,
            status,
            headers,
            pending: String::new(),
            chunked,
            eof: false,
            comments: 0,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads one more piece of the body into `pending`; false at its end.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        if !self.chunked {
            let mut b = [0u8; 4096];
            let n = self.r.read(&mut b).unwrap_or(0);
            if n == 0 {
                self.eof = true;
                return false;
            }
            self.pending.push_str(&String::from_utf8_lossy(&b[..n]));
            return true;
        }
        let mut line = String::new();
        if self.r.read_line(&mut line).unwrap_or(0) == 0 {
            self.eof = true;
            return false;
        }
        let n = usize::from_str_radix(line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
        if n == 0 {
            self.eof = true;
            return false;
        }
        let mut b = vec![0u8; n + 2];
        self.r.read_exact(&mut b).expect("chunk");
        self.pending
            .push_str(std::str::from_utf8(&b[..n]).expect("utf-8"));
        true
    }

    /// The next block (up to a blank line), comments counted and skipped.
    fn next(&mut self) -> Option<Ev> {
        loop {
            while let Some(i) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..i + 2).collect();
                let (mut id, mut name, mut data) = (None, None, None);
                for l in block.lines() {
                    if l.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = l.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = l.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = l.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    }
                }
                if let (Some(id), Some(name), Some(data)) = (id, name, data) {
                    return Some(Ev {
                        id,
                        name,
                        data,
                        at: Instant::now(),
                    });
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Every event to the end of the stream.
    fn rest(&mut self) -> Vec<Ev> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn submit(s: &Server, job: &Value) -> String {
    let r = s.post("/v1/jobs", job);
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["id"].as_str().expect("id").to_string()
}

/// A step printing `line N` every 100 ms, 15 times (about 1.5 s).
fn ticking_job() -> Value {
    json!({"steps": [{"name": "tick", "command": ["/bin/sh", "-c",
        "i=1; while [ $i -le 15 ]; do echo line $i; i=$((i+1)); sleep 0.1; done"]}]})
}

fn stdout_text(evs: &[Ev]) -> String {
    evs.iter()
        .filter(|e| e.name == "output" && e.data["stream"] == "stdout")
        .map(|e| {
            assert_eq!(e.data["encoding"], "utf8", "{:?}", e.data);
            e.data["data"].as_str().expect("data").to_string()
        })
        .collect()
}

fn ids(evs: &[Ev]) -> Vec<u64> {
    evs.iter().map(|e| e.id).collect()
}

fn assert_consecutive(evs: &[Ev], first: u64) {
    let want: Vec<u64> = (first..first + evs.len() as u64).collect();
    assert_eq!(ids(evs), want, "ids in order, none missing");
    for e in evs {
        assert_eq!(e.data["id"], e.id, "data carries the id: {:?}", e.data);
        assert_eq!(e.data["event"], e.name.as_str());
    }
}

#[test]
fn lines_arrive_one_by_one_while_the_step_runs() {
    let s = Server::start(&["--workers", "1"], None);
    let id = submit(&s, &ticking_job());
    let mut sse = Sse::open(&s, &format!("/v1/jobs/{id}/events"), None);
    assert_eq!(sse.status, 200);
    assert!(
        sse.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        sse.headers
    );
    // The first line, then the job as GET shows it at that moment.
    let mut evs = Vec::new();
    while let Some(e) = sse.next() {
        let first_output = e.name == "output";
        evs.push(e);
        if first_output {
            break;
        }
    }
    let during = s.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(during["status"], "running", "{during}");
    evs.extend(sse.rest());
    assert!(sse.eof, "the stream closes after job.ended");
    assert_consecutive(&evs, 1);
    let names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(&names[..2], ["job.started", "step.started"], "{names:?}");
    assert_eq!(&names[names.len() - 2..], ["step.ended", "job.ended"]);
    let end = evs.last().expect("job.ended");
    assert_eq!(end.data["status"], "completed");
    assert_eq!(evs[evs.len() - 2].data["status"], "ok");
    let outputs: Vec<&Ev> = evs.iter().filter(|e| e.name == "output").collect();
    // Line by line: a 100 ms pause between lines is far longer than a read.
    assert!(outputs.len() >= 10, "{} output events", outputs.len());
    let want: String = (1..=15).map(|i| format!("line {i}\n")).collect();
    assert_eq!(stdout_text(&evs), want);
    // Seen as they were printed: spread over the step's 1.5 s, the first
    // well before the end.
    let spread = outputs[outputs.len() - 1].at - outputs[0].at;
    assert!(spread >= Duration::from_millis(1000), "spread {spread:?}");
    let lead = end.at - outputs[0].at;
    assert!(
        lead >= Duration::from_millis(1000),
        "first line only {lead:?} before the end"
    );
    // The server's own stamps agree.
    let at = |e: &Ev| e.data["at"].as_f64().expect("at");
    assert!(at(outputs[outputs.len() - 1]) - at(outputs[0]) >= 1.0);
    for o in &outputs {
        assert_eq!(
            (o.data["step"].as_u64(), o.data.get("test")),
            (Some(0), None)
        );
    }
}

#[test]
fn last_event_id_resumes_exactly_after_it_and_a_late_client_gets_everything() {
    let s = Server::start(&["--workers", "1"], None);
    let id = submit(&s, &ticking_job());
    let path = format!("/v1/jobs/{id}/events");
    // Mid-run: read the first four events, hang up, resume after the third.
    let mut first = Sse::open(&s, &path, None);
    let head: Vec<Ev> = (0..4).map(|_| first.next().expect("event")).collect();
    drop(first);
    let mut resumed = Sse::open(&s, &path, Some("3"));
    let tail = resumed.rest();
    assert_eq!(tail.first().map(|e| e.id), Some(4), "{:?}", ids(&tail));
    assert_eq!(tail[0].name, head[3].name);
    assert_eq!(tail[0].data, head[3].data, "the same event again");
    assert_consecutive(&tail, 4);
    assert_eq!(tail.last().map(|e| e.name.as_str()), Some("job.ended"));
    // After the end: the whole history, then the stream closes.
    let mut late = Sse::open(&s, &path, None);
    let all = late.rest();
    assert!(late.eof);
    assert_consecutive(&all, 1);
    assert_eq!(all.len() as u64, tail.last().map_or(0, |e| e.id));
    for (a, b) in all[3..].iter().zip(&tail) {
        assert_eq!(a.data, b.data);
    }
    // Resuming after any id gives exactly what follows it.
    for k in [1, 7, all.len() as u64 - 1] {
        let mut r = Sse::open(&s, &path, Some(&k.to_string()));
        let got = r.rest();
        assert_eq!(ids(&got), ((k + 1)..=all.len() as u64).collect::<Vec<_>>());
    }
    // After the last one there is nothing: 204 (an EventSource stops).
    let r = Sse::open(&s, &path, Some(&all.len().to_string()));
    assert_eq!(r.status, 204);
    // A Last-Event-ID that is no id: 400 with the usual error.
    let mut bad = Sse::open(&s, &path, Some("abc"));
    assert_eq!(bad.status, 400);
    bad.fill();
    let v: Value = serde_json::from_str(bad.pending.trim()).expect("JSON error");
    assert_eq!(v["field"], "Last-Event-ID", "{v}");
    // The same stream through curl -N, where curl is installed.
    if let Ok(out) = std::process::Command::new("curl")
        .args(["-sSN", "--max-time", "20"])
        .arg(format!("http://{}{path}", s.addr))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "curl: {out:?}");
        assert!(
            text.starts_with("id: 1\nevent: job.started\ndata: {"),
            "{text}"
        );
        assert!(text.contains("\"data\":\"line 15\\n\""), "{text}");
        assert!(text.trim_end().ends_with('}') && text.contains("event: job.ended"));
    }
}

#[test]
fn a_client_that_hangs_up_does_not_disturb_the_job() {
    let s = Server::start(&["--workers", "1"], None);
    let id = submit(&s, &ticking_job());
    let mut sse = Sse::open(&s, &format!("/v1/jobs/{id}/events"), None);
    let mut outputs = 0;
    while outputs < 2 {
        let e = sse.next().expect("event");
        outputs += usize::from(e.name == "output");
    }
    drop(sse);
    let j = s.wait_job(&id, Duration::from_secs(30));
    assert_eq!(j["status"], "completed", "{j}");
    assert_eq!(j["steps"][0]["status"], "ok", "{j}");
    let want: String = (1..=15).map(|i| format!("line {i}\n")).collect();
    assert_eq!(j["steps"][0]["stdout"], want.as_str());
}

#[test]
fn unknown_jobs_and_tokens_answer_as_other_job_endpoints() {
    let s = Server::start(&[], Some("sekrit"));
    let r = s.get("/v1/jobs/0123456789abcdef0123456789abcdef/events");
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("no job")),
        "{}",
        r.text()
    );
    let id = submit(&s, &json!({"steps": [{"command": ["/bin/echo", "hi"]}]}));
    let path = format!("/v1/jobs/{id}/events");
    let anon = common_server::request(&s.addr, "GET", &path, None, None).expect("request");
    assert_eq!(anon.status, 401);
    assert!(anon.json()["error"].is_string());
    let wrong = common_server::request(&s.addr, "GET", &path, Some("nope"), None).expect("request");
    assert_eq!(wrong.status, 401);
    let evs = Sse::open(&s, &path, None).rest();
    assert_eq!(stdout_text(&evs), "hi\n");
    // Described in the OpenAPI document.
    let o = s.get("/openapi.json").json();
    let r = &o["paths"]["/v1/jobs/{id}/events"]["get"]["responses"];
    for code in ["200", "204", "400", "401", "404", "410", "429"] {
        assert!(r[code].is_object(), "{code}: {r}");
    }
    assert!(r["200"]["content"]["text/event-stream"].is_object());
    assert_eq!(evs.last().map(|e| e.name.as_str()), Some("job.ended"));
}

#[test]
fn output_past_the_caps_is_not_streamed() {
    // Each run's streams stop at its output limit; the job's at
    // --max-job-output.
    let s = Server::start(&["--workers", "1", "--max-job-output", "48K"], None);
    let print = |n: usize| {
        json!({"command": ["/bin/sh", "-c",
            format!("head -c {n} /dev/zero | tr '\\0' a; head -c {n} /dev/zero | tr '\\0' b >&2")],
            "limits": {"output": "20K"}, "continue_on_failure": true})
    };
    let id = submit(
        &s,
        &json!({"steps": [print(100_000), print(10_000), print(10_000), print(10_000)]}),
    );
    let evs = Sse::open(&s, &format!("/v1/jobs/{id}/events"), None).rest();
    let bytes = |step: u64, stream: &str| -> usize {
        evs.iter()
            .filter(|e| e.name == "output" && e.data["step"] == step && e.data["stream"] == stream)
            .map(|e| e.data["data"].as_str().map_or(0, str::len))
            .sum()
    };
    // Step 0: over its own cap on stdout (killed there, output_limit).
    assert!(bytes(0, "stdout") <= 20 << 10, "{}", bytes(0, "stdout"));
    let end0 = evs
        .iter()
        .find(|e| e.name == "step.ended" && e.data["step"] == 0)
        .expect("step.ended");
    assert_eq!(end0.data["status"], "output_limit", "{:?}", end0.data);
    assert_eq!(end0.data["run"]["stdout_truncated"], true);
    // The job: never more than 48K of output in all, and it says so.
    let total: usize = (0..4)
        .map(|i| bytes(i, "stdout") + bytes(i, "stderr"))
        .sum();
    assert!(total <= 48 << 10, "{total} bytes streamed");
    assert!(total >= 40 << 10, "{total}: the budget is used, not wasted");
    let cut: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.name == "output.truncated")
        .collect();
    assert_eq!(cut.len(), 1, "told once");
    assert!(!evs.iter().any(|e| e.name == "output" && e.id > cut[0].id));
    assert_eq!(
        evs.last().map(|e| e.data["status"].clone()),
        Some(json!("completed"))
    );
}

#[test]
fn clients_that_never_read_hold_neither_the_job_nor_memory() {
    let s = Server::start(
        &[
            "--workers",
            "1",
            "--events-buffer",
            "256K",
            "--max-output",
            "4M",
            "--max-job-output",
            "16M",
        ],
        None,
    );
    // 4 steps of 4 MB: far more than any socket buffer or the log's 256K.
    let step = json!({"command": ["/bin/sh", "-c", "head -c 4000000 /dev/zero | tr '\\0' x"],
                      "limits": {"output": "4M"}});
    let job = json!({"steps": [step, step, step, step]});
    // Warm up: a first job of the same shape, so the allocator's pools are
    // counted in the baseline.
    let warm = submit(&s, &job);
    s.wait_job(&warm, Duration::from_secs(60));
    let base = rss_bytes(s.pid());
    let t0 = Instant::now();
    let id = submit(&s, &job);
    // Clients that ask for the stream and never read a byte.
    const STUCK: u64 = 32;
    let path = format!("/v1/jobs/{id}/events");
    let stuck: Vec<Sse> = (0..STUCK).map(|_| Sse::open(&s, &path, None)).collect();
    assert!(stuck.iter().all(|c| c.status == 200));
    // One client that reads: it sees the end (the results themselves,
    // 16 MB of JSON, are fetched after the measure).
    let seen = Sse::open(&s, &path, None).rest();
    let took = t0.elapsed();
    let end = seen.last().expect("events");
    assert_eq!(
        (end.name.as_str(), &end.data["status"]),
        ("job.ended", &json!("completed"))
    );
    assert!(took < Duration::from_secs(30), "the job took {took:?}");
    // Give the stuck streams time to fill whatever they can hold.
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes(s.pid());
    eprintln!(
        "RSS: {} MiB before the job, {} MiB after it with {STUCK} stuck streams",
        base >> 20,
        after >> 20
    );
    // Each blocked stream holds at most a batch in its slot and hyper's
    // write buffer (about 0.5 MiB; measured with 16: 5-19 MiB for all),
    // the job's results 16 MB, the allocator some slack. Streams that
    // queued what they could not send would hold 32 x 16 MB.
    assert!(
        after < base + (96 << 20),
        "server grew from {} to {} MiB",
        base >> 20,
        after >> 20
    );
    let j = s.get(&format!("/v1/jobs/{id}")).json();
    assert!(
        j["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["status"] == "ok" && s["stdout"].as_str().map(str::len) == Some(4_000_000)),
        "{}",
        j["steps"]
    );
    drop(stuck);
    // A reader arriving now finds the start dropped: told so, then the rest.
    let mut late = Sse::open(&s, &path, None);
    let evs = late.rest();
    let g = &evs[0];
    assert_eq!(g.name, "gap", "{:?}", g.data);
    assert_eq!(g.data["after"], 0);
    assert_eq!(g.data["next"].as_u64(), Some(g.id + 1));
    assert_eq!(g.data["dropped"].as_u64(), Some(g.id));
    assert_consecutive(&evs, g.id);
    assert_eq!(evs.last().map(|e| e.name.as_str()), Some("job.ended"));
}

#[test]
fn streams_are_capped_kept_alive_and_end_with_a_cancel() {
    let s = Server::start(
        &[
            "--workers",
            "1",
            "--max-event-streams",
            "2",
            "--event-keepalive",
            "200ms",
        ],
        None,
    );
    let id = submit(&s, &json!({"steps": [{"command": ["/bin/sleep", "30"]}]}));
    let path = format!("/v1/jobs/{id}/events");
    let mut a = Sse::open(&s, &path, None);
    let b = Sse::open(&s, &path, None);
    assert_eq!((a.status, b.status), (200, 200));
    let third = common_server::request(&s.addr, "GET", &path, None, None).expect("request");
    assert_eq!(third.status, 429, "{}", third.text());
    assert!(third.header("retry-after").is_some());
    assert_eq!(s.metric("sandbox_event_streams"), Some(2.0));
    assert_eq!(s.metric("sandbox_event_streams_max"), Some(2.0));
    assert!(
        third.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("--max-event-streams"))
    );
    // A slot comes back when a client hangs up.
    drop(b);
    let t0 = Instant::now();
    let mut c = loop {
        let c = Sse::open(&s, &path, None);
        if c.status == 200 {
            break c;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    };
    // An idle stream gets keep-alive comments.
    let started: Vec<Ev> = (0..2).map(|_| a.next().expect("event")).collect();
    assert_eq!(started[1].name, "step.started");
    while a.comments < 2 {
        assert!(a.fill(), "stream ended early");
        while a.pending.starts_with(": keep-alive\n\n") {
            a.pending.drain(..": keep-alive\n\n".len());
            a.comments += 1;
        }
    }
    // A cancel ends the job, and with it every stream.
    let r = s.req("DELETE", &format!("/v1/jobs/{id}"), None);
    assert_eq!(r.status, 200);
    for sse in [&mut a, &mut c] {
        let evs = sse.rest();
        let end = evs.last().expect("job.ended");
        assert_eq!(end.name, "job.ended");
        assert_eq!(end.data["status"], "cancelled");
        assert!(sse.eof);
    }
}

#[test]
fn a_client_that_takes_nothing_is_dropped_after_the_write_timeout() {
    let s = Server::start(
        &[
            "--workers",
            "1",
            "--max-event-streams",
            "1",
            "--write-timeout",
            "1s",
            "--max-output",
            "4M",
        ],
        None,
    );
    // 16 MB of output: more than the loopback socket buffers can hold.
    let step = json!({"command": ["/bin/sh", "-c", "head -c 4000000 /dev/zero | tr '\\0' x"],
                      "limits": {"output": "4M"}});
    let id = submit(&s, &json!({"steps": [step, step, step, step]}));
    let path = format!("/v1/jobs/{id}/events");
    let mut stuck = Sse::open(&s, &path, None);
    assert_eq!(stuck.status, 200);
    let second = common_server::request(&s.addr, "GET", &path, None, None).expect("request");
    assert_eq!(second.status, 429, "the stuck client holds the one slot");
    let j = s.wait_job(&id, Duration::from_secs(30));
    assert_eq!(j["steps"][0]["status"], "ok", "{j}");
    // The one stream slot is the stuck client's until the server gives up
    // on it (a write waiting 1 s), then it is free again.
    let t0 = Instant::now();
    let mut other = loop {
        let c = Sse::open(&s, &path, None);
        if c.status == 200 {
            break c;
        }
        assert_eq!(c.status, 429);
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the slot was never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(s.log().contains("--write-timeout"), "{}", s.log());
    let evs = other.rest();
    assert_eq!(evs.last().map(|e| e.name.as_str()), Some("job.ended"));
    // The stuck client, reading at last, finds its connection closed
    // before the end of the stream.
    stuck
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut all = Vec::new();
    let _ = stuck.r.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(
        !text.contains("event: job.ended"),
        "it got the whole stream after all"
    );
}

#[test]
fn steps_and_tests_each_have_their_events_in_order() {
    let s = Server::start(&["--workers", "1"], None);
    let id = submit(
        &s,
        &json!({"steps": [
            {"name": "prep", "command": ["/bin/sh", "-c", "echo ready; printf 'caf\\303\\251 \\377\\000' >&2"]},
            {"name": "judge", "command": ["/bin/sh", "-c", "read x; [ \"$x\" = boom ] && exit 3; echo $x"],
             "tests": [{"stdin": "1\n", "expected_stdout": "1\n"},
                       {"stdin": "2\n", "expected_stdout": "3\n"},
                       {"stdin": "boom\n"}]},
            {"name": "never", "command": ["/bin/true"]}
        ]}),
    );
    let evs = Sse::open(&s, &format!("/v1/jobs/{id}/events"), None).rest();
    assert_consecutive(&evs, 1);
    let seq: Vec<String> = evs
        .iter()
        .map(|e| {
            let at = |k: &str| e.data.get(k).and_then(Value::as_u64).map(|n| n.to_string());
            let place = [at("step"), at("test")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(".");
            let status = e.data["status"].as_str().unwrap_or("");
            [e.name.as_str(), &place, status]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.starts_with("output"))
        .collect();
    assert_eq!(
        seq,
        [
            "job.started",
            "step.started 0",
            "step.ended 0 ok",
            "step.started 1",
            "test.started 1.0",
            "test.ended 1.0 ok",
            "test.started 1.1",
            "test.ended 1.1 wrong_answer",
            "test.started 1.2",
            "test.ended 1.2 runtime_error",
            "step.ended 1 wrong_answer",
            // Not run: no step.started, only its verdict.
            "step.ended 2 skipped",
            "job.ended completed",
        ]
    );
    // Each run's output sits between its start and its end, tagged with it.
    let output_of = |step: u64, test: Option<u64>, stream: &str| -> Vec<u8> {
        use base64::Engine;
        evs.iter()
            .filter(|e| {
                e.name == "output"
                    && e.data["step"] == step
                    && e.data.get("test").and_then(Value::as_u64) == test
                    && e.data["stream"] == stream
            })
            .flat_map(|e| {
                let d = e.data["data"].as_str().expect("data");
                match e.data["encoding"].as_str() {
                    Some("utf8") => d.as_bytes().to_vec(),
                    Some("base64") => base64::engine::general_purpose::STANDARD
                        .decode(d)
                        .expect("base64"),
                    other => panic!("encoding {other:?}"),
                }
            })
            .collect()
    };
    assert_eq!(output_of(0, None, "stdout"), b"ready\n");
    // Not UTF-8: sent as base64, byte for byte.
    assert_eq!(output_of(0, None, "stderr"), b"caf\xc3\xa9 \xff\x00");
    assert_eq!(output_of(1, Some(0), "stdout"), b"1\n");
    assert_eq!(output_of(1, Some(1), "stdout"), b"2\n");
    assert_eq!(output_of(1, Some(2), "stdout"), b"");
    let pos = |name: &str, test: u64| {
        evs.iter()
            .position(|e| e.name == name && e.data["step"] == 1 && e.data["test"] == test)
            .expect(name)
    };
    for t in 0..2 {
        let out = evs
            .iter()
            .position(|e| e.name == "output" && e.data["step"] == 1 && e.data["test"] == t)
            .expect("output");
        assert!(pos("test.started", t) < out && out < pos("test.ended", t));
    }
    // The verdicts and figures agree with the job's results.
    let j = s.get(&format!("/v1/jobs/{id}")).json();
    let ended = &evs[pos("test.ended", 2)].data;
    let res = &j["steps"][1]["tests"][2];
    for k in ["status", "exit_code", "signal", "stdout_truncated"] {
        assert_eq!(ended[k], res[k], "{k}: {ended} vs {res}");
    }
    assert_eq!(ended["exit_code"], 3);
    assert_eq!(ended["usage"]["wall_ms"], res["usage"]["wall_ms"]);
    let wa = &evs[pos("test.ended", 1)].data;
    assert_eq!(wa["message"], "stdout differs from expected_stdout");
}

#[test]
fn an_evicted_jobs_events_go_with_its_results() {
    // A budget smaller than any job: every finished job is evicted at once.
    let s = Server::start(&["--workers", "1", "--results-budget", "1K"], None);
    let id = submit(
        &s,
        &json!({"steps": [{"command": ["/bin/sh", "-c", "sleep 0.5; echo hi"]}]}),
    );
    // A client following the job to its end still gets everything.
    let mut sse = Sse::open(&s, &format!("/v1/jobs/{id}/events"), None);
    assert_eq!(sse.status, 200);
    let evs = sse.rest();
    assert_eq!(stdout_text(&evs), "hi\n");
    assert_eq!(evs.last().map(|e| e.name.as_str()), Some("job.ended"));
    let t0 = Instant::now();
    loop {
        let r = s.get(&format!("/v1/jobs/{id}/events"));
        if r.status == 410 {
            assert!(
                r.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("--results-budget"))
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{}: {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.get(&format!("/v1/jobs/{id}")).status, 410);
}

#[test]
fn finished_jobs_events_stay_within_the_events_budget() {
    let s = Server::start(&["--workers", "1", "--events-budget", "200K"], None);
    // About 150 KB of events each: two do not fit in 200K.
    let job = json!({"steps": [{"command": ["/bin/sh", "-c",
        "head -c 150000 /dev/zero | tr '\\0' x"]}]});
    let first = s.run(&job)["id"].as_str().expect("id").to_string();
    let full = Sse::open(&s, &format!("/v1/jobs/{first}/events"), None).rest();
    assert_eq!(full[0].name, "job.started", "kept while within the budget");
    let second = s.run(&job)["id"].as_str().expect("id").to_string();
    // The oldest finished job's events are dropped but for its end ...
    let old = Sse::open(&s, &format!("/v1/jobs/{first}/events"), None).rest();
    let names: Vec<&str> = old.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["gap", "job.ended"]);
    assert_eq!(old[1].id, full.last().map_or(0, |e| e.id));
    assert_eq!(old[0].data["dropped"].as_u64(), Some(old[1].id - 1));
    // ... its results are not,
    let j = s.get(&format!("/v1/jobs/{first}")).json();
    assert_eq!(
        j["steps"][0]["stdout"].as_str().map(str::len),
        Some(150_000)
    );
    let held = s
        .metric("sandbox_events_bytes")
        .expect("sandbox_events_bytes");
    assert!(held > 100_000.0 && held <= 200_000.0, "{held}");
    assert_eq!(
        s.metric("sandbox_events_budget_bytes"),
        Some(200.0 * 1024.0)
    );
    // and the newest job's events are whole.
    let new = Sse::open(&s, &format!("/v1/jobs/{second}/events"), None).rest();
    assert_consecutive(&new, 1);
    assert_eq!(stdout_text(&new).len(), 150_000);
}
