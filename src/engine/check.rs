//! `proactive rules check`: everything that can be known about a rule set
//! before it runs. Beyond what loading refuses (schema, scripts, event
//! types, timing), it renders every template in every language with the
//! definition's sample data, checks that each definition is complete
//! (owner, legal basis, services, the three languages), measures SMS forms
//! against the segment cap and warns of jargon a reader may not know.
//! Findings come as rustc-style diagnostics with file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use super::RuleSet;
use super::definitions::{self, ChannelName, LifeSituation, line_col};
use crate::delivery::segments;

/// Languages every name, draft title and template must be written in.
pub const LANGUAGES: [&str; 3] = ["lv", "en", "ru"];

/// Variables the engine gives a template only sometimes (a draft offered,
/// a notice to a representative): a template must test them with `is defined`,
/// so a sample need not give them.
const OPTIONAL_VARIABLES: [&str; 2] = ["draft", "on_behalf_of"];

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The rule set must not be switched on like this; the exit code is non-zero.
    Error,
    /// Worth a look; does not fail the check.
    Warning,
}

/// One finding, where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// The file, as the rule set's paths name it.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, starting with the field's path where there is one.
    pub message: String,
}

impl Diagnostic {
    fn new(level: Level, file: &Path, at: Option<(usize, usize)>, message: impl Into<String>) -> Self {
        Diagnostic {
            level,
            file: file.display().to_string(),
            line: at.map(|a| a.0),
            column: at.map(|a| a.1),
            message: message.into(),
        }
    }

    /// Reads a loader message (`FILE:LINE:COL: text`, `FILE:LINE: text` or `FILE: text`).
    fn from_message(level: Level, text: &str) -> Self {
        let Some((head, message)) = text.split_once(": ") else {
            return Diagnostic { level, file: String::new(), line: None, column: None, message: text.to_string() };
        };
        let mut parts = head.rsplitn(3, ':');
        let last = parts.next().and_then(|p| p.parse::<usize>().ok());
        let middle = parts.next();
        let (file, line, column) = match (last, middle.map(|m| m.parse::<usize>().ok())) {
            (Some(c), Some(Some(l))) => (parts.next().unwrap_or_default().to_string(), Some(l), Some(c)),
            (Some(l), _) => (head.rsplit_once(':').map_or(head, |(f, _)| f).to_string(), Some(l), None),
            _ => (head.to_string(), None, None),
        };
        Diagnostic { level, file, line, column, message: message.to_string() }
    }

    /// The rustc-style text: `error: …` and, on the next line, ` --> file:line:col`.
    pub fn text(&self) -> String {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        let place = match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", self.file),
            (Some(l), None) => format!("{}:{l}", self.file),
            _ => self.file.clone(),
        };
        if place.is_empty() {
            format!("{level}: {}\n", self.message)
        } else {
            format!("{level}: {}\n --> {place}\n", self.message)
        }
    }
}

/// What the check needs from the configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most segments an SMS may take (`channels.sms.max_segments`).
    pub max_segments: usize,
    /// Base of a draft's link (`links.drafts`), so a sample draft link is as long as a real one.
    pub draft_link: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_segments: 3, draft_link: "https://www.latvija.gov.lv/proactive/drafts/".into() }
    }
}

/// The outcome of a check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every finding, by file and line.
    pub diagnostics: Vec<Diagnostic>,
    /// Definitions read.
    pub situations: usize,
    /// Steps in them.
    pub steps: usize,
}

impl Report {
    /// Findings at `level`.
    pub fn count(&self, level: Level) -> usize {
        self.diagnostics.iter().filter(|d| d.level == level).count()
    }

    /// Every diagnostic, then a summary line.
    pub fn text(&self, life_events: &Path, rules: &Path) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.text());
            out.push('\n');
        }
        let (errors, warnings) = (self.count(Level::Error), self.count(Level::Warning));
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        if errors == 0 {
            out.push_str(&format!(
                "ok: {} ({}) in {}, rules in {}{}\n",
                plural(self.situations, "life situation"),
                plural(self.steps, "step"),
                life_events.display(),
                rules.display(),
                if warnings > 0 { format!("; {}", plural(warnings, "warning")) } else { String::new() }
            ));
        } else {
            out.push_str(&format!(
                "{} and {}: the rule set is not ready\n",
                plural(errors, "error"),
                plural(warnings, "warning")
            ));
        }
        out
    }
}

/// Checks the definitions in `life_events` and the scripts in `rules_dir`.
pub fn check(life_events: &Path, rules_dir: &Path, opts: &Options) -> Report {
    let mut report = Report::default();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(life_events)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in &files {
        if let Ok(text) = std::fs::read_to_string(f) {
            sources.insert(f.display().to_string(), text);
        }
    }
    if let Err(errors) = RuleSet::load(life_events, rules_dir) {
        for e in errors {
            let mut d = Diagnostic::from_message(Level::Error, &e);
            if d.line.is_none()
                && let Some(text) = sources.get(&d.file)
            {
                let at = locate_message(&Located::new(text), &d.message);
                d.line = at.map(|a| a.0);
                d.column = at.map(|a| a.1);
            }
            report.diagnostics.push(d);
        }
    }
    let jargon = load_jargon(&life_events.join("data").join("jargon.toml"), &mut report.diagnostics);
    for f in &files {
        let Some(text) = sources.get(&f.display().to_string()) else { continue };
        // A definition that does not parse was reported by the loader.
        let Ok(d) = definitions::parse_file(f) else { continue };
        report.situations += 1;
        report.steps += d.steps.len();
        let src = Located::new(text);
        completeness(&d, &src, &mut report.diagnostics);
        templates(&d, &src, opts, &jargon, &mut report.diagnostics);
    }
    for t in super::rule_tests::find_test_files(rules_dir) {
        if let Err(e) = super::rule_tests::parse_test_file(&t) {
            report.diagnostics.push(Diagnostic::from_message(Level::Error, &e));
        }
    }
    report.diagnostics.dedup();
    report.diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    report
}

fn language_name(lang: &str) -> &'static str {
    match lang {
        "lv" => "Latvian",
        "en" => "English",
        "ru" => "Russian",
        _ => "other",
    }
}

/// Owner, legal basis, services and the three languages of names and draft titles.
fn completeness(d: &LifeSituation, src: &Located, out: &mut Vec<Diagnostic>) {
    let file = &d.file;
    let err = |out: &mut Vec<Diagnostic>, path: &[Seg], msg: String| {
        out.push(Diagnostic::new(Level::Error, file, src.locate(path), msg));
    };
    if d.owner.trim().is_empty() {
        err(out, &[Seg::Key("owner")], "owner: name the institution that owns this life situation".into());
    }
    if d.legal_basis.trim().is_empty() {
        err(out, &[Seg::Key("legal_basis")], "legal_basis: name the law (and article) the processing rests on".into());
    }
    if d.services.is_empty() {
        err(out, &[Seg::Key("services")], "services: list the service catalogue ids this life situation offers".into());
    }
    for (i, s) in d.services.iter().enumerate() {
        if s.trim().is_empty() {
            err(out, &[Seg::Key("services"), Seg::Index(i)], format!("services[{i}]: an empty service id"));
        }
    }
    for (i, p) in d.purposes.iter().enumerate() {
        if p.description.trim().is_empty() {
            err(
                out,
                &[Seg::Key("purposes"), Seg::Index(i), Seg::Key("description")],
                format!("purposes[{i}].description: say what purpose \"{}\" is, as the person will be told", p.id),
            );
        }
    }
    for lang in LANGUAGES {
        if d.name.get(lang).is_none_or(|n| n.trim().is_empty()) {
            err(
                out,
                &[Seg::Key("name"), Seg::Key(lang)],
                format!("name: the {} ({lang}) name is missing", language_name(lang)),
            );
        }
        for (name, draft) in &d.drafts {
            if draft.title.get(lang).is_none_or(|n| n.trim().is_empty()) {
                err(
                    out,
                    &[Seg::Key("drafts"), Seg::Key(name), Seg::Key("title"), Seg::Key(lang)],
                    format!("drafts.{name}.title: the {} ({lang}) title is missing", language_name(lang)),
                );
            }
        }
        if lang == super::super::delivery::templates::DEFAULT_LANGUAGE {
            continue; // the loader already requires it
        }
        for (name, langs) in &d.templates {
            if !langs.contains_key(lang) {
                err(
                    out,
                    &[Seg::Key("templates"), Seg::Key(name), Seg::Key(lang)],
                    format!("templates.{name}: the {} ({lang}) text is missing", language_name(lang)),
                );
            }
        }
    }
    for name in d.samples.keys() {
        if !d.templates.contains_key(name) {
            err(
                out,
                &[Seg::Key("samples"), Seg::Key(name)],
                format!("samples.{name}: there is no template \"{name}\" to render it with"),
            );
        }
    }
}

/// One rendering of one part.
struct Rendered {
    part: &'static str,
    text: String,
    with_draft: bool,
}

/// Renders every part of every template in every language with the sample,
/// without a draft and (when the definition offers drafts) with one.
fn templates(d: &LifeSituation, src: &Located, opts: &Options, jargon: &[Term], out: &mut Vec<Diagnostic>) {
    let mut env = crate::delivery::templates::environment();
    let uses_sms = d.channels.contains(&ChannelName::Sms);
    for (name, langs) in &d.templates {
        let sample = d.samples.get(name).map(toml_table_json).unwrap_or_default();
        // A variable the sample lacks is said once per template, where it is first used.
        let mut reported: HashSet<String> = HashSet::new();
        for (lang, texts) in langs {
            let at = |part: &str, line: Option<usize>| {
                src.locate_template(&[Seg::Key("templates"), Seg::Key(name), Seg::Key(lang), Seg::Key(part)], line)
            };
            if !LANGUAGES.contains(&lang.as_str()) {
                out.push(Diagnostic::new(
                    Level::Warning,
                    &d.file,
                    src.locate(&[Seg::Key("templates"), Seg::Key(name), Seg::Key(lang)]),
                    format!(
                        "templates.{name}.{lang}: \"{lang}\" is not one of {}; it is sent only to people who declared that language",
                        LANGUAGES.join(", ")
                    ),
                ));
            }
            let ctx = context(d, lang, &sample, None);
            let with_draft = d.drafts.iter().next().map(|(_, draft)| context(d, lang, &sample, Some((draft, opts))));
            let mut rendered: Vec<Rendered> = Vec::new();
            let parts: [(&'static str, Option<&String>); 4] = [
                ("subject", Some(&texts.subject)),
                ("text", Some(&texts.text)),
                ("html", texts.html.as_ref()),
                ("sms", texts.sms.as_ref()),
            ];
            for (part, source) in parts {
                let Some(source) = source else { continue };
                // A part that does not compile was reported by the loader.
                let key = format!("{name}/{lang}/{part}");
                if env.add_template_owned(key.clone(), source.clone()).is_err() {
                    continue;
                }
                let Ok(tmpl) = env.get_template(&key) else { continue };
                let mut missing: Vec<String> = tmpl
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !ctx.contains_key(v) && !OPTIONAL_VARIABLES.contains(&v.as_str()))
                    .collect();
                missing.sort();
                for v in missing.iter().filter(|v| reported.insert(v.to_string())) {
                    out.push(Diagnostic::new(
                        Level::Error,
                        &d.file,
                        at(part, first_line_with(source, v)),
                        format!(
                            "templates.{name}.{lang}.{part}: uses `{v}`, which the sample data does not give (add it to [samples.{name}] as the rule gives it)"
                        ),
                    ));
                }
                if !missing.is_empty() {
                    continue;
                }
                let mut contexts = vec![(false, &ctx)];
                if let Some(c) = &with_draft {
                    contexts.push((true, c));
                }
                for (offered, c) in contexts {
                    let mut c = c.clone();
                    if part == "html" {
                        // As delivery does: the html may show the text.
                        let text = rendered.iter().find(|r| r.part == "text" && r.with_draft == offered);
                        c.insert("text_body".into(), text.map(|r| r.text.clone()).unwrap_or_default().into());
                    }
                    match tmpl.render(minijinja::value::Serde(&c)) {
                        Ok(text) => rendered.push(Rendered { part, text, with_draft: offered }),
                        Err(e) => {
                            let when = if offered { " with a draft offered" } else { " without a draft" };
                            let when = if with_draft.is_some() { when } else { "" };
                            out.push(Diagnostic::new(
                                Level::Error,
                                &d.file,
                                at(part, e.line()),
                                format!(
                                    "templates.{name}.{lang}.{part}: does not render with the sample data{when}: {}",
                                    describe(&e)
                                ),
                            ));
                        }
                    }
                }
            }
            if uses_sms {
                let sms_part = if texts.sms.is_some() { "sms" } else { "text" };
                let longest = rendered
                    .iter()
                    .filter(|r| r.part == sms_part)
                    .map(|r| (segments::segment(&r.text), r.with_draft))
                    .max_by_key(|(s, _)| s.segments);
                if let Some((s, offered)) = longest
                    && s.segments > opts.max_segments
                {
                    let enc = match s.encoding {
                        segments::Encoding::Gsm7 => "GSM-7",
                        segments::Encoding::Ucs2 => "UCS-2: diacritics or Cyrillic",
                    };
                    let hint = if texts.sms.is_some() { "shorten it" } else { "write a short `sms` form" };
                    out.push(Diagnostic::new(
                        Level::Error,
                        &d.file,
                        at(sms_part, None),
                        format!(
                            "templates.{name}.{lang}.{sms_part}: the SMS takes {} segments ({} characters, {enc}) with the sample data{}; the cap is {} (channels.sms.max_segments), so it would be cut: {hint}",
                            s.segments,
                            s.units,
                            if offered { " and a draft link" } else { "" },
                            opts.max_segments
                        ),
                    ));
                }
            }
            let plain = |part: &str| rendered.iter().find(|r| r.part == part && !r.with_draft).map(|r| r.text.as_str());
            // The subject is read with the text; an SMS stands alone. The html says what the text says.
            let mut units: Vec<Unit> = Vec::new();
            if let (Some(subject), Some(text)) = (plain("subject"), plain("text")) {
                let sources = vec![("subject", &texts.subject), ("text", &texts.text)];
                units.push(Unit { name: "text", text: format!("{subject}\n{text}"), sources });
            }
            if let (Some(sms), Some(source)) = (plain("sms"), texts.sms.as_ref()) {
                units.push(Unit { name: "sms", text: sms.to_string(), sources: vec![("sms", source)] });
            }
            for Unit { name: unit, text, sources } in units {
                for term in jargon {
                    let Some(word) = term.unexplained(&text, lang) else { continue };
                    let (part, line) = sources
                        .iter()
                        .find_map(|(p, s)| first_line_with(s, &word).map(|l| (*p, Some(l))))
                        .unwrap_or((sources[0].0, None));
                    let advice = match (&term.note, term.explanations(lang).first()) {
                        (Some(note), _) => note.clone(),
                        (None, Some(e)) => format!("write e.g. \"{e} ({word})\" on first use"),
                        (None, None) => format!("say in brackets what \"{word}\" means on first use"),
                    };
                    out.push(Diagnostic::new(
                        Level::Warning,
                        &d.file,
                        at(part, line),
                        format!("templates.{name}.{lang}.{unit}: \"{word}\" is not explained: {advice}"),
                    ));
                }
            }
        }
    }
}

/// A text read on its own for jargon, and the template sources it came from.
struct Unit<'a> {
    name: &'static str,
    text: String,
    sources: Vec<(&'static str, &'a String)>,
}

/// A minijinja error in one line, without the template's name it already has.
fn describe(e: &minijinja::Error) -> String {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{}{detail}", e.kind())
}

/// What a template sees at send time, with the sample's values on top.
fn context(
    d: &LifeSituation,
    lang: &str,
    sample: &serde_json::Map<String, serde_json::Value>,
    draft: Option<(&definitions::DraftDef, &Options)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("notice_id".into(), "19a9f3a6c00-164664ed398058d486b42c14".into());
    m.insert("recipient_name".into(), "Anna Bērziņa".into());
    m.insert("life_situation".into(), serde_json::to_value(&d.name).unwrap_or_default());
    m.insert("owner".into(), d.owner.clone().into());
    m.insert("legal_basis".into(), d.legal_basis.clone().into());
    if let Some((draft, opts)) = draft {
        let reference = "PR-261120-3FA9-C2D1";
        m.insert(
            "draft".into(),
            serde_json::json!({
                "reference": reference,
                "url": format!("{}{reference}", opts.draft_link),
                "title": draft.title.get(lang).or_else(|| draft.title.get("lv")),
                "service_id": draft.service_id,
                "expires_on": "2027-11-20",
            }),
        );
    }
    for (k, v) in sample {
        m.insert(k.clone(), v.clone());
    }
    m
}

fn toml_table_json(t: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    t.iter().map(|(k, v)| (k.clone(), toml_json(v))).collect()
}

/// TOML to JSON, dates as the `YYYY-MM-DD` strings rules pass to templates.
fn toml_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_json).collect(),
        toml::Value::Table(t) => toml_table_json(t).into(),
    }
}

/// The first 1-based line of `source` that uses `word` as a word (any case,
/// as jargon is matched) or as a variable whose attribute is read (`draft.url`).
fn first_line_with(source: &str, word: &str) -> Option<usize> {
    let word = fold(word);
    let attribute = format!("{word}.");
    source
        .lines()
        .position(|l| {
            words_of(l).any(|(s, e)| {
                let w = fold(&l[s..e]);
                w == word || w.starts_with(&attribute)
            })
        })
        .map(|i| i + 1)
}

/// One step of a path into a TOML document.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A definition's text with the places of its keys and values.
struct Located<'a> {
    text: &'a str,
    doc: Option<toml::Spanned<DeTable<'a>>>,
}

impl<'a> Located<'a> {
    fn new(text: &'a str) -> Self {
        Located { text, doc: DeTable::parse(text).ok() }
    }

    /// Byte offset of where `path` is written: a value's start, a table's key,
    /// or, when the path is not all there, the deepest part of it that is
    /// (a missing language points at its template).
    fn offset(&self, path: &[Seg]) -> Option<usize> {
        fn key<'t, 'i>(t: &'t DeTable<'i>, k: &str) -> Option<(usize, &'t toml::Spanned<DeValue<'i>>)> {
            t.iter().find(|(key, _)| key.get_ref().as_ref() == k).map(|(key, v)| (key.span().start, v))
        }
        let doc = self.doc.as_ref()?;
        let mut best = None;
        let mut cur: Option<&toml::Spanned<DeValue>> = None;
        for seg in path {
            let next = match (seg, cur.map(|v| v.get_ref())) {
                (Seg::Key(k), None) => key(doc.get_ref(), k),
                (Seg::Key(k), Some(DeValue::Table(t))) => key(t, k),
                (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i).map(|v| (v.span().start, v)),
                _ => None,
            };
            let Some((at, v)) = next else { return best };
            best = Some(at);
            cur = Some(v);
        }
        match cur {
            Some(v) if !matches!(v.get_ref(), DeValue::Table(_)) => Some(v.span().start),
            _ => best,
        }
    }

    fn locate(&self, path: &[Seg]) -> Option<(usize, usize)> {
        self.offset(path).map(|o| line_col(self.text, o))
    }

    /// The file's line and column of line `line` (1-based) of the template string at `path`.
    fn locate_template(&self, path: &[Seg], line: Option<usize>) -> Option<(usize, usize)> {
        let o = self.offset(path)?;
        let (l, c) = line_col(self.text, o);
        let rest = &self.text[o..];
        // A multi-line string's newline right after its opening quotes is not part of it.
        let skip = usize::from(
            (rest.starts_with("\"\"\"") || rest.starts_with("'''"))
                && (rest[3..].starts_with('\n') || rest[3..].starts_with("\r\n")),
        );
        match line {
            None | Some(0) => Some((l, c)),
            Some(1) if skip == 0 => Some((l, c)),
            Some(n) => Some((l + skip + n - 1, 1)),
        }
    }
}

/// Places a loader message that starts with a field path (`templates.x.lv.text (line 3 of the text text): …`).
fn locate_message(src: &Located, message: &str) -> Option<(usize, usize)> {
    let head = message.split([':', ' ']).next()?;
    let mut segs: Vec<Seg> = Vec::new();
    for part in head.split('.') {
        match part.split_once('[') {
            Some((k, idx)) => {
                segs.push(Seg::Key(k));
                segs.push(Seg::Index(idx.trim_end_matches(']').parse().ok()?));
            }
            None => segs.push(Seg::Key(part)),
        }
    }
    if !matches!(segs.first(), Some(Seg::Key(k)) if known_top_level(k)) {
        return None;
    }
    let line = message.split_once("(line ").and_then(|(_, r)| r.split(' ').next()?.parse().ok());
    if segs.first().is_some_and(|s| matches!(s, Seg::Key("templates"))) && segs.len() == 4 {
        return src.locate_template(&segs, line);
    }
    src.locate(&segs)
}

fn known_top_level(k: &str) -> bool {
    matches!(
        k,
        "id" | "version"
            | "status"
            | "valid_from"
            | "valid_to"
            | "name"
            | "description"
            | "owner"
            | "legal_basis"
            | "services"
            | "channels"
            | "purposes"
            | "trigger"
            | "steps"
            | "cancel"
            | "params"
            | "templates"
            | "drafts"
            | "samples"
    )
}

/// `life-events/data/jargon.toml`: terms a reader may not know.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JargonFile {
    #[serde(default)]
    term: Vec<Term>,
}

/// One term and what counts as explaining it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Term {
    /// The term's forms as they appear in texts, each a whole word, any case.
    words: Vec<String>,
    /// Per language, words that explain it when they are in the same text.
    #[serde(default)]
    explanation: BTreeMap<String, OneOrMany>,
    /// Advice shown with the warning instead of the suggested wording.
    #[serde(default)]
    note: Option<String>,
    /// The term names a sender: as a text's last word (an SMS's signature) it needs no explanation.
    #[serde(default)]
    sender: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Term {
    fn explanations(&self, lang: &str) -> Vec<&str> {
        match self.explanation.get(lang) {
            Some(OneOrMany::One(s)) => vec![s.as_str()],
            Some(OneOrMany::Many(v)) => v.iter().map(String::as_str).collect(),
            None => Vec::new(),
        }
    }

    /// The form of the term `text` uses without explaining it, if any. A
    /// term is explained when the text also holds one of its explanations in
    /// `lang`, or when its first use stands in brackets after words
    /// (`… aģentūra (VSAA)`) or is followed by words in brackets (`eID (…)`).
    fn unexplained(&self, text: &str, lang: &str) -> Option<String> {
        let words: HashSet<String> = self.words.iter().map(|w| fold(w)).collect();
        let all: Vec<(usize, usize)> = words_of(text).collect();
        let last = all.last().copied();
        let (start, end) = all
            .into_iter()
            .filter(|&w| !(self.sender && Some(w) == last))
            .find(|&(s, e)| words.contains(&fold(&text[s..e])))?;
        let folded = fold(text);
        if self.explanations(lang).iter().any(|e| !e.trim().is_empty() && folded.contains(&fold(e))) {
            return None;
        }
        let bracketed = text[..start].ends_with('(') && text[end..].starts_with(')');
        let followed = text[end..].trim_start_matches([' ', '\u{a0}']).starts_with('(');
        if bracketed || followed { None } else { Some(text[start..end].to_string()) }
    }
}

/// Lower case without Latvian diacritics, so that an SMS written without
/// them (`e-adrese`, `oficiala adrese`) matches the list's spelling.
fn fold(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| match c {
            'ā' => 'a',
            'č' => 'c',
            'ē' => 'e',
            'ģ' => 'g',
            'ī' => 'i',
            'ķ' => 'k',
            'ļ' => 'l',
            'ņ' => 'n',
            'š' => 's',
            'ū' => 'u',
            'ž' => 'z',
            c => c,
        })
        .collect()
}

/// Byte ranges of the words of `text`. A word runs over letters, digits and
/// `-` (`e-adrese`); a web or mail address is one word (`www.vsaa.gov.lv` does
/// not use the term VSAA), and punctuation around a word is not part of it.
fn words_of(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let joins = |c: char| c.is_alphanumeric() || matches!(c, '-' | '.' | '/' | '@' | '_' | ':');
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (start, joins(c) && i < text.len()) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let w = &text[s..i];
                let lead = w.len() - w.trim_start_matches(|c: char| !c.is_alphanumeric()).len();
                let trimmed = w.trim_matches(|c: char| !c.is_alphanumeric());
                if !trimmed.is_empty() {
                    out.push((s + lead, s + lead + trimmed.len()));
                }
                start = None;
            }
            _ => {}
        }
    }
    out.into_iter()
}

/// Reads the jargon list; a missing file is no list, a broken one an error.
fn load_jargon(path: &Path, out: &mut Vec<Diagnostic>) -> Vec<Term> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    match toml::from_str::<JargonFile>(&text) {
        Ok(f) => {
            for (i, t) in f.term.iter().enumerate() {
                if t.words.iter().all(|w| w.trim().is_empty()) {
                    let at = Located::new(&text).locate(&[Seg::Key("term"), Seg::Index(i)]);
                    out.push(Diagnostic::new(Level::Error, path, at, format!("term[{i}].words: name the term")));
                }
            }
            f.term
        }
        Err(e) => {
            let at = e.span().map(|s| line_col(&text, s.start));
            out.push(Diagnostic::new(Level::Error, path, at, e.message().to_string()));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"id = "hello"
version = 1
status = "active"
valid_from = "2026-01-01"
name = { lv = "Sveiciens", en = "Greeting", ru = "Приветствие" }
description = "A greeting, for the tests."
owner = "Valsts sociālās apdrošināšanas aģentūra (VSAA)"
legal_basis = "Testu likums, 1. pants"
services = ["TEST-1"]
channels = ["eaddress", "sms"]

[[purposes]]
id = "hello"
mode = "opt-out"
description = "Greeting parents."

[trigger]
events = ["birth.registered"]

[[steps]]
id = "greet"
rule = "hello.rhai"

[templates.greet.lv]
subject = "Sveiciens: {{ child_name }}"
text = """
Labdien!
Sveicam ar bērnu {{ child_name }}.
"""
sms = "Sveicam ar bernu {{ child_name }}!"

[templates.greet.en]
subject = "Greetings: {{ child_name }}"
text = """
Hello!
Congratulations on {{ child_name }}.
"""
sms = "Congratulations on {{ child_name }}!"

[templates.greet.ru]
subject = "Поздравление: {{ child_name }}"
text = """
Здравствуйте!
Поздравляем с ребёнком {{ child_name }}.
"""
sms = "Поздравляем: {{ child_name }}!"

[samples.greet]
child_name = "Marta"
"#;

    /// Checks one definition (and an optional jargon list) in a fresh folder.
    fn check_one(definition: &str, jargon: Option<&str>, opts: &Options) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
        std::fs::create_dir_all(le.join("data")).unwrap();
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(le.join("hello.toml"), definition).unwrap();
        std::fs::write(rules.join("hello.rhai"), "parents(event.subject).map(|p| notice(p, \"greet\"))").unwrap();
        if let Some(j) = jargon {
            std::fs::write(le.join("data").join("jargon.toml"), j).unwrap();
        }
        let mut r = check(&le, &rules, opts);
        let prefix = format!("{}/", dir.path().display());
        for d in &mut r.diagnostics {
            d.file = d.file.trim_start_matches(&prefix).to_string();
        }
        r
    }

    fn errors(r: &Report) -> Vec<String> {
        r.diagnostics.iter().filter(|d| d.level == Level::Error).map(|d| d.text()).collect()
    }

    #[test]
    fn a_complete_definition_passes() {
        let r = check_one(GOOD, None, &Options::default());
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        assert_eq!((r.situations, r.steps), (1, 1));
    }

    #[test]
    fn a_variable_the_sample_lacks_is_an_error_where_it_is_first_used() {
        let r = check_one(&GOOD.replace("child_name = \"Marta\"", "name = \"Marta\""), None, &Options::default());
        let e = errors(&r);
        assert_eq!(e.len(), 1, "once per template, not per part and language: {e:?}");
        assert_eq!(
            e[0],
            "error: templates.greet.en.subject: uses `child_name`, which the sample data does not give (add it to [samples.greet] as the rule gives it)\n --> life-events/hello.toml:33:11\n"
        );
    }

    #[test]
    fn a_template_that_does_not_render_names_file_template_language_and_line() {
        let broken =
            GOOD.replace("Congratulations on {{ child_name }}.", "Congratulations on {{ child_name | shout }}.");
        let e = errors(&check_one(&broken, None, &Options::default()));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("error: templates.greet.en.text: does not render with the sample data"), "{}", e[0]);
        assert!(e[0].contains("shout"), "{}", e[0]);
        assert!(e[0].ends_with(" --> life-events/hello.toml:36:1\n"), "the line of the text in the file: {}", e[0]);
    }

    #[test]
    fn a_template_is_rendered_with_and_without_a_draft() {
        let with_drafts = format!(
            "{GOOD}\n[drafts.form]\nservice_id = \"TEST-1\"\ntitle = {{ lv = \"Iesniegums\", en = \"Form\", ru = \"Заявление\" }}\n"
        );
        let guarded = with_drafts.replace("Hello!", "Hello!{% if draft is defined %} {{ draft.url }}{% endif %}");
        assert!(errors(&check_one(&guarded, None, &Options::default())).is_empty());
        let unguarded = with_drafts.replace("Hello!", "Hello! {{ draft.url }}");
        let e = errors(&check_one(&unguarded, None, &Options::default()));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("templates.greet.en.text: does not render with the sample data without a draft"),
            "{}",
            e[0]
        );
        let bad_branch = with_drafts.replace("Hello!", "Hello!{% if draft is defined %} {{ draft.link }}{% endif %}");
        let e = errors(&check_one(&bad_branch, None, &Options::default()));
        assert!(e.len() == 1 && e[0].contains("with a draft offered"), "{e:?}");
    }

    #[test]
    fn a_missing_language_is_an_error() {
        let no_ru =
            GOOD.split("[templates.greet.ru]").next().unwrap().to_string() + "[samples.greet]\nchild_name = \"M\"\n";
        let e = errors(&check_one(&no_ru, None, &Options::default()));
        assert_eq!(
            e,
            ["error: templates.greet: the Russian (ru) text is missing\n --> life-events/hello.toml:24:12\n"]
        );
        let no_en_name = GOOD.replace(", en = \"Greeting\"", "");
        let e = errors(&check_one(&no_en_name, None, &Options::default()));
        assert_eq!(e, ["error: name: the English (en) name is missing\n --> life-events/hello.toml:5:1\n"]);
    }

    #[test]
    fn a_missing_owner_legal_basis_or_service_is_an_error() {
        let r = check_one(
            &GOOD.replace("owner = \"Valsts sociālās apdrošināšanas aģentūra (VSAA)\"", "owner = \" \""),
            None,
            &Options::default(),
        );
        assert_eq!(
            errors(&r),
            ["error: owner: name the institution that owns this life situation\n --> life-events/hello.toml:7:9\n"]
        );
        let r = check_one(
            &GOOD.replace("owner = \"Valsts sociālās apdrošināšanas aģentūra (VSAA)\"\n", ""),
            None,
            &Options::default(),
        );
        let e = errors(&r);
        assert!(
            e.len() == 1 && e[0].contains("missing field `owner`") && e[0].contains("life-events/hello.toml:"),
            "{e:?}"
        );
        let r = check_one(
            &GOOD.replace("legal_basis = \"Testu likums, 1. pants\"", "legal_basis = \"\""),
            None,
            &Options::default(),
        );
        assert!(errors(&r)[0].starts_with("error: legal_basis: "), "{:?}", r.diagnostics);
        let r = check_one(&GOOD.replace("services = [\"TEST-1\"]", "services = []"), None, &Options::default());
        assert!(errors(&r)[0].starts_with("error: services: "), "{:?}", r.diagnostics);
        let r = check_one(&GOOD.replace("mode = \"opt-out\"\n", ""), None, &Options::default());
        assert!(
            errors(&r)[0].contains("missing field `mode`"),
            "a purpose without its consent mode: {:?}",
            r.diagnostics
        );
    }

    #[test]
    fn an_sms_over_the_cap_is_an_error_and_the_cap_is_configurable() {
        let long = GOOD.replace(
            "sms = \"Congratulations on {{ child_name }}!\"",
            &format!("sms = \"{} {{{{ child_name }}}}\"", "Congratulations! ".repeat(30)),
        );
        let e = errors(&check_one(&long, None, &Options::default()));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("error: templates.greet.en.sms: the SMS takes 4 segments (516 characters, GSM-7)"),
            "{}",
            e[0]
        );
        assert!(e[0].contains("the cap is 3 (channels.sms.max_segments)"), "{}", e[0]);
        assert!(e[0].ends_with(" --> life-events/hello.toml:38:7\n"), "{}", e[0]);
        let roomy = Options { max_segments: 4, ..Options::default() };
        assert!(errors(&check_one(&long, None, &roomy)).is_empty());
        let no_sms = long.replace("channels = [\"eaddress\", \"sms\"]", "channels = [\"eaddress\"]");
        assert!(errors(&check_one(&no_sms, None, &Options::default())).is_empty(), "only a situation that sends SMS");
        // Without an sms form the text goes by SMS.
        let text_only = GOOD.replace("sms = \"Поздравляем: {{ child_name }}!\"\n", "").replace(
            "Поздравляем с ребёнком {{ child_name }}.",
            &"Поздравляем с ребёнком {{ child_name }}. ".repeat(3),
        );
        let one = Options { max_segments: 1, ..Options::default() };
        let e = errors(&check_one(&text_only, None, &one));
        assert!(
            e.len() == 1
                && e[0].contains("templates.greet.ru.text: the SMS takes 2 segments")
                && e[0].contains("write a short `sms` form"),
            "{e:?}"
        );
    }

    #[test]
    fn unexplained_jargon_is_a_warning_not_an_error() {
        let jargon = "[[term]]\nwords = [\"eID\"]\nexplanation.en = \"identity card\"\n";
        let with_eid = GOOD.replace("Hello!", "Hello! Bring your eID.");
        let r = check_one(&with_eid, Some(jargon), &Options::default());
        assert!(errors(&r).is_empty());
        let w: Vec<String> = r.diagnostics.iter().map(|d| d.text()).collect();
        assert_eq!(
            w,
            [
                "warning: templates.greet.en.text: \"eID\" is not explained: write e.g. \"identity card (eID)\" on first use\n --> life-events/hello.toml:35:1\n"
            ]
        );
        let explained = GOOD.replace("Hello!", "Hello! Bring your identity card (eID).");
        assert!(check_one(&explained, Some(jargon), &Options::default()).diagnostics.is_empty());
        let broken = check_one(GOOD, Some("[[term]]\nword = [\"eID\"]\n"), &Options::default());
        let e = errors(&broken);
        assert!(
            e.len() == 1 && e[0].contains("unknown field `word`") && e[0].contains("life-events/data/jargon.toml:2:1"),
            "{e:?}"
        );
    }

    #[test]
    fn toml_and_script_errors_keep_their_line_and_column() {
        let r = check_one(&GOOD.replace("version = 1", "version = \"one\""), None, &Options::default());
        let e = errors(&r);
        assert!(e.len() == 1 && e[0].ends_with(" --> life-events/hello.toml:2:11\n"), "{e:?}");
        let r = check_one(
            &GOOD.replace("Sveiciens: {{ child_name }}\"", "Sveiciens: {{ child_name \""),
            None,
            &Options::default(),
        );
        let e = errors(&r);
        assert!(
            e.len() == 1
                && e[0].starts_with("error: templates.greet.lv.subject")
                && e[0].ends_with("hello.toml:25:11\n"),
            "a template syntax error is placed too: {e:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let (le, rules) = (dir.path().join("life-events"), dir.path().join("rules"));
        std::fs::create_dir_all(&le).unwrap();
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(le.join("hello.toml"), GOOD).unwrap();
        std::fs::write(rules.join("hello.rhai"), "let = 1;").unwrap();
        let r = check(&le, &rules, &Options::default());
        let d = &r.diagnostics[0];
        assert!(d.file.ends_with("rules/hello.rhai") && d.line == Some(1) && d.column.is_some(), "{d:?}");
    }

    #[test]
    fn loader_messages_keep_their_place() {
        let d = Diagnostic::from_message(Level::Error, "rules/a/b.rhai:3:7: Syntax error");
        assert_eq!(
            (d.file.as_str(), d.line, d.column, d.message.as_str()),
            ("rules/a/b.rhai", Some(3), Some(7), "Syntax error")
        );
        let d = Diagnostic::from_message(Level::Error, "x.rhai:4: oops: more");
        assert_eq!((d.file.as_str(), d.line, d.column, d.message.as_str()), ("x.rhai", Some(4), None, "oops: more"));
        let d = Diagnostic::from_message(Level::Error, "life-events/a.toml: steps: none");
        assert_eq!((d.file.as_str(), d.line, d.message.as_str()), ("life-events/a.toml", None, "steps: none"));
        assert_eq!(d.text(), "error: steps: none\n --> life-events/a.toml\n");
    }

    #[test]
    fn paths_are_found_in_the_toml_text() {
        let text = "id = \"x\"\n[templates.t.lv]\nsubject = \"s\"\ntext = \"\"\"\nline one\n{{ oops }}\n\"\"\"\n[[purposes]]\nid = \"x\"\n";
        let src = Located::new(text);
        assert_eq!(src.locate(&[Seg::Key("id")]), Some((1, 6)));
        let text_path = [Seg::Key("templates"), Seg::Key("t"), Seg::Key("lv"), Seg::Key("text")];
        assert_eq!(src.locate_template(&text_path, Some(2)), Some((6, 1)), "line 2 of the text is line 6 of the file");
        let missing = [Seg::Key("templates"), Seg::Key("t"), Seg::Key("ru")];
        assert_eq!(src.locate(&missing), Some((2, 12)), "a missing language points at its template");
        assert_eq!(src.locate(&[Seg::Key("purposes"), Seg::Index(0), Seg::Key("id")]), Some((9, 6)));
        assert_eq!(locate_message(&src, "templates.t.lv.text (line 2 of the text text): x"), Some((6, 1)));
        assert_eq!(locate_message(&src, "step \"a\": x"), None);
    }

    fn term(words: &[&str], lv: &str) -> Term {
        let explanation = [("lv".to_string(), OneOrMany::One(lv.to_string()))].into();
        Term { words: words.iter().map(|w| w.to_string()).collect(), explanation, note: None, sender: false }
    }

    #[test]
    fn a_term_is_explained_by_its_explanation_or_brackets_on_first_use() {
        let t = term(&["VSAA"], "Valsts sociālās apdrošināšanas aģentūra");
        assert_eq!(t.unexplained("Jautājumi: VSAA.", "lv").as_deref(), Some("VSAA"));
        assert_eq!(t.unexplained("Jautājumi: vsaa, lūdzu", "lv").as_deref(), Some("vsaa"), "any case");
        assert_eq!(t.unexplained("Valsts sociālās apdrošināšanas aģentūra: VSAA", "lv"), None);
        assert_eq!(t.unexplained("the State Social Insurance Agency (VSAA) pays", "en"), None);
        assert_eq!(t.unexplained("VSAA (the agency) pays; ask VSAA", "en"), None);
        assert_eq!(
            t.unexplained("ask VSAA, the agency (VSAA) pays", "en").as_deref(),
            Some("VSAA"),
            "first use counts"
        );
        assert_eq!(t.unexplained("see www.vsaa.gov.lv or info@vsaa.lv", "lv"), None, "addresses are not the term");
        let e = term(&["e-adrese", "e-adresi"], "oficiālā elektroniskā adrese");
        assert_eq!(e.unexplained("Aktivizējiet e-adresi!", "lv").as_deref(), Some("e-adresi"));
        assert_eq!(e.unexplained("Aktivizējiet e-adreses kontu", "lv"), None, "only the listed forms");
        assert_eq!(e.unexplained("e-adresi (oficiala elektroniska adrese)", "lv"), None);
        assert_eq!(
            e.unexplained("Aktivizejiet e-adresi, oficiala elektroniska adrese", "lv"),
            None,
            "without diacritics"
        );
    }

    #[test]
    fn a_sender_may_sign_a_text_unexplained() {
        let mut t = term(&["VSAA"], "Valsts sociālās apdrošināšanas aģentūra");
        assert!(t.unexplained("Pieprasiet pabalstu: www.vsaa.gov.lv VSAA", "lv").is_some());
        t.sender = true;
        assert_eq!(t.unexplained("Pieprasiet pabalstu: www.vsaa.gov.lv VSAA", "lv"), None, "the signature");
        assert!(t.unexplained("VSAA maksā pabalstu. VSAA", "lv").is_some(), "a use before the signature");
    }

    #[test]
    fn a_word_is_found_on_its_line_and_not_inside_another() {
        let source = "nodokļu likvidācijas\nVID deklarācija\n{{ draft.url }}";
        assert_eq!(first_line_with(source, "VID"), Some(2), "not the \"vid\" in likvidācijas");
        assert_eq!(first_line_with(source, "draft"), Some(3));
        assert_eq!(first_line_with(source, "EDS"), None);
    }

    #[test]
    fn words_are_split_without_their_punctuation() {
        let text = "(VSAA), eID. e-adrese www.vsaa.gov.lv";
        let words: Vec<&str> = words_of(text).map(|(s, e)| &text[s..e]).collect();
        assert_eq!(words, ["VSAA", "eID", "e-adrese", "www.vsaa.gov.lv"]);
    }
}
