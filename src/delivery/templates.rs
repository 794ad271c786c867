//! Message templates (minijinja), compiled when the rule set loads and
//! rendered per notice at send time in the recipient's language.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::engine::definitions::LifeSituation;

/// The language used when a template lacks the recipient's.
pub const DEFAULT_LANGUAGE: &str = "lv";

/// One rendered message.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rendered {
    /// Language actually used.
    pub language: String,
    /// Subject line.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML alternative.
    pub html: String,
    /// SMS short form (the text when the template has none).
    pub sms: String,
}

/// All templates of a rule set.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// The template environment delivery renders with, shared with `rules check`
/// so a template passes the check exactly when it would render at send time:
/// a missing variable is an error, and a part whose name ends in `/html` is escaped.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| if name.ends_with("/html") { AutoEscape::Html } else { AutoEscape::None });
    env
}

fn key(ls: &str, version: i64, template: &str, lang: &str, part: &str) -> String {
    format!("{ls}@{version}/{template}/{lang}/{part}")
}

impl Templates {
    /// An empty set; a missing variable is an error, HTML parts are escaped.
    pub fn new() -> Self {
        Templates { env: environment() }
    }

    /// Compiles a definition's templates; returns the errors, each naming file, template, language and part.
    pub fn add(&mut self, d: &LifeSituation) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, langs) in &d.templates {
            if !langs.contains_key(DEFAULT_LANGUAGE) {
                errors.push(format!("{}: templates.{name}: the Latvian (lv) text is required", d.file.display()));
            }
            for (lang, t) in langs {
                let html = t.html.clone().unwrap_or_else(|| "<pre>{{ text_body }}</pre>".to_string());
                let parts = [
                    ("subject", t.subject.clone()),
                    ("text", t.text.clone()),
                    ("html", html),
                    ("sms", t.sms.clone().unwrap_or_else(|| t.text.clone())),
                ];
                for (part, src) in parts {
                    if let Err(e) = self.env.add_template_owned(key(&d.id, d.version, name, lang, part), src) {
                        let line = e.line().map(|l| format!(" (line {l} of the {part} text)")).unwrap_or_default();
                        errors.push(format!(
                            "{}: templates.{name}.{lang}.{part}{line}: {}",
                            d.file.display(),
                            e.detail().unwrap_or("syntax error")
                        ));
                    }
                }
            }
        }
        errors
    }

    /// Renders `template` of a definition in `lang` (Latvian when it has no
    /// such language) with `ctx`.
    pub fn render(
        &self,
        d: &LifeSituation,
        template: &str,
        lang: &str,
        ctx: &serde_json::Value,
    ) -> Result<Rendered, String> {
        let langs = d.templates.get(template).ok_or_else(|| format!("no template {template} in {}", d.id))?;
        let lang = if langs.contains_key(lang) { lang } else { DEFAULT_LANGUAGE };
        let part = |p: &str, ctx: &serde_json::Value| -> Result<String, String> {
            let t = self.env.get_template(&key(&d.id, d.version, template, lang, p)).map_err(|e| e.to_string())?;
            t.render(minijinja::value::Serde(ctx)).map_err(|e| format!("template {template}.{lang}.{p}: {e}"))
        };
        let subject = part("subject", ctx)?;
        let text = part("text", ctx)?;
        let mut with_text = ctx.clone();
        if let Some(m) = with_text.as_object_mut() {
            m.insert("text_body".into(), serde_json::Value::String(text.clone()));
        }
        let html = part("html", &with_text)?;
        let sms = part("sms", ctx)?;
        Ok(Rendered { language: lang.to_string(), subject, text, html, sms })
    }
}
