//! A job's events, the live log: what happened (started, output, results,
//! ended) as an ordered list of typed [`Event`]s, each stamped with an id
//! (1, 2, 3, ... per job) and a time, kept in a bounded buffer per job
//! ([`EventLog`]) that any number of readers follow at their own pace.
//!
//! Writers never wait on readers: the job's executor (and, through
//! [`RunTap`], the supervisor's poll loop reading the program's pipes)
//! appends under a short lock and wakes readers with a `watch` channel; a
//! reader copies what it has not seen yet and sends it on its own time. A
//! reader that falls so far behind that the buffer dropped what it had not
//! read yet is told so with a [`Event::Gap`] (ids it missed), never slows
//! the job down.
//!
//! Bounds: the buffer holds at most `cap` bytes of rendered events (oldest
//! dropped first, the last event always kept); output carried in `output`
//! events is at most the job's output budget (`--max-job-output`), each
//! run's stream at most its output limit (the supervisor passes on only
//! what fits). The log belongs to the job's record: it goes when the job
//! is forgotten (results evicted or expired). Once the job has finished,
//! its log counts against the events budget of all finished jobs
//! (`--events-budget`, kept by the queue): over it, the oldest finished
//! jobs' logs are compacted to their `job.ended` ([`EventLog::compact`]).
//!
//! Every event serializes to one line of JSON carrying its `id`, `event`
//! name and `at` time with its fields ([`Stamped`]): the same text is the
//! `data:` of a Server-Sent Event and a message a queue can carry between
//! nodes (and parse back with `serde_json`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::runner::{OutputStream, OutputTap, RunResult, Usage, result::signal_name};

/// Which output stream a chunk came from, as events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl From<OutputStream> for Stream {
    fn from(s: OutputStream) -> Stream {
        match s {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        }
    }
}

/// How bytes are spelt in JSON: `utf8` (as they are) or `base64`. For an
/// `output` chunk's `data`: `utf8` when the bytes are
/// valid UTF-8 (a character split between two reads is held back and sent
/// whole with the next chunk), else `base64`. Either way nothing is lost:
/// the decoded chunks, concatenated, are the program's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Utf8,
    Base64,
}

/// The end of one run (a step without tests, or a test): its verdict and
/// figures, without the output bodies (those went out as `output`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunEnd {
    /// The verdict, as in the job's results (`ok`, `wrong_answer`, ...).
    pub status: String,
    pub exit_code: Option<i32>,
    /// `SIGKILL`, ...
    pub signal: Option<String>,
    pub message: Option<String>,
    pub usage: Option<Usage>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl RunEnd {
    pub fn new(status: &str, r: Option<&RunResult>, message: Option<String>) -> RunEnd {
        RunEnd {
            status: status.to_string(),
            exit_code: r.and_then(|r| r.exit_code),
            signal: r.and_then(|r| r.signal).map(signal_name),
            message: message.or_else(|| r.and_then(|r| r.message.clone())),
            usage: r.map(|r| r.usage.clone()),
            stdout_truncated: r.is_some_and(|r| r.stdout_truncated),
            stderr_truncated: r.is_some_and(|r| r.stderr_truncated),
        }
    }
}

/// What happened. `step` and `test` are indexes into the request's
/// `steps` and that step's `tests`, from 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event")]
#[schema(as = EventBody)]
pub enum Event {
    /// An executor took the job: its workspace is being made.
    #[serde(rename = "job.started")]
    JobStarted { profile: String, steps: usize },
    /// A step begins (a step with tests: before its first test).
    #[serde(rename = "step.started")]
    StepStarted {
        step: usize,
        name: String,
        tests: usize,
    },
    /// A test of a step begins.
    #[serde(rename = "test.started")]
    TestStarted { step: usize, test: usize },
    /// A chunk of the program's stdout or stderr, as it was read.
    #[serde(rename = "output")]
    Output {
        step: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test: Option<usize>,
        stream: Stream,
        data: String,
        encoding: Encoding,
    },
    /// The job's output budget (`--max-job-output`) is spent: no more
    /// `output` events for this job (runs still run, and are judged).
    #[serde(rename = "output.truncated")]
    OutputTruncated {
        step: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test: Option<usize>,
        stream: Stream,
        reason: String,
    },
    /// A test's verdict.
    #[serde(rename = "test.ended")]
    TestEnded {
        step: usize,
        test: usize,
        #[serde(flatten)]
        end: RunEnd,
    },
    /// A step's verdict: for a step with tests, ok when all are ok, else
    /// the first failing test's; a step without tests has its `run`.
    #[serde(rename = "step.ended")]
    StepEnded {
        step: usize,
        name: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<RunEnd>,
    },
    /// The job's end: `completed`, `cancelled` or `failed` (with its
    /// `error`); always the last event.
    #[serde(rename = "job.ended")]
    JobEnded {
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<f64>,
    },
    /// Not stored: told to a reader whose next events were dropped from
    /// the buffer before it read them. Ids `after + 1 ..= next - 1` are
    /// gone; the stream goes on at `next`.
    #[serde(rename = "gap")]
    Gap { after: u64, next: u64, dropped: u64 },
}

impl Event {
    /// The event's name (`job.started`, `output`, ...), as SSE's `event:`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::JobStarted { .. } => "job.started",
            Event::StepStarted { .. } => "step.started",
            Event::TestStarted { .. } => "test.started",
            Event::Output { .. } => "output",
            Event::OutputTruncated { .. } => "output.truncated",
            Event::TestEnded { .. } => "test.ended",
            Event::StepEnded { .. } => "step.ended",
            Event::JobEnded { .. } => "job.ended",
            Event::Gap { .. } => "gap",
        }
    }
}

/// An event with its id and time: the unit a log stores and a queue would
/// carry (`{"id":3,"at":1765152000.25,"event":"output",...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct Stamped {
    pub id: u64,
    /// Unix time, seconds.
    pub at: f64,
    #[serde(flatten)]
    pub event: Event,
}

impl Stamped {
    /// The Server-Sent Events frame: `id:`, `event:`, one `data:` line of
    /// JSON, a blank line.
    pub fn frame(&self) -> String {
        let data = serde_json::to_string(self).unwrap_or_else(|e| {
            // Unreachable with these types; never a broken frame.
            format!("{{\"id\":{},\"error\":\"{e}\"}}", self.id)
        });
        format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            self.id,
            self.event.name()
        )
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A stored event: its id and its rendered frame.
#[derive(Debug, Clone)]
struct Frame {
    id: u64,
    text: Arc<str>,
}

/// What a stored frame costs besides its text (the deque slot, the Arc's
/// counts and allocation).
const FRAME_OVERHEAD: u64 = 64;

/// The smallest buffer a log keeps: two of the largest output events (a
/// 64 KiB read, base64-encoded) and then some.
pub const MIN_CAP: u64 = 256 << 10;

#[derive(Debug)]
struct Inner {
    frames: VecDeque<Frame>,
    /// Bytes of `frames` (texts plus [`FRAME_OVERHEAD`] each).
    bytes: u64,
    /// The id the next event gets.
    next_id: u64,
    /// Output bytes the log may still carry (the job's output budget).
    output_left: u64,
    /// The output budget's end was told (once per job).
    output_cut_told: bool,
    /// `job.ended` is in: nothing more comes.
    closed: bool,
}

/// One job's events: a bounded buffer and the readers' wake-up.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
    /// The last id published, and whether the log is closed.
    tick: watch::Sender<(u64, bool)>,
    cap: u64,
}

/// What a reader gets from [`EventLog::read_after`].
#[derive(Debug, Default)]
pub struct Batch {
    /// The reader's next events were dropped: tell it first.
    pub gap: Option<Stamped>,
    /// Frames after the reader's cursor, in order.
    pub frames: Vec<Arc<str>>,
    /// The id of the last frame in `frames` (or of the gap), the reader's
    /// new cursor.
    pub last: u64,
    /// The log is closed and the reader has everything: end the stream.
    pub done: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventLog {
    /// A log keeping at most `cap` bytes of events (at least [`MIN_CAP`]),
    /// carrying at most `output_budget` bytes of output in all.
    pub fn new(cap: u64, output_budget: u64) -> EventLog {
        EventLog {
            inner: Mutex::new(Inner {
                frames: VecDeque::new(),
                bytes: 0,
                next_id: 1,
                output_left: output_budget,
                output_cut_told: false,
                closed: false,
            }),
            tick: watch::channel((0, false)).0,
            cap: cap.max(MIN_CAP),
        }
    }

    /// Appends `event` (ignored once the log is closed) and wakes readers.
    /// Never waits on a reader. Returns its id (0 if ignored).
    pub fn push(&self, event: Event) -> u64 {
        let close = matches!(event, Event::JobEnded { .. });
        let mut g = lock(&self.inner);
        if g.closed {
            return 0;
        }
        let id = g.next_id;
        g.next_id += 1;
        let text: Arc<str> = Stamped {
            id,
            at: now(),
            event,
        }
        .frame()
        .into();
        g.bytes += text.len() as u64 + FRAME_OVERHEAD;
        g.frames.push_back(Frame { id, text });
        // Oldest first, never the newest (so `job.ended` always stays).
        while g.bytes > self.cap && g.frames.len() > 1 {
            if let Some(f) = g.frames.pop_front() {
                g.bytes -= f.text.len() as u64 + FRAME_OVERHEAD;
            }
        }
        g.closed |= close;
        let closed = g.closed;
        drop(g);
        self.tick.send_replace((id, closed));
        id
    }

    /// Takes up to `n` bytes from the job's output budget: how many may be
    /// carried. The first time it falls short, `told` is true (the caller
    /// says so with an `output.truncated` event).
    fn take_output(&self, n: usize) -> (usize, bool) {
        let mut g = lock(&self.inner);
        let ok = (n as u64).min(g.output_left);
        g.output_left -= ok;
        let cut = ok < n as u64 && !g.output_cut_told;
        g.output_cut_told |= cut;
        (ok as usize, cut)
    }

    /// What a reader that has seen everything up to id `after` reads next:
    /// at most about `max_bytes` of frames (at least one).
    pub fn read_after(&self, after: u64, max_bytes: usize) -> Batch {
        let g = lock(&self.inner);
        let mut b = Batch {
            last: after,
            ..Batch::default()
        };
        let first = g.frames.front().map_or(g.next_id, |f| f.id);
        if after + 1 < first {
            b.gap = Some(Stamped {
                id: first - 1,
                at: now(),
                event: Event::Gap {
                    after,
                    next: first,
                    dropped: first - 1 - after,
                },
            });
            b.last = first - 1;
        }
        // Ids are consecutive: the reader's next frame is at this index.
        let start = (b.last + 1).saturating_sub(first) as usize;
        let mut size = 0;
        for f in g.frames.iter().skip(start) {
            if size > 0 && size + f.text.len() > max_bytes {
                break;
            }
            size += f.text.len();
            b.last = f.id;
            b.frames.push(f.text.clone());
        }
        b.done = g.closed && b.last + 1 >= g.next_id;
        b
    }

    /// Drops every event but the last (a finished job's `job.ended`); a
    /// reader from an earlier id then gets a gap and the end. For the
    /// finished jobs' events budget.
    pub fn compact(&self) {
        let mut g = lock(&self.inner);
        while g.frames.len() > 1 {
            if let Some(f) = g.frames.pop_front() {
                g.bytes -= f.text.len() as u64 + FRAME_OVERHEAD;
            }
        }
        g.frames.shrink_to_fit();
    }

    /// Wakes when something is published (see [`watch::Receiver`]).
    pub fn subscribe(&self) -> watch::Receiver<(u64, bool)> {
        self.tick.subscribe()
    }

    /// Bytes the log holds now.
    pub fn held_bytes(&self) -> u64 {
        lock(&self.inner).bytes + size_of::<EventLog>() as u64
    }

    /// The id of the last event (0 if none).
    pub fn last_id(&self) -> u64 {
        lock(&self.inner).next_id - 1
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }
}

/// The output of one run (a step, or a test of a step), passed to its
/// job's log as `output` events while the supervisor reads it.
#[derive(Debug)]
pub struct RunTap {
    log: Arc<EventLog>,
    step: usize,
    test: Option<usize>,
    /// Per stream: the start of a UTF-8 character whose rest is still to
    /// come (at most 3 bytes).
    carry: Mutex<[Vec<u8>; 2]>,
}

impl RunTap {
    pub fn new(log: Arc<EventLog>, step: usize, test: Option<usize>) -> RunTap {
        RunTap {
            log,
            step,
            test,
            carry: Mutex::new([Vec::new(), Vec::new()]),
        }
    }

    fn emit(&self, stream: Stream, bytes: &[u8], encoding: Encoding) {
        if bytes.is_empty() {
            return;
        }
        let data = match encoding {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Base64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
        };
        self.log.push(Event::Output {
            step: self.step,
            test: self.test,
            stream,
            data,
            encoding,
        });
    }

    /// Sends what is held back at the end of the run (an incomplete
    /// character: base64).
    pub fn flush(&self) {
        let held = std::mem::take(&mut *lock(&self.carry));
        for (k, rest) in held.iter().enumerate() {
            let stream = if k == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            self.emit(stream, rest, Encoding::Base64);
        }
    }
}

impl OutputTap for RunTap {
    fn output(&self, stream: OutputStream, bytes: &[u8]) {
        let stream = Stream::from(stream);
        let (n, cut) = self.log.take_output(bytes.len());
        let mut carry = lock(&self.carry);
        let held = &mut carry[stream as usize];
        let mut data = std::mem::take(held);
        data.extend_from_slice(&bytes[..n]);
        match std::str::from_utf8(&data) {
            Ok(_) => self.emit(stream, &data, Encoding::Utf8),
            // Valid but for an unfinished character at the end: hold it.
            Err(e) if e.error_len().is_none() && !cut && n == bytes.len() => {
                let (ok, rest) = data.split_at(e.valid_up_to());
                self.emit(stream, ok, Encoding::Utf8);
                *held = rest.to_vec();
            }
            Err(_) => self.emit(stream, &data, Encoding::Base64),
        }
        drop(carry);
        if cut {
            self.log.push(Event::OutputTruncated {
                step: self.step,
                test: self.test,
                stream,
                reason: "the job's output budget (--max-job-output) is spent".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_of(frame: &str) -> Stamped {
        let line = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data line");
        serde_json::from_str(line).expect("json")
    }

    fn drain(log: &EventLog, after: u64) -> (Vec<Stamped>, Option<Stamped>, bool) {
        let b = log.read_after(after, usize::MAX);
        (b.frames.iter().map(|f| data_of(f)).collect(), b.gap, b.done)
    }

    #[test]
    fn ids_are_consecutive_and_resume_exactly() {
        let log = EventLog::new(MIN_CAP, 1 << 20);
        for i in 0..5 {
            log.push(Event::TestStarted { step: 0, test: i });
        }
        let (all, gap, done) = drain(&log, 0);
        assert!(gap.is_none() && !done);
        assert_eq!(
            all.iter().map(|s| s.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let (rest, _, _) = drain(&log, 3);
        assert_eq!(rest.iter().map(|s| s.id).collect::<Vec<_>>(), [4, 5]);
        log.push(Event::JobEnded {
            status: "completed".into(),
            error: None,
            duration_ms: None,
        });
        let (end, _, done) = drain(&log, 5);
        assert!(done);
        assert_eq!(end[0].event.name(), "job.ended");
        // Nothing after the end.
        assert_eq!(log.push(Event::TestStarted { step: 0, test: 9 }), 0);
        assert!(drain(&log, 6).2);
    }

    #[test]
    fn the_buffer_is_bounded_and_a_late_reader_is_told_of_the_gap() {
        let log = EventLog::new(MIN_CAP, u64::MAX);
        let chunk = "x".repeat(10_000);
        for _ in 0..200 {
            log.push(Event::Output {
                step: 0,
                test: None,
                stream: Stream::Stdout,
                data: chunk.clone(),
                encoding: Encoding::Utf8,
            });
        }
        assert!(log.held_bytes() <= MIN_CAP + 1024, "{}", log.held_bytes());
        let b = log.read_after(0, usize::MAX);
        let gap = b.gap.expect("gap");
        let Event::Gap {
            after,
            next,
            dropped,
        } = gap.event
        else {
            panic!("{gap:?}")
        };
        assert_eq!(after, 0);
        assert_eq!(dropped, next - 1);
        assert_eq!(gap.id, next - 1);
        assert_eq!(data_of(&b.frames[0]).id, next);
        assert_eq!(b.last, 200);
    }

    #[test]
    fn compacted_a_finished_log_keeps_its_end() {
        let log = EventLog::new(MIN_CAP, u64::MAX);
        for i in 0..10 {
            log.push(Event::TestStarted { step: 0, test: i });
        }
        log.push(Event::JobEnded {
            status: "completed".into(),
            error: None,
            duration_ms: None,
        });
        let before = log.held_bytes();
        log.compact();
        assert!(log.held_bytes() < before);
        let b = log.read_after(0, usize::MAX);
        let gap = b.gap.expect("gap");
        assert_eq!((gap.id, b.last, b.done), (10, 11, true));
        assert_eq!(data_of(&b.frames[0]).event.name(), "job.ended");
        // A reader that had everything but the end still gets it.
        assert_eq!(log.read_after(10, usize::MAX).frames.len(), 1);
    }

    #[test]
    fn reads_are_batched_by_size() {
        let log = EventLog::new(MIN_CAP, u64::MAX);
        for i in 0..10 {
            log.push(Event::TestStarted { step: 0, test: i });
        }
        let b = log.read_after(0, 1);
        assert_eq!(b.frames.len(), 1, "at least one, even over the size");
        assert_eq!(b.last, 1);
    }

    #[test]
    fn utf8_split_across_reads_is_sent_whole_and_binary_as_base64() {
        let log = Arc::new(EventLog::new(MIN_CAP, u64::MAX));
        let tap = RunTap::new(log.clone(), 1, Some(2));
        let e = "é".as_bytes(); // 2 bytes
        tap.output(OutputStream::Stdout, &[b'a', e[0]]);
        tap.output(OutputStream::Stdout, &[e[1], b'b']);
        tap.output(OutputStream::Stderr, &[0xff, 0x00]);
        tap.output(OutputStream::Stdout, &[e[0]]);
        tap.flush();
        let (ev, _, _) = drain(&log, 0);
        let got: Vec<_> = ev
            .iter()
            .map(|s| match &s.event {
                Event::Output {
                    stream,
                    data,
                    encoding,
                    step: 1,
                    test: Some(2),
                } => (*stream, data.clone(), *encoding),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (Stream::Stdout, "a".to_string(), Encoding::Utf8),
                (Stream::Stdout, "éb".to_string(), Encoding::Utf8),
                (Stream::Stderr, "/wA=".to_string(), Encoding::Base64),
                (Stream::Stdout, "ww==".to_string(), Encoding::Base64),
            ]
        );
    }

    #[test]
    fn output_stops_at_the_job_budget_and_says_so_once() {
        let log = Arc::new(EventLog::new(MIN_CAP, 10));
        let tap = RunTap::new(log.clone(), 0, None);
        tap.output(OutputStream::Stdout, b"0123456");
        tap.output(OutputStream::Stdout, b"789abc");
        tap.output(OutputStream::Stderr, b"more");
        let (ev, _, _) = drain(&log, 0);
        let names: Vec<_> = ev.iter().map(|s| s.event.name()).collect();
        assert_eq!(names, ["output", "output", "output.truncated"]);
        let text: String = ev
            .iter()
            .filter_map(|s| match &s.event {
                Event::Output { data, .. } => Some(data.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "0123456789");
    }

    #[test]
    fn events_round_trip_through_json() {
        let s = Stamped {
            id: 7,
            at: 1.5,
            event: Event::TestEnded {
                step: 1,
                test: 0,
                end: RunEnd {
                    status: "wrong_answer".into(),
                    exit_code: Some(0),
                    signal: None,
                    message: None,
                    usage: Some(Usage::default()),
                    stdout_truncated: false,
                    stderr_truncated: false,
                },
            },
        };
        let j = serde_json::to_value(&s).expect("json");
        assert_eq!(j["event"], "test.ended");
        assert_eq!(j["status"], "wrong_answer");
        assert_eq!(j["id"], 7);
        let back: Stamped = serde_json::from_value(j).expect("parse");
        assert_eq!(back, s);
        let f = s.frame();
        assert!(f.starts_with("id: 7\nevent: test.ended\ndata: {"), "{f}");
        assert!(f.ends_with("}\n\n"));
    }
}
