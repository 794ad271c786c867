//! The register snapshot source against a server of CONTRACTS.md §2 on a
//! loopback port (ETag / If-Modified-Since, 304), through the diff into the
//! event log, the quarantine and the company profiles.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};

use proactive::app::App;
use proactive::connectors::SourceDef;
use proactive::connectors::feed::PollError;
use proactive::connectors::snapshot::register::HEADER;
use proactive::connectors::snapshot::{
    Outcome, PollOutcome, SnapshotFile, SnapshotPoller, SnapshotSettings, approve, process,
};
use proactive::events::codes::valid_test_regno;
use proactive::store::Db;

use super::support;

/// One company as the test writes it into a register file.
#[derive(Clone)]
struct Co {
    regcode: String,
    name: String,
    legal_form: &'static str,
    registered: &'static str,
    terminated: &'static str,
    closed: &'static str,
    address: String,
}

fn co(seq: u32, name: &str, address: &str) -> Co {
    Co {
        regcode: valid_test_regno(seq),
        name: name.into(),
        legal_form: "SIA",
        registered: "2010-05-04",
        terminated: "",
        closed: "",
        address: address.into(),
    }
}

/// A register file with the real header: written by the csv crate (RFC 4180
/// quoting of `;` and `"`), optionally with a BOM and CRLF, plus raw lines.
fn register(companies: &[Co], bom: bool, crlf: bool, raw_lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let term = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
    {
        let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(term).from_writer(&mut out);
        w.write_record(HEADER.split(';')).unwrap();
        for c in companies {
            let (before, inner, after) = match (c.name.find('"'), c.name.rfind('"')) {
                (Some(a), Some(b)) if a < b => (&c.name[..a], &c.name[a + 1..b], &c.name[b + 1..]),
                _ => ("", c.name.as_str(), ""),
            };
            w.write_record([
                c.regcode.as_str(),
                &format!("LV{}", c.regcode),
                &c.name,
                before.trim(),
                inner,
                after.trim(),
                &c.name.replace('"', ""),
                "K",
                "Komercreģistrs",
                c.legal_form,
                "Sabiedrība ar ierobežotu atbildību",
                c.registered,
                c.terminated,
                c.closed,
                &c.address,
                "LV-1010",
                "100000001",
                "Rīga",
                "Rīga",
                "0010000",
                "",
            ])
            .unwrap();
        }
        w.flush().unwrap();
    }
    for l in raw_lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
    out
}

/// A row whose registration number fails the checksum: the last digit of a valid one, changed.
fn malformed_row() -> String {
    let good = valid_test_regno(999);
    let last = good.as_bytes()[10] - b'0';
    let bad = format!("{}{}", &good[..10], (last + 1) % 10);
    format!("{bad};LV{bad};SIA \"Kļūda\";;Kļūda;;SIA Kļūda;K;Komercreģistrs;SIA;x;2011-01-01;;;Rīga;;;;;;")
}

fn day1() -> Vec<Co> {
    vec![
        co(1, "SIA \"Ābols; Bumbieris\"", "Rīga, Brīvības iela 1"),
        co(2, "SIA \"Otrā\"", "Rīga, Elizabetes iela 2"),
        co(3, "AS \"Trešā \"\"Zvaigzne\"\"\"", "Cēsis, Rīgas iela 3"),
        co(4, "SIA \"Vecais nosaukums\"", "Valmiera, Lāčplēša iela 4"),
        co(5, "SIA \"Pārceļotāji\"", "Jelgava, Akadēmijas iela 5"),
        co(6, "IK \"Sestā\"", "Ogre, Brīvības iela 6"),
        co(7, "SIA \"Septītā\"", "Liepāja, Graudu iela 7"),
        co(8, "SIA \"Astotā\"", "Daugavpils, Rīgas iela 8"),
    ]
}

/// Day 2: one new company, one terminated, one closed, one renamed, one moved.
fn day2() -> Vec<Co> {
    let mut v = day1();
    v[1].terminated = "2026-11-19";
    v[2].closed = "L";
    v[3].name = "SIA \"Jaunais; nosaukums\"".into();
    v[4].address = "Rīga, \"Jaunā\" iela 5; k-2".into();
    let mut new = co(9, "SIA \"Jaunpienācēja\"", "Tukums, Pils iela 9");
    new.registered = "2026-11-18";
    v.push(new);
    v
}

#[derive(Clone, Default)]
struct Served {
    body: Vec<u8>,
    etag: String,
    last_modified: String,
}

/// What the server saw: (If-None-Match, If-Modified-Since, status answered).
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>, u16)>>>;

/// A register-file server of CONTRACTS.md §2: serves one file with its ETag
/// and Last-Modified, and answers 304 to a conditional GET that matches.
struct RegisterServer {
    url: String,
    file: Arc<Mutex<Served>>,
    seen: Seen,
}

impl RegisterServer {
    async fn start() -> RegisterServer {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;

        async fn get(State((file, seen)): State<(Arc<Mutex<Served>>, Seen)>, h: HeaderMap) -> axum::response::Response {
            let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (inm, ims) = (header("if-none-match"), header("if-modified-since"));
            let f = file.lock().unwrap().clone();
            // ETag wins over the date, as RFC 9110 says.
            let unchanged = match &inm {
                Some(tag) => tag == &f.etag,
                None => ims.as_deref() == Some(f.last_modified.as_str()),
            };
            let status = if unchanged { 304 } else { 200 };
            seen.lock().unwrap().push((inm, ims, status));
            if unchanged {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            (
                [
                    ("etag", f.etag),
                    ("last-modified", f.last_modified),
                    ("content-type", "text/csv; charset=utf-8".into()),
                ],
                f.body,
            )
                .into_response()
        }

        let file = Arc::new(Mutex::new(Served::default()));
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/register.csv", axum::routing::get(get))
            .with_state((file.clone(), seen.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/register.csv", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        RegisterServer { url, file, seen }
    }

    /// Publishes a new file, dated `day` (`Last-Modified` at 06:00 Latvian time).
    fn publish(&self, body: Vec<u8>, day: &str) {
        let at = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap().and_hms_opt(4, 0, 0).unwrap().and_utc();
        let etag = format!("\"{}-{}\"", day, body.len());
        *self.file.lock().unwrap() =
            Served { body, etag, last_modified: at.format("%a, %d %b %Y %H:%M:%S GMT").to_string() };
    }

    fn last_status(&self) -> u16 {
        self.seen.lock().unwrap().last().map(|s| s.2).unwrap_or(0)
    }
}

fn snapshot_source(url: &str, spool: &std::path::Path) -> SourceDef {
    toml::from_str(&format!(
        "source = \"ur\"\nkind = \"snapshot\"\nurl = \"{url}\"\nschedule = \"0 0 6 * * *\"\nspool_dir = \"{}\"\n",
        spool.display()
    ))
    .unwrap()
}

/// Every event in the log (pending or not) as (id, type, subject, occurred_at, data).
async fn events(db: &Db) -> Vec<(String, String, String, i64, serde_json::Value)> {
    let rows = match db {
        Db::Sqlite(p, _) => sqlx::query_as::<_, (String, String, String, i64, String)>(
            "SELECT external_id, type, subject, occurred_at, data FROM events ORDER BY seq",
        )
        .fetch_all(p)
        .await
        .unwrap(),
        Db::Postgres(p) => sqlx::query_as::<_, (String, String, String, i64, String)>(
            "SELECT external_id, type, subject, occurred_at, data FROM events ORDER BY seq",
        )
        .fetch_all(p)
        .await
        .unwrap(),
    };
    rows.into_iter().map(|(a, b, c, d, e)| (a, b, c, d, serde_json::from_str(&e).unwrap())).collect()
}

fn applied(o: &Outcome) -> (bool, proactive::connectors::snapshot::SnapshotStats) {
    match o {
        Outcome::Applied { baseline, stats, .. } => (*baseline, stats.clone()),
        other => panic!("expected the snapshot applied, got {other:?}"),
    }
}

fn only(p: PollOutcome) -> Outcome {
    match p {
        PollOutcome::Fetched(mut v) if v.len() == 1 => v.remove(0),
        other => panic!("expected one fetched snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn baseline_then_304_then_a_day_of_changes_then_suspect_files_held_until_approved() {
    for t in support::stores().await {
        let server = RegisterServer::start().await;
        let out = tempfile::tempdir().unwrap();
        let app = App::open(support::config(&t.url, out.path()), support::demo_clock()).await.unwrap();
        let purposes = app.purposes();
        let spool = out.path().join("spool");
        let poller = SnapshotPoller::new(snapshot_source(&server.url, &spool)).unwrap();
        let n = t.name;

        // Day 1, the first snapshot: a baseline. BOM, CRLF, quoted `;` and `""`, one malformed row.
        server.publish(register(&day1(), true, true, &[malformed_row()]), "2026-11-19");
        let (baseline, st) = applied(&only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap()));
        assert!(baseline, "{n}");
        assert_eq!((st.rows, st.new, st.bad_rows, st.quarantined, st.events), (8, 8, 1, 1, 0), "{n}");
        assert!(events(&app.db).await.is_empty(), "{n}: a baseline emits no event");
        let report = app.engine().run_until_idle().await.unwrap();
        assert_eq!((report.events, report.cases, report.notices), (0, 0, 0), "{n}: a baseline starts nothing");
        let profiles = app.db.load_profiles(&[valid_test_regno(1), valid_test_regno(3)]).await.unwrap();
        let mut names: Vec<_> = profiles.iter().map(|p| p.name.clone().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["AS \"Trešā \"\"Zvaigzne\"\"\"", "SIA \"Ābols; Bumbieris\""], "{n}");
        assert_eq!(profiles[0].legal_form.as_deref(), Some("SIA"));

        let q = app.db.quarantine_list(true).await.unwrap();
        assert_eq!(q.len(), 1, "{n}");
        assert_eq!(q[0].source, "ur");
        assert_eq!(q[0].location, "register.csv of 2026-11-19 (snapshot 1), line 10", "{n}");
        assert_eq!(q[0].raw, malformed_row(), "{n}: the raw row, exactly");
        assert_eq!(q[0].field.as_deref(), Some("csv.regcode"));
        assert_eq!(q[0].error, "regcode: invalid registration number: registration number checksum does not match");
        assert!(std::fs::read_dir(&spool).unwrap().next().is_none(), "{n}: an applied file leaves the spool");

        // The same file again: one conditional request, answered 304.
        assert_eq!(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap(), PollOutcome::Unchanged, "{n}");
        let seen = server.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].0.as_deref().is_some_and(|e| e.starts_with("\"2026-11-19-")), "{n}: {seen:?}");
        assert!(seen[1].1.as_deref().is_some_and(|d| d.contains("19 Nov 2026")), "{n}: {seen:?}");
        assert_eq!(server.last_status(), 304);

        // Day 2: new, terminated, closed, renamed and moved companies (LF, no BOM this time).
        server.publish(register(&day2(), false, false, &[malformed_row()]), "2026-11-20");
        let (baseline, st) = applied(&only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap()));
        assert!(!baseline);
        assert_eq!(
            (st.new, st.terminated, st.renamed, st.moved, st.vanished, st.events, st.quarantined),
            (1, 2, 1, 1, 0, 5, 0),
            "{n}: the same malformed row is not quarantined twice"
        );
        let evs = events(&app.db).await;
        let by_type = |ty: &str| evs.iter().filter(|e| e.1 == ty).cloned().collect::<Vec<_>>();
        let sha8 = |id: &str| id.split('-').nth(2).unwrap().to_string();

        let reg = by_type("company.registered");
        assert_eq!(reg.len(), 1, "{n}");
        assert_eq!(reg[0].2, valid_test_regno(9));
        assert!(
            reg[0].0.starts_with("ur-20261120-") && reg[0].0.ends_with(&format!("-{}-registered", valid_test_regno(9)))
        );
        assert_eq!(
            reg[0].4,
            serde_json::json!({"name": "SIA \"Jaunpienācēja\"", "legal_form": "SIA", "registered": "2026-11-18",
                               "address": "Tukums, Pils iela 9"})
        );
        let nov18 = chrono::DateTime::parse_from_rfc3339("2026-11-18T00:00:00+02:00").unwrap().timestamp_millis();
        assert_eq!(reg[0].3, nov18, "occurred_at is the registration day");

        let ended = by_type("company.terminated");
        let ended_data = |seq: u32| ended.iter().find(|e| e.2 == valid_test_regno(seq)).map(|e| e.4.clone());
        assert_eq!(ended.len(), 2, "{n}");
        assert_eq!(ended_data(2), Some(serde_json::json!({"terminated": "2026-11-19"})));
        assert_eq!(
            ended_data(3),
            Some(serde_json::json!({"terminated": "2026-11-20", "closed": "L"})),
            "closed without a date ends on the snapshot's day"
        );
        let renamed = by_type("company.renamed");
        assert_eq!(
            renamed[0].4,
            serde_json::json!({"name": "SIA \"Jaunais; nosaukums\"", "previous": "SIA \"Vecais nosaukums\""})
        );
        let moved = by_type("company.address_changed");
        assert_eq!(
            moved[0].4,
            serde_json::json!({"address": "Rīga, \"Jaunā\" iela 5; k-2", "previous": "Jelgava, Akadēmijas iela 5"})
        );
        let ids: BTreeSet<_> = evs.iter().map(|e| e.0.clone()).collect();
        assert_eq!(ids.len(), 5);
        assert_eq!(evs.iter().map(|e| sha8(&e.0)).collect::<BTreeSet<_>>().len(), 1, "one snapshot, one id stem");

        // The events go through the engine like any other: profiles follow, and
        // each newly registered company starts its `company_registered` case.
        let report = app.engine().run_until_idle().await.unwrap();
        let registered = evs.iter().filter(|e| e.1 == "company.registered").count();
        assert!(registered > 0, "{n}: the day brings a new company");
        assert_eq!((report.events, report.cases, report.errors), (5, registered, 0), "{n}");
        let p = app.db.load_profiles(&[valid_test_regno(4), valid_test_regno(9)]).await.unwrap();
        assert!(p.iter().any(|p| p.name.as_deref() == Some("SIA \"Jaunais; nosaukums\"")), "{n}");
        assert!(p.iter().any(|p| p.name.as_deref() == Some("SIA \"Jaunpienācēja\"")), "{n}");

        // The same day-2 file imported by hand: already applied, nothing new.
        let local = out.path().join("day2.csv");
        std::fs::write(&local, register(&day2(), false, false, &[malformed_row()])).unwrap();
        let f = SnapshotFile::local(&local, chrono::NaiveDate::from_ymd_opt(2026, 11, 20)).unwrap();
        let o = process(&app.db, &SnapshotSettings::new("ur"), &f, &*purposes, &app.clock, &mut |_| {}).await.unwrap();
        assert!(matches!(o, Outcome::AlreadyApplied { .. }), "{n}: {o:?}");
        assert_eq!(events(&app.db).await.len(), 5);

        // Day 3, half-downloaded: cut inside the last row. Held, nothing applied, the operator is told.
        let mut full = register(&day2(), false, false, &[]);
        full.truncate(full.len() - 30);
        server.publish(full, "2026-11-21");
        let held = only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap());
        let Outcome::Held { id: truncated_id, reason } = held else { panic!("{n}: expected held, got {held:?}") };
        assert!(reason.starts_with("truncated: the last row (line 10) has "), "{n}: {reason}");
        assert_eq!(events(&app.db).await.len(), 5, "{n}: a held file emits nothing");
        let state = app.db.connector_state("ur").await.unwrap();
        assert!(state.last_error.as_deref().is_some_and(|e| e.contains("held back: truncated")), "{n}: {state:?}");
        let files: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
        assert_eq!(files.len(), 1, "{n}: the held file is kept for approval");

        // Day 3 again, complete but without two companies (2 of 9 vanished > 1%): held too.
        let mut thinner = day2();
        thinner.retain(|c| c.regcode != valid_test_regno(7) && c.regcode != valid_test_regno(8));
        thinner[0].address = "Rīga, Brīvības iela 100".into();
        server.publish(register(&thinner, false, true, &[]), "2026-11-21");
        let held = only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap());
        let Outcome::Held { id: thin_id, reason } = held else { panic!("{n}: expected held, got {held:?}") };
        assert_eq!(reason, "2 of 9 companies (22.22%) vanished from the file (limit 1.00%)", "{n}");

        // The operator approves the thinner one: it applies, the vanished stay known, the cut one is superseded.
        let settings = SnapshotSettings::new("ur");
        let o = approve(&app.db, &settings, thin_id, &*purposes, &app.clock, &mut |_| {}).await.unwrap();
        let (_, st) = applied(&o);
        assert_eq!((st.moved, st.vanished, st.events), (1, 2, 1), "{n}");
        let err = approve(&app.db, &settings, truncated_id, &*purposes, &app.clock, &mut |_| {}).await.unwrap_err();
        assert!(err.to_string().contains("superseded"), "{n}: {err}");
        let rows = app.db.snapshots(Some("ur"), &[]).await.unwrap();
        let states: Vec<_> = rows.iter().map(|r| (r.id, r.state.as_str())).collect();
        assert_eq!(states[..2], [(thin_id, "applied"), (truncated_id, "superseded")], "{n}");
        assert!(states[2..].iter().all(|s| s.1 == "applied"), "{n}: {states:?}");
        assert!(rows[0].approved_at.is_some());

        // The day-2 file is served again the next day: the two come back (no "registered" again)
        // and the first company moves back; a file equal to an older one is still diffed.
        server.publish(register(&day2(), false, false, &[malformed_row()]), "2026-11-22");
        let (_, st) = applied(&only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap()));
        assert_eq!((st.new, st.reappeared, st.moved, st.vanished, st.events), (0, 2, 1, 0, 1), "{n}");
        assert_eq!(by_type_count(&app.db, "company.registered").await, 1, "{n}");
        t.cleanup().await;
    }
}

async fn by_type_count(db: &Db, ty: &str) -> usize {
    events(db).await.iter().filter(|e| e.1 == ty).count()
}

#[tokio::test]
async fn a_crash_between_two_batches_resumes_without_loss_or_repeats() {
    crash_and_resume(false).await;
}

#[tokio::test]
async fn a_crash_between_a_batchs_events_and_its_fingerprints_resumes_without_repeats() {
    crash_and_resume(true).await;
}

async fn crash_and_resume(before_fingerprints: bool) {
    for t in support::stores().await {
        let server = RegisterServer::start().await;
        let out = tempfile::tempdir().unwrap();
        let app = App::open(support::config(&t.url, out.path()), support::demo_clock()).await.unwrap();
        let purposes = app.purposes();
        let spool = out.path().join("spool");
        let n = t.name;
        server.publish(register(&day1(), true, true, &[]), "2026-11-19");
        let poller = SnapshotPoller::new(snapshot_source(&server.url, &spool)).unwrap();
        applied(&only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap()));

        // Day 2 with one changed company per batch, dying after the second batch's commit.
        server.publish(register(&day2(), false, true, &[]), "2026-11-20");
        let crashing =
            SnapshotPoller::new(snapshot_source(&server.url, &spool)).unwrap().with_settings(SnapshotSettings {
                batch_size: 1,
                crash_after_batches: Some(2),
                crash_before_fingerprints: before_fingerprints,
                ..SnapshotSettings::new("ur")
            });
        match crashing.poll(&app.db, &app.clock, &*purposes).await {
            Err(PollError::Failed(m)) => assert!(m.contains("crash_after_batches"), "{n}: {m}"),
            other => panic!("{n}: expected the crash, got {other:?}"),
        }
        let partial = events(&app.db).await.len();
        assert!((1..5).contains(&partial), "{n}: two batches committed {partial} events");
        let rows = app.db.snapshots(Some("ur"), &["applying"]).await.unwrap();
        assert_eq!(rows.len(), 1, "{n}: the snapshot is left half-applied");

        // A restart: the server says 304 now, and the interrupted snapshot is finished from the spool.
        let restarted = SnapshotPoller::new(snapshot_source(&server.url, &spool)).unwrap();
        let o = only(restarted.poll(&app.db, &app.clock, &*purposes).await.unwrap());
        assert_eq!(server.last_status(), 304, "{n}");
        let (_, st) = applied(&o);
        assert!(st.resumed);
        // A batch whose fingerprints were lost is diffed again: the same ids, dropped by the event log.
        let repeated = u64::from(before_fingerprints);
        assert_eq!((st.events, st.duplicate_events), (5 - partial as u64, repeated), "{n}");
        let evs = events(&app.db).await;
        let ids: BTreeSet<_> = evs.iter().map(|e| e.0.clone()).collect();
        assert_eq!((evs.len(), ids.len()), (5, 5), "{n}: every change once");

        // The same diff on a store that never crashed gives the very same events.
        let clean = support::sqlite().await;
        let app2 = App::open(support::config(&clean.url, out.path()), support::demo_clock()).await.unwrap();
        for (day, body) in
            [("2026-11-19", register(&day1(), true, true, &[])), ("2026-11-20", register(&day2(), false, true, &[]))]
        {
            let f = out.path().join(format!("{day}.csv"));
            std::fs::write(&f, body).unwrap();
            let file = SnapshotFile::local(&f, chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()).unwrap();
            process(&app2.db, &SnapshotSettings::new("ur"), &file, &*purposes, &app2.clock, &mut |_| {}).await.unwrap();
        }
        let reference: BTreeSet<_> = events(&app2.db).await.into_iter().map(|e| (e.0, e.1, e.4.to_string())).collect();
        let got: BTreeSet<_> = evs.into_iter().map(|e| (e.0, e.1, e.4.to_string())).collect();
        assert_eq!(got, reference, "{n}");
        clean.cleanup().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn an_interrupted_snapshot_whose_file_was_lost_is_fetched_again() {
    let t = support::sqlite().await;
    let server = RegisterServer::start().await;
    let out = tempfile::tempdir().unwrap();
    let app = App::open(support::config(&t.url, out.path()), support::demo_clock()).await.unwrap();
    let purposes = app.purposes();
    let spool = out.path().join("spool");
    server.publish(register(&day1(), true, true, &[]), "2026-11-19");
    let poller = SnapshotPoller::new(snapshot_source(&server.url, &spool)).unwrap();
    applied(&only(poller.poll(&app.db, &app.clock, &*purposes).await.unwrap()));
    server.publish(register(&day2(), true, true, &[]), "2026-11-20");
    let crashing = SnapshotPoller::new(snapshot_source(&server.url, &spool)).unwrap().with_settings(SnapshotSettings {
        batch_size: 1,
        crash_after_batches: Some(1),
        ..SnapshotSettings::new("ur")
    });
    assert!(crashing.poll(&app.db, &app.clock, &*purposes).await.is_err());
    for f in std::fs::read_dir(&spool).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }

    // The lost one is abandoned, the file is fetched again unconditionally (200, not 304) and applied.
    let PollOutcome::Fetched(outcomes) = poller.poll(&app.db, &app.clock, &*purposes).await.unwrap() else {
        panic!("expected a fetch")
    };
    assert_eq!(server.last_status(), 200);
    assert!(matches!(&outcomes[0], Outcome::Rejected { reason, .. } if reason.contains("is gone")), "{outcomes:?}");
    let (_, st) = applied(&outcomes[1]);
    assert_eq!((st.events, st.duplicate_events), (4, 0), "the first batch (one change) was committed before the crash");
    assert_eq!(events(&app.db).await.len(), 5);
    let rows = app.db.snapshots(Some("ur"), &[]).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["applied", "applied"]);
    t.cleanup().await;
}

#[tokio::test]
async fn headers_are_read_by_name_and_a_missing_column_is_named() {
    let t = support::sqlite().await;
    let out = tempfile::tempdir().unwrap();
    let app = App::open(support::config(&t.url, out.path()), support::demo_clock()).await.unwrap();
    let purposes = app.purposes();
    let settings = SnapshotSettings::new("ur");
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d);
    let run = |name: &str, text: String, date| {
        let f = out.path().join(name);
        std::fs::write(&f, text).unwrap();
        SnapshotFile::local(&f, date).unwrap()
    };
    let (a, b) = (valid_test_regno(1), valid_test_regno(2));

    // Reordered and extended: the same companies, no change.
    let f = run(
        "1.csv",
        format!(
            "regcode;name;type;registered;terminated;closed;address\n{a};SIA A;SIA;;;;Rīga\n{b};SIA B;SIA;;;;Cēsis\n"
        ),
        day(1),
    );
    applied(&process(&app.db, &settings, &f, &*purposes, &app.clock, &mut |_| {}).await.unwrap());
    let f = run(
        "2.csv",
        format!(
            "new_column;address;closed;terminated;registered;type;name;regcode\nx;Rīga;;;;SIA;SIA A;{a}\ny;Cēsis;;;;SIA;SIA B;{b}\n"
        ),
        day(2),
    );
    let (_, st) = applied(&process(&app.db, &settings, &f, &*purposes, &app.clock, &mut |_| {}).await.unwrap());
    assert_eq!((st.rows, st.new, st.renamed, st.moved, st.events), (2, 0, 0, 0, 0));

    // A missing column: rejected, with the column named, and it stays rejected.
    let f = run("3.csv", format!("regcode;name;type;registered;terminated;closed\n{a};SIA A;SIA;;;\n"), day(3));
    let o = process(&app.db, &settings, &f, &*purposes, &app.clock, &mut |_| {}).await.unwrap();
    let Outcome::Rejected { id, reason } = o else { panic!("{o:?}") };
    assert!(reason.ends_with("3.csv: the header lacks the column(s) address"), "{reason}");
    assert!(approve(&app.db, &settings, id, &*purposes, &app.clock, &mut |_| {}).await.is_err());

    // A header whose columns no longer mean what they say (dates where codes should be): held.
    let mut text = String::from("regcode;name;type;registered;terminated;closed;address\n");
    for i in 0..12 {
        text.push_str(&format!("2026-11-{:02};SIA A;SIA;;;;Rīga\n", i + 1));
    }
    text.push_str(&format!("{a};SIA A;SIA;;;;Rīga\n{b};SIA B;SIA;;;;Cēsis\n"));
    let f = run("4.csv", text, day(4));
    let o = process(&app.db, &settings, &f, &*purposes, &app.clock, &mut |_| {}).await.unwrap();
    let Outcome::Held { reason, .. } = o else { panic!("{o:?}") };
    assert!(reason.starts_with("the header may have changed meaning: 12 of 14 rows"), "{reason}");

    // An older file than the last applied one is held rather than undoing newer data.
    let f = run(
        "0.csv",
        format!(
            "regcode;name;type;registered;terminated;closed;address\n{a};SIA A;SIA;;;;Rīga\n{b};SIA B2;SIA;;;;Cēsis\n"
        ),
        day(1),
    );
    let o = process(&app.db, &settings, &f, &*purposes, &app.clock, &mut |_| {}).await.unwrap();
    let Outcome::Held { reason, .. } = o else { panic!("{o:?}") };
    assert!(reason.contains("older than the last applied snapshot"), "{reason}");
    t.cleanup().await;
}

fn proactive(db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_proactive"));
    c.current_dir(support::root())
        .env_remove("PROACTIVE_CONFIG")
        .env("PROACTIVE_LOG", "error")
        .env("PROACTIVE_DATABASE__URL", db_url);
    c
}

#[test]
fn import_snapshot_and_approve_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    let write = |name: &str, body: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let day1_file = write("day1.csv", register(&day1(), true, true, &[malformed_row()]));
    let out =
        proactive(&db).args(["events", "import-snapshot", "--date", "2026-11-19"]).arg(&day1_file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("8 companies kept as the baseline"), "{stdout}");

    let mut cut = register(&day2(), false, false, &[]);
    cut.truncate(cut.len() - 10);
    let cut_file = write("cut.csv", cut);
    let out =
        proactive(&db).args(["events", "import-snapshot", "--date", "2026-11-20"]).arg(&cut_file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "a held file exits 2: {stdout}");
    assert!(stdout.contains("HELD BACK: truncated") && stdout.contains("events snapshot approve 2"), "{stdout}");

    let out = proactive(&db).args(["events", "snapshot", "list", "--format", "json"]).output().unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["state"], "held");
    assert!(rows[0]["reason"].as_str().unwrap().starts_with("truncated"));
    let out = proactive(&db).args(["events", "snapshot", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("approve with: proactive events snapshot approve 2"));

    // Approved, it applies: the cut last row is quarantined, the rest goes in.
    let out = proactive(&db).args(["events", "snapshot", "approve", "2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("snapshot 2 applied"), "{stdout}");
    let out = proactive(&db).args(["events", "quarantine", "list", "--format", "json"]).output().unwrap();
    let held: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(held.len(), 2, "the malformed row of day 1 and the cut row");
    assert!(held.iter().any(|r| r["location"] == "cut.csv of 2026-11-20 (snapshot 2), line 10"), "{held:?}");

    // A register row is not "fixed" by a retry: it stays held with its own error.
    let out = proactive(&db).args(["events", "quarantine", "retry"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = proactive(&db).args(["events", "quarantine", "list", "--format", "json"]).output().unwrap();
    let again: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        again.iter().map(|r| r["error"].clone()).collect::<Vec<_>>(),
        held.iter().map(|r| r["error"].clone()).collect::<Vec<_>>()
    );
}

#[test]
fn the_shipped_snapshot_connector_loads_and_bad_definitions_are_named() {
    let defs = proactive::connectors::load_sources(&support::root().join("connectors")).unwrap();
    let ur = defs.iter().find(|d| d.source == "ur").expect("connectors/ur.toml");
    assert_eq!(ur.kind, proactive::connectors::SourceKind::Snapshot);
    assert!(!ur.enabled, "shipped connectors are disabled examples");
    assert_eq!(SnapshotSettings::from_def(ur).emit.len(), 4);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ur.toml"),
        "source = \"ur\"\nkind = \"snapshot\"\nurl = \"http://x/r.csv\"\npath = \"/r.csv\"\nschedule = \"0 0 6 * * *\"\n\
         max_vanished_share = 5.0\nevents = [\"company.liquidation_started\"]\n",
    )
    .unwrap();
    let errors = proactive::connectors::load_sources(dir.path()).unwrap_err().join("\n");
    assert!(errors.contains("exactly one of url and path"), "{errors}");
    assert!(errors.contains("max_vanished_share must be between 0 and 1"), "{errors}");
    assert!(errors.contains("cannot emit \"company.liquidation_started\""), "{errors}");
}
