//! The executors: plain threads, started once, each running one job at a
//! time off the queue, from its workspace to its published end.
//!
//! Not tokio's blocking pool, on purpose: the runner clones its child with
//! raw clone3, and glibc's set*id wrappers in that child broadcast to the
//! parent's threads; a thread being created or retired at that moment
//! (tokio's blocking pool does this at any time) can hang the child
//! forever. A fixed set of threads avoids it.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::metrics::{add, sub};
use super::record::{JobRecord, Start};
use super::shared::{Shared, lock};
use crate::job::events::Event;
use crate::job::{self, InputFile, JobContext, JobOutcome, Workspace, WorkspaceError};

pub(super) type Receiver = Arc<Mutex<mpsc::Receiver<Arc<JobRecord>>>>;

/// One executor, for the life of the queue: takes jobs off it until it is
/// closed and drained. The last one to stop winds the queue down.
pub(super) fn executor(q: &Shared, rx: &Receiver) {
    loop {
        let job = lock(rx).blocking_recv();
        let Some(job) = job else { break };
        sub(&q.counters.queued);
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(q, &job)))
        {
            job.span
                .in_scope(|| tracing::error!("job executor panicked: {e:?}"));
        }
    }
    q.executor_stopped();
}

/// The job's workspace with its input files written. The files are taken
/// by value: their contents (up to the largest request) are freed once on
/// disk instead of for as long as the job is remembered.
fn prepare_workspace(
    q: &Shared,
    id: &str,
    owner: (u32, u32),
    files: Vec<InputFile>,
) -> Result<Workspace, WorkspaceError> {
    let ws = Workspace::create(
        &q.workspaces,
        id,
        owner.0,
        owner.1,
        q.cfg.caps.workspace_size,
    )?;
    ws.write_files(&files)?;
    Ok(ws)
}

/// Executes one job on the current thread.
fn execute(q: &Shared, job: &JobRecord) {
    let _g = job.span.enter();
    let Some(Start {
        mut spec,
        sandbox,
        cancel,
    }) = job.start()
    else {
        return; // cancelled while queued
    };
    add(&q.counters.running);
    let waited = job.snapshot().queue_time();
    q.counters.started(waited);
    tracing::info!(
        profile = %job.profile,
        steps = spec.steps.len(),
        waited_ms = waited.as_millis() as u64,
        "job started"
    );
    job.events.push(Event::JobStarted {
        profile: job.profile.clone(),
        steps: spec.steps.len(),
    });
    let sb = match sandbox.or_else(|image| pulled(q, job, &spec, &image)) {
        Ok(sb) => sb,
        Err(e) => {
            finish(q, job, JobOutcome::default(), Some(e));
            q.expire();
            return;
        }
    };
    // Removed after the answer: unmounting waits for an RCU grace period.
    let mut workspace = None;
    let (outcome, error) = match sb.job_ids() {
        Err(e) => (JobOutcome::default(), Some(format!("host ids: {e}"))),
        Ok(ids) => match prepare_workspace(
            q,
            &job.id,
            sb.program_host_ids(&ids),
            std::mem::take(&mut spec.files),
        ) {
            Err(e) => (JobOutcome::default(), Some(format!("workspace: {e}"))),
            Ok(ws) => {
                let ctx = JobContext {
                    sandbox: &sb,
                    workspace: &ws,
                    limits: &job.limits,
                    caps: &q.cfg.caps,
                    cancel,
                    ids: ids.clone(),
                    events: Some(job.events.clone()),
                };
                let out = job::run_job(&ctx, &spec, &mut |o| job.progress(o));
                // The ids stay the job's until its files are gone.
                workspace = Some((ws, ids));
                (out, None)
            }
        },
    };
    // Stdin and expected output of every step and test: no longer needed.
    drop(spec);
    finish(q, job, outcome, error);
    if let Some((mut ws, _ids)) = workspace
        && let Err(e) = ws.remove()
    {
        tracing::warn!("{e}");
    }
    drop(sb);
    q.expire();
}

/// The job's sandbox once its image is in the store (pulled now, or by
/// the job that was already pulling it).
fn pulled(
    q: &Shared,
    job: &JobRecord,
    spec: &job::JobSpec,
    image: &str,
) -> Result<Arc<crate::runner::Sandbox>, String> {
    let images = q.sandboxes.images().ok_or("this server runs no images")?;
    images.ensure(image).map_err(|e| e.to_string())?;
    q.sandboxes
        .get(
            &job.profile,
            std::path::Path::new("/"),
            spec.image.as_deref(),
        )
        .map_err(|e| e.to_string())
}

/// Records a run job's outcome, enters it into the results store, then
/// answers those waiting for it.
fn finish(q: &Shared, job: &JobRecord, outcome: JobOutcome, error: Option<String>) {
    if let Some(e) = &error {
        tracing::error!("{e}");
    }
    q.counters.runs(&outcome);
    let f = job.finish(outcome, error);
    sub(&q.counters.running);
    tracing::info!(
        status = f.status.as_str(),
        ms = f.duration.as_millis() as u64,
        bytes = f.bytes,
        "job finished"
    );
    q.ended(job, f);
}
