//! The OpenAPI 3 document served at `/openapi.json` (hand-written).

use serde_json::{Value, json};

fn err_resp(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn job_resp(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}})
}

const EVICTED: &str = "The job finished, but its results were evicted to stay within --results-budget (the error names the flag and its value)";

pub fn document() -> Value {
    let size =
        json!({"oneOf": [{"type": "string", "example": "64M"}, {"type": "integer", "minimum": 0}]});
    let run_props = json!({
        "status": {"type": "string", "enum": ["ok", "runtime_error", "time_limit", "wall_time_limit", "memory_limit", "output_limit", "sandbox_error", "wrong_answer", "cancelled", "skipped", "workspace_limit"]},
        "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["string", "null"], "example": "SIGKILL"},
        "message": {"type": ["string", "null"]},
        "usage": {"$ref": "#/components/schemas/Usage"},
        "stdout": {"type": "string"},
        "stdout_encoding": {"type": "string", "enum": ["utf8", "base64"]},
        "stderr": {"type": "string"},
        "stderr_encoding": {"type": "string", "enum": ["utf8", "base64"]},
        "stdout_truncated": {"type": "boolean"},
        "stderr_truncated": {"type": "boolean"},
    });
    let mut step_props = run_props.clone();
    if let Some(m) = step_props.as_object_mut() {
        m.insert("name".into(), json!({"type": "string"}));
        m.insert(
            "tests".into(),
            json!({"type": "array", "items": {"$ref": "#/components/schemas/RunResult"}}),
        );
    }
    let events_path = json!({
        "parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
            {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "integer", "minimum": 0}, "description": "Resume after this event id (what an EventSource sends when it reconnects)"},
        ],
        "get": {
            "summary": "The job's live events (Server-Sent Events)",
            "description": "A text/event-stream: each event is `id:` (1, 2, ... per job), `event:` (its name) and one `data:` line of JSON (see the Event schema): job.started, step.started, test.started, output, output.truncated, test.ended, step.ended, job.ended (always last; the stream closes after it), and gap (events the reader had not read were dropped from the job's --events-buffer). Idle streams get `: keep-alive` comments. See docs/api.md.",
            "responses": {
                "200": {"description": "The event stream", "content": {"text/event-stream": {"schema": {"type": "string"}, "example": "id: 3\nevent: output\ndata: {\"id\":3,\"at\":1796690300.93,\"event\":\"output\",\"step\":0,\"stream\":\"stdout\",\"data\":\"compiling part 1\\n\",\"encoding\":\"utf8\"}\n\n"}}},
                "204": {"description": "The job has ended and Last-Event-ID is its last event: nothing follows"},
                "400": err_resp("Last-Event-ID is not a number (field Last-Event-ID)"),
                "401": err_resp("Unauthorized"),
                "404": err_resp("Unknown or expired job"),
                "410": err_resp(EVICTED),
                "429": {"description": "--max-event-streams streams are open; retry after the Retry-After seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }
        },
    });
    let event_schema = json!({"type": "object", "required": ["id", "at", "event"], "description": "The data of one event: its id and time, its name, and the fields of that event (docs/api.md lists them per event)", "properties": {
        "id": {"type": "integer", "minimum": 1},
        "at": {"type": "number", "description": "Unix time, seconds"},
        "event": {"type": "string", "enum": ["job.started", "step.started", "test.started", "output", "output.truncated", "test.ended", "step.ended", "job.ended", "gap"]},
        "profile": {"type": "string"},
        "steps": {"type": "integer"},
        "step": {"type": "integer", "minimum": 0},
        "test": {"type": "integer", "minimum": 0},
        "tests": {"type": "integer"},
        "name": {"type": "string"},
        "stream": {"type": "string", "enum": ["stdout", "stderr"]},
        "data": {"type": "string"},
        "encoding": {"type": "string", "enum": ["utf8", "base64"]},
        "reason": {"type": "string"},
        "status": {"type": "string"},
        "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["string", "null"]},
        "message": {"type": ["string", "null"]},
        "usage": {"$ref": "#/components/schemas/Usage"},
        "stdout_truncated": {"type": "boolean"},
        "stderr_truncated": {"type": "boolean"},
        "run": {"type": "object", "description": "step.ended of a step without tests: its run's status, exit_code, signal, message, usage, *_truncated"},
        "error": {"type": "string"},
        "duration_ms": {"type": "number"},
        "after": {"type": "integer"}, "next": {"type": "integer"}, "dropped": {"type": "integer"},
    }});
    let auth = json!([{"bearer": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "sandbox job API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run untrusted programs in declarative sandboxes: jobs of ordered steps sharing a /box workspace. Every answer carries an X-Request-Id header: the client's own if it sent a sane one (1-128 characters of [A-Za-z0-9._:-]), else one the server made; the server's log lines about the request carry it. See docs/api.md.",
        },
        "security": auth,
        "paths": {
            "/v1/jobs": {"post": {
                "summary": "Submit a job",
                "parameters": [{"name": "wait", "in": "query", "required": false, "schema": {"type": "boolean"}, "description": "true: answer when the job has finished (200 with the job)"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}},
                "responses": {
                    "200": job_resp("wait=true: the finished job"),
                    "202": {"description": "Queued", "headers": {"Location": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": ["queued"]}}}}}},
                    "400": err_resp("Invalid request; `field` names the offending field"),
                    "401": err_resp("Missing or wrong bearer token"),
                    "408": err_resp("Body not received within --body-timeout"),
                    "413": err_resp("Body larger than --max-body"),
                    "429": {"description": "Queue full; retry after the Retry-After seconds", "headers": {"Retry-After": {"schema": {"type": "integer"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "503": err_resp("Shutting down"),
                }
            }},
            "/v1/jobs/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "get": {"summary": "A job with its results so far", "responses": {"200": job_resp("The job"), "401": err_resp("Unauthorized"), "404": err_resp("Unknown or expired job"), "410": err_resp(EVICTED)}},
                "delete": {"summary": "Cancel a job (kills its running step)", "responses": {"200": job_resp("The job after cancellation (status cancelled, or completed if it had already finished)"), "401": err_resp("Unauthorized"), "404": err_resp("Unknown or expired job"), "410": err_resp(EVICTED)}},
            },
            "/v1/jobs/{id}/events": events_path,
            "/v1/profiles": {"get": {"summary": "Available profiles", "responses": {"200": {"description": "Profiles", "content": {"application/json": {"schema": {"type": "object", "properties": {"profiles": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "description": {"type": "string"}}}}}}}}}, "401": err_resp("Unauthorized")}}},
            "/v1/profiles/{name}": {"get": {
                "summary": "A resolved profile",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The resolved profile (namespaces, filesystem, process, capabilities, seccomp, limits)", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": err_resp("Unauthorized"), "404": err_resp("Unknown profile")}
            }},
            "/healthz": {"get": {"summary": "Liveness (no auth)", "security": [], "responses": {"200": {"description": "{\"status\":\"ok\"}"}, "503": {"description": "Shutting down ({\"status\":\"shutting_down\"}), or something jobs need is missing: {\"status\":\"unhealthy\",\"failed\":[\"work directory: …\", \"cgroups: …\"]}"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": err_resp("Unauthorized")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "field": {"type": "string", "example": "files[2].path"}}},
                "File": {"type": "object", "required": ["path"], "additionalProperties": false, "properties": {
                    "path": {"type": "string", "description": "Relative to /box; no '..', '.', NUL or leading '/'"},
                    "content": {"type": "string"},
                    "encoding": {"type": "string", "enum": ["utf8", "base64"], "default": "utf8"},
                    "executable": {"type": "boolean", "default": false},
                }},
                "Limits": {"type": "object", "additionalProperties": false, "description": "May only tighten min(profile, server maxima)", "properties": {
                    "cpu_time": {"type": "string", "example": "1s"},
                    "wall_time": {"type": "string", "example": "5s"},
                    "memory": size, "output": size, "file_size": size, "stack": size,
                    "pids": {"type": "integer", "minimum": 1},
                    "open_files": {"type": "integer", "minimum": 1},
                }},
                "Test": {"type": "object", "additionalProperties": false, "properties": {
                    "stdin": {"type": "string"}, "stdin_encoding": {"type": "string", "enum": ["utf8", "base64"]},
                    "expected_stdout": {"type": "string"}, "expected_stdout_encoding": {"type": "string", "enum": ["utf8", "base64"]},
                }},
                "Step": {"type": "object", "required": ["command"], "additionalProperties": false, "properties": {
                    "name": {"type": "string"},
                    "command": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "argv; never a shell string"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "stdin": {"type": "string"}, "stdin_encoding": {"type": "string", "enum": ["utf8", "base64"]},
                    "expected_stdout": {"type": "string"}, "expected_stdout_encoding": {"type": "string", "enum": ["utf8", "base64"]},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                    "continue_on_failure": {"type": "boolean", "default": false},
                    "tests": {"type": "array", "items": {"$ref": "#/components/schemas/Test"}},
                }},
                "JobRequest": {"type": "object", "required": ["steps"], "additionalProperties": false, "properties": {
                    "profile": {"type": "string", "default": "strict"},
                    "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
                    "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Step"}},
                    "outputs": {"type": "array", "items": {"type": "string"}},
                }},
                "Usage": {"type": "object", "properties": {
                    "cpu_ms": {"type": "number"}, "user_ms": {"type": "number"}, "sys_ms": {"type": "number"},
                    "wall_ms": {"type": "number"}, "memory_peak_bytes": {"type": "integer"}, "pids_peak": {"type": "integer"},
                }},
                "RunResult": {"type": "object", "properties": run_props},
                "StepResult": {"type": "object", "properties": step_props},
                "OutputFile": {"type": "object", "properties": {
                    "content": {"type": "string"}, "encoding": {"type": "string", "enum": ["utf8", "base64"]},
                    "size": {"type": "integer"}, "error": {"type": "string"},
                }},
                "Event": event_schema,
                "Job": {"type": "object", "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["queued", "running", "completed", "cancelled", "failed"]},
                    "profile": {"type": "string"},
                    "created_at": {"type": "number"}, "started_at": {"type": ["number", "null"]}, "finished_at": {"type": ["number", "null"]},
                    "duration_ms": {"type": "number"}, "queue_ms": {"type": "number"},
                    "error": {"type": "string"},
                    "steps": {"type": "array", "items": {"$ref": "#/components/schemas/StepResult"}},
                    "outputs": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/OutputFile"}},
                }},
            }
        }
    })
}
