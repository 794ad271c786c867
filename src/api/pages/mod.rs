//! The pages of `proactive serve`: a citizen's page at `/` (notices and why,
//! consents, channels and quiet hours, prefilled drafts, acting for the
//! people they represent) and the staff dashboard at `/staff`, in Latvian,
//! English and Russian, server-rendered with minijinja from templates
//! embedded at compile time.
//!
//! The pages are a view over the JSON API: each one calls the citizen API's
//! own handlers with the signed-in person's token, so who may see and do what
//! is decided by the same code for a page and for an API client. Every form
//! is a plain POST answered with a redirect (POST-redirect-GET) and works
//! without JavaScript; the one script only adds niceties. Every style,
//! script and chart is served from here: a page loads nothing from outside.

mod citizen;
mod i18n;
mod session;
mod staff;
mod svg;
mod why;

pub(super) use i18n::known as known_lang;
pub(super) use why::words as why_words;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};

use super::ApiState;

/// The pages' routes, merged into the API's router.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(citizen::home))
        .route("/signin", get(citizen::signin_page).post(citizen::signin))
        .route("/signout", post(citizen::signout))
        .route("/act-for", post(citizen::act_for))
        .route("/consents", post(citizen::consent))
        .route("/preferences", post(citizen::preferences))
        .route("/drafts/{reference}", get(citizen::draft_page).post(citizen::draft_action))
        .route("/staff", get(staff::dashboard))
        .route("/staff/signin", post(staff::signin))
        .route("/staff/signout", post(staff::signout))
        .route("/staff/export/{table}", get(staff::export))
        .route("/assets/pages.css", get(|| asset("text/css; charset=utf-8", include_str!("assets/pages.css"))))
        .route("/assets/pages.js", get(|| asset("text/javascript; charset=utf-8", include_str!("assets/pages.js"))))
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

fn env() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("signin.html", include_str!("templates/signin.html")),
            ("citizen.html", include_str!("templates/citizen.html")),
            ("draft.html", include_str!("templates/draft.html")),
            ("staff.html", include_str!("templates/staff.html")),
            ("error.html", include_str!("templates/error.html")),
        ] {
            env.add_template(name, source).expect("the pages' templates compile (a unit test renders each)");
        }
        env.add_filter("when", when);
        env
    })
}

/// `2026-11-23T09:00:00+02:00` as `2026-11-23 09:00` (Riga time, as the API gives it).
fn when(v: String) -> String {
    match chrono::DateTime::parse_from_rfc3339(&v) {
        Ok(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => v,
    }
}

/// What every page needs besides its own data: language, texts, CSRF token.
pub(super) struct View {
    /// The language the page is in.
    pub lang: &'static str,
    /// This browser's CSRF token, for the forms.
    pub csrf: String,
    /// Cookies to set with the answer.
    pub cookies: Vec<HeaderValue>,
}

impl View {
    /// The view of a request; `asked` the `lang` switch, `profile` the person's own language.
    pub fn new(headers: &HeaderMap, asked: Option<&str>, profile: Option<&str>) -> View {
        let lang = i18n::choose(asked, headers, profile);
        let (csrf, fresh) = session::csrf_token(headers);
        let mut cookies = Vec::new();
        if fresh {
            cookies.push(session::set_cookie(headers, session::CSRF, &csrf, "/", None));
        }
        if asked.and_then(i18n::known).is_some() {
            cookies.push(session::set_cookie(headers, session::LANG, lang, "/", Some(365 * 24 * 3600)));
        }
        View { lang, csrf, cookies }
    }

    /// The text `key` in the page's language.
    pub fn t(&self, key: &str) -> String {
        i18n::texts(self.lang).get(key).cloned().unwrap_or_else(|| key.to_string())
    }

    /// Renders `template` with `data` (and the language, texts and CSRF token) as an HTML answer.
    pub fn render(mut self, status: StatusCode, template: &str, data: serde_json::Value) -> Response {
        let ctx = context! {
            lang => self.lang,
            langs => i18n::LANGS,
            t => Value::from(Serde(i18n::texts(self.lang))),
            csrf => &self.csrf,
            ..Value::from(Serde(&data))
        };
        let body = match env().get_template(template).and_then(|t| t.render(ctx)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, template, "a page did not render");
                return (StatusCode::INTERNAL_SERVER_ERROR, html_headers(), "<!doctype html><title>Error</title>")
                    .into_response();
            }
        };
        let mut r = (status, html_headers(), body).into_response();
        for c in self.cookies.drain(..) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    }

    /// An error page saying the text `key`.
    pub fn error(self, status: StatusCode, key: &str) -> Response {
        let message = self.t(key);
        self.render(status, "error.html", serde_json::json!({ "message": message, "status": status.as_u16() }))
    }
}

/// Headers of every page: HTML, never cached (it is personal), and a
/// content security policy that allows nothing from outside.
fn html_headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ]
}

/// A 303 to `to` (POST-redirect-GET), setting `cookies`.
pub(super) fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

/// A sign-out form's answer: the form checked, the session `cookies` (name, path) cleared, then to `to`.
pub(super) fn sign_out(headers: &HeaderMap, body: &[u8], to: &str, cookies: &[(&str, &str)]) -> Response {
    let form = Form::parse(body);
    if !session::same_site_post(headers, form.get("csrf")) {
        return View::new(headers, None, None).error(StatusCode::FORBIDDEN, "csrf_failed");
    }
    see_other(to, cookies.iter().map(|(name, path)| session::set_cookie(headers, name, "", path, Some(0))).collect())
}

/// Whether an answer is one of these pages (the API's guard leaves their errors as they are).
pub(super) fn is_page(r: &Response) -> bool {
    r.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
}

/// A form's fields, in order (repeated names kept).
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Form {
        Form(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default())
    }

    /// The first value of `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_in_every_language() {
        for lang in i18n::LANGS {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, format!("p_lang={lang}").parse().unwrap());
            let r = View::new(&h, None, None).error(StatusCode::FORBIDDEN, "forbidden");
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert!(is_page(&r));
        }
        for name in ["base.html", "signin.html", "citizen.html", "draft.html", "staff.html", "error.html"] {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
        assert_eq!(when("2026-11-23T09:05:00+02:00".into()), "2026-11-23 09:05");
    }
}
