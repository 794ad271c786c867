//! The agency push of CONTRACTS.md §3: `POST /api/v1/events` (one change)
//! and `POST /api/v1/events:batch` (JSONL or CSV, one answer line per
//! record). Records are checked by the feed's own validator
//! ([`crate::events::validate_change`]); a batch's bad records go to the
//! quarantine like a feed's, a single post's bad record is answered 400 and
//! kept nowhere (its sender is told at once and sends it again, fixed).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::keys::{AuthError, Caller, Role};
use super::{ApiState, Problem, problem, problem_field};
use crate::events::{PurposeCheck, ValidEvent, validate_change};
use crate::store::NewQuarantine;

/// Records a batch hands the writer at a time: large enough to fill a group
/// commit, small enough that one batch does not hold single posts back long.
const BATCH_CHUNK: usize = 2000;

/// One change as an agency sends it (CONTRACTS.md §1 and §3).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Change {
    /// The registry or agency the change comes from; the key must be scoped to it.
    #[schema(example = "pmlp")]
    source: String,
    /// Unique within the source: the same id again is a duplicate.
    #[schema(example = "pmlp-000001042")]
    id: String,
    /// An event type of CONTRACTS.md §1; the key must be scoped to it.
    #[schema(example = "birth.registered")]
    r#type: String,
    /// Personal code or registration number.
    #[schema(example = "321234-56789")]
    subject: String,
    /// RFC 3339 with an offset.
    #[schema(example = "2026-11-20T10:15:00+02:00")]
    occurred_at: String,
    /// The type's fields (CONTRACTS.md §1).
    #[schema(value_type = Object)]
    data: Value,
}

/// The answer to an accepted or repeated change.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// `accepted` (202) or `duplicate` (200).
    #[schema(example = "accepted")]
    status: &'static str,
    /// The event's id in the log (the first copy's, for a duplicate).
    #[schema(example = "1042")]
    event_id: String,
}

/// One answer line of a batch.
#[derive(Serialize, ToSchema)]
pub struct BatchLine {
    /// Line of the upload the record starts on (1 is the first line; in CSV, the header).
    line: usize,
    /// `accepted`, `duplicate` or `rejected`.
    status: &'static str,
    /// For an accepted or duplicate record: its event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    /// For a rejected record: what is wrong, naming the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// For a rejected record: the field that is wrong, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// What checking one record found.
enum Checked {
    Valid(ValidEvent),
    /// The key may not send it (403 for a single post); never quarantined, so
    /// a quarantine retry cannot let in what the key was not allowed to send.
    Forbidden(String, String),
    /// It does not validate: (field, error).
    Invalid(Option<String>, String),
}

/// Scope first (on the record's own `source` and `type`, before any other
/// check), then the feed's validator, then scope again on the validated values.
fn check(caller: &Caller, record: &Value, purposes: &PurposeCheck) -> Checked {
    if let Some(f) =
        forbidden(caller, record.get("source").and_then(Value::as_str), record.get("type").and_then(Value::as_str))
    {
        return f;
    }
    match validate_change(None, record, purposes) {
        Err(e) => Checked::Invalid(Some(e.field.clone()), e.to_string()),
        Ok(ev) => forbidden(caller, Some(&ev.source), Some(&ev.event_type)).unwrap_or(Checked::Valid(ev)),
    }
}

fn forbidden(caller: &Caller, source: Option<&str>, event_type: Option<&str>) -> Option<Checked> {
    let key = &caller.key;
    if key.role != Role::Agency.as_str() {
        return Some(Checked::Forbidden("key".into(), "this key may not send events (it is not an agency key)".into()));
    }
    if let Some(s) = source
        && !key.sources.iter().any(|k| k == s)
    {
        return Some(Checked::Forbidden("source".into(), format!("source: this key may not send events of {s:?}")));
    }
    if let Some(t) = event_type
        && !key.types.iter().any(|k| k == t)
    {
        return Some(Checked::Forbidden("type".into(), format!("type: this key may not send {t:?} events")));
    }
    None
}

pub(super) async fn authenticate(st: &ApiState, headers: &HeaderMap) -> Result<Caller, Response> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match st.keys.authenticate(&st.app.db, auth).await {
        Ok(c) => Ok(c),
        Err(e) => {
            let detail = match e {
                AuthError::Missing => "no API key: send Authorization: Bearer <key>",
                AuthError::Unknown => "the API key is not valid",
                AuthError::Revoked => "the API key was revoked",
                AuthError::Unavailable => {
                    return Err(problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; try again"));
                }
            };
            let mut r = problem(StatusCode::UNAUTHORIZED, detail);
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            Err(r)
        }
    }
}

/// The media type of a request, lower-case, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    let v = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The problem for a body that could not be read (413 over the limit).
fn body_problem(rej: BytesRejection) -> Response {
    problem(rej.status(), format!("body: {}", rej.body_text()))
}

fn json_error(e: &serde_json::Error) -> String {
    format!("not valid JSON (line {}, column {}): {}", e.line(), e.column(), crate::events::json_error_kind(e))
}

fn unavailable(e: &anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "cannot store pushed events");
    let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; send the same request again");
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Receives one change.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "agency",
    request_body(content = Change, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored (durably) as a new event", body = Accepted),
        (status = 200, description = "The same (source, id) was stored before", body = Accepted),
        (status = 400, description = "A field is wrong; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key may not send this source or type", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; send it again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agency_key" = []))
)]
pub async fn post_event(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match authenticate(&st, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if media_type(&headers) != "application/json" {
        return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type: expected application/json");
    }
    let body = match body {
        Ok(b) => b,
        Err(rej) => return body_problem(rej),
    };
    let record: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return problem_field(StatusCode::BAD_REQUEST, "body", format!("body: {}", json_error(&e))),
    };
    let purposes = st.app.purposes();
    let event = match check(&caller, &record, &*purposes) {
        Checked::Valid(ev) => ev,
        Checked::Forbidden(field, detail) => return problem_field(StatusCode::FORBIDDEN, &field, detail),
        Checked::Invalid(field, detail) => {
            return problem_field(StatusCode::BAD_REQUEST, field.as_deref().unwrap_or("body"), detail);
        }
    };
    match st.writer.store(vec![event], Vec::new()).await {
        Ok(stored) => {
            let s = stored[0];
            let (code, status) = if s.new { (StatusCode::ACCEPTED, "accepted") } else { (StatusCode::OK, "duplicate") };
            (code, axum::Json(Accepted { status, event_id: s.seq.to_string() })).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// Batch formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

/// The CSV columns, in the documented order (any order is read).
const CSV_COLUMNS: [&str; 6] = ["source", "id", "type", "subject", "occurred_at", "data"];

/// One record of a batch, checked.
struct Line {
    line: usize,
    outcome: LineOutcome,
}

enum LineOutcome {
    /// Index into the batch's valid events.
    Event(usize),
    Rejected(Option<String>, String),
}

/// A batch split into what goes to the writer and what is answered per line.
#[derive(Default)]
struct CheckedBatch {
    lines: Vec<Line>,
    events: Vec<ValidEvent>,
    quarantine: Vec<NewQuarantine>,
}

impl CheckedBatch {
    fn push(
        &mut self,
        caller: &Caller,
        line: usize,
        raw: String,
        record: Result<Value, (String, String)>,
        purposes: &PurposeCheck,
    ) {
        let checked = match record {
            Ok(v) => match check(caller, &v, purposes) {
                Checked::Invalid(field, error) => {
                    Err((field, error, v.get("source").and_then(Value::as_str).map(str::to_string)))
                }
                other => Ok(other),
            },
            Err((field, error)) => Err((Some(field), error, None)),
        };
        let outcome = match checked {
            Ok(Checked::Valid(ev)) => {
                self.events.push(ev);
                LineOutcome::Event(self.events.len() - 1)
            }
            Ok(Checked::Forbidden(field, error)) => LineOutcome::Rejected(Some(field), error),
            Ok(Checked::Invalid(..)) => unreachable!("mapped to Err above"),
            Err((field, error, source)) => {
                let key = &caller.key;
                let source = source
                    .unwrap_or_else(|| if key.sources.len() == 1 { key.sources[0].clone() } else { "unknown".into() });
                self.quarantine.push(NewQuarantine {
                    source,
                    location: format!("API batch of key {} ({}), line {line}", key.id, key.owner),
                    raw,
                    field: field.clone().filter(|f| f != "body"),
                    error: error.clone(),
                });
                LineOutcome::Rejected(field.filter(|f| f != "body"), error)
            }
        };
        self.lines.push(Line { line, outcome });
    }
}

fn check_jsonl(caller: &Caller, body: &[u8], purposes: &PurposeCheck) -> CheckedBatch {
    let mut out = CheckedBatch::default();
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = String::from_utf8_lossy(raw).into_owned();
        let record = serde_json::from_slice::<Value>(raw).map_err(|e| ("body".to_string(), json_error(&e)));
        out.push(caller, i + 1, text, record, purposes);
    }
    out
}

/// Reads the CSV header, naming the column that is missing or unknown.
fn csv_header(reader: &mut csv::Reader<&[u8]>) -> Result<Vec<Option<&'static str>>, String> {
    let header = reader.byte_headers().map_err(|e| format!("CSV header: {e}"))?.clone();
    let mut columns = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(h);
        let name = if i == 0 { name.trim_start_matches('\u{feff}') } else { &name }.trim().to_string();
        let Some(col) = CSV_COLUMNS.iter().find(|c| **c == name) else {
            return Err(format!("CSV header: unknown column {name:?} (the header is {})", CSV_COLUMNS.join(",")));
        };
        if columns.contains(&Some(*col)) {
            return Err(format!("CSV header: column {col:?} twice"));
        }
        columns.push(Some(*col));
    }
    if let Some(missing) = CSV_COLUMNS.iter().find(|c| !columns.contains(&Some(**c))) {
        return Err(format!("CSV header: no column {missing:?} (the header is {})", CSV_COLUMNS.join(",")));
    }
    Ok(columns)
}

fn check_csv(caller: &Caller, body: &[u8], purposes: &PurposeCheck) -> Result<CheckedBatch, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(body);
    let columns = csv_header(&mut reader)?;
    let mut out = CheckedBatch::default();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line() as usize);
                out.push(caller, line, String::new(), Err(("body".into(), format!("CSV: {e}"))), purposes);
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line() as usize);
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        // Kept as the JSON the record stands for, so `events quarantine retry`
        // can validate it again like any other quarantined record.
        let mut obj = Map::new();
        let mut data_error = None;
        for (col, field) in columns.iter().zip(record.iter()) {
            let Some(col) = col else { continue };
            let text = String::from_utf8_lossy(field).into_owned();
            if *col == "data" {
                let value = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or_else(|e| {
                        data_error = Some(format!("data: {}", json_error(&e)));
                        Value::String(text)
                    })
                };
                obj.insert("data".into(), value);
            } else {
                obj.insert((*col).into(), Value::String(text));
            }
        }
        let value = Value::Object(obj);
        let raw = value.to_string();
        let parsed = match data_error {
            // Scope first, as for every record: a forbidden line is not quarantined.
            Some(err) => match forbidden(
                caller,
                value.get("source").and_then(Value::as_str),
                value.get("type").and_then(Value::as_str),
            ) {
                Some(Checked::Forbidden(field, error)) => {
                    out.lines.push(Line { line, outcome: LineOutcome::Rejected(Some(field), error) });
                    continue;
                }
                _ => Err(("data".to_string(), err)),
            },
            None => Ok(value),
        };
        out.push(caller, line, raw, parsed, purposes);
    }
    Ok(out)
}

/// Receives many changes: JSONL (one change a line) or CSV.
#[utoipa::path(
    post,
    path = "/api/v1/events:batch",
    tag = "agency",
    request_body(
        description = "JSONL (`application/x-ndjson`): one change plus `source` a line; blank lines are skipped. \
                       CSV (`text/csv`): header `source,id,type,subject,occurred_at,data`, `data` a JSON object in one field.",
        content(
            (Change = "application/x-ndjson"),
            (String = "text/csv"),
        )
    ),
    responses(
        (status = 200, description = "One JSON line per record, in order (`application/x-ndjson`)", body = BatchLine, content_type = "application/x-ndjson"),
        (status = 400, description = "No records, or a bad CSV header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or an unknown or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSONL nor CSV", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; send the batch again (stored lines answer duplicate)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("agency_key" = []))
)]
pub async fn post_batch(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = match authenticate(&st, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let format = match media_type(&headers).as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" | "application/x-jsonlines" => {
            Format::Jsonl
        }
        "text/csv" => Format::Csv,
        _ => {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type: expected application/x-ndjson (JSONL) or text/csv",
            );
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(rej) => return body_problem(rej),
    };
    if caller.key.role != Role::Agency.as_str() {
        return problem(StatusCode::FORBIDDEN, "this key may not send events (it is not an agency key)");
    }
    let purposes: Arc<PurposeCheck> = st.app.purposes();
    // Validation of a large batch is seconds of CPU: off the async workers.
    let checked = tokio::task::spawn_blocking(move || match format {
        Format::Jsonl => Ok(check_jsonl(&caller, &body, &*purposes)),
        Format::Csv => check_csv(&caller, &body, &*purposes),
    })
    .await;
    let batch = match checked {
        Ok(Ok(b)) => b,
        Ok(Err(header_error)) => return problem_field(StatusCode::BAD_REQUEST, "header", header_error),
        Err(e) => return unavailable(&anyhow::anyhow!("batch validation panicked: {e}")),
    };
    if batch.lines.is_empty() {
        return problem_field(StatusCode::BAD_REQUEST, "body", "body: no records");
    }
    for q in &batch.quarantine {
        tracing::warn!(source = %q.source, location = %q.location, error = %q.error, "record quarantined");
    }
    let CheckedBatch { lines, events, quarantine } = batch;
    // Every chunk is queued at once, so the writer commits them back to back;
    // the quarantined records travel with the first.
    let mut chunks: Vec<Vec<ValidEvent>> = Vec::new();
    let mut it = events.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(BATCH_CHUNK).collect());
    }
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let mut quarantine = Some(quarantine);
    let stores = chunks.into_iter().map(|c| st.writer.store(c, quarantine.take().unwrap_or_default()));
    let stored: Vec<crate::store::Stored> = match futures_util::future::try_join_all(stores).await {
        Ok(parts) => parts.into_iter().flatten().collect(),
        Err(e) => return unavailable(&e),
    };
    let mut out = String::with_capacity(lines.len() * 64);
    for l in lines {
        let answer = match l.outcome {
            LineOutcome::Event(i) => {
                let s = stored[i];
                let status = if s.new { "accepted" } else { "duplicate" };
                BatchLine { line: l.line, status, event_id: Some(s.seq.to_string()), error: None, field: None }
            }
            LineOutcome::Rejected(field, error) => {
                BatchLine { line: l.line, status: "rejected", event_id: None, error: Some(error), field }
            }
        };
        out.push_str(&serde_json::to_string(&answer).expect("a batch line serializes"));
        out.push('\n');
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}
