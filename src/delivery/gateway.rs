//! What the e-address and SMS gateway clients share: one way to build the
//! HTTP client (the TLS provider and token of the connectors), to POST a
//! message with its idempotency key, and to read the answers both contracts
//! give alike (`{"error": …}`, 429/503 with `Retry-After`).

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::channels::SendOutcome;
use crate::config::GatewayConfig;

/// Where a gateway is and how to authenticate to it.
pub(crate) struct Gateway {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    token: Option<String>,
    timeout: Duration,
}

/// A gateway's answer that arrived, whatever its status.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Gateway {
    /// A client for `cfg`; `token` overrides `token_env` (tests and embedders pass it directly).
    pub(crate) fn new(name: &str, cfg: &GatewayConfig, token: Option<String>) -> Result<Gateway> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        if base.is_empty() {
            anyhow::bail!("channels.{name}: kind \"http\" needs base_url");
        }
        reqwest::Url::parse(&base).with_context(|| format!("channels.{name}.base_url is not a URL"))?;
        let token = match token {
            Some(t) => Some(t),
            None => cfg.token_env.as_deref().map(crate::config::secret).transpose()?,
        };
        crate::connectors::use_ring_tls();
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .with_context(|| format!("channels.{name}: cannot set up the HTTP client"))?;
        Ok(Gateway { http, base, token, timeout })
    }

    /// Adds the bearer token, when there is one.
    pub(crate) fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// POSTs `body` to `{base}{path}` with `Idempotency-Key: key`; a failure
    /// to get any answer (timeout, refused or dropped connection) is a retry.
    pub(crate) async fn post(&self, path: &str, key: &str, body: &serde_json::Value) -> Result<Answer, SendOutcome> {
        let req = self.auth(self.http.post(format!("{}{path}", self.base))).header("idempotency-key", key).json(body);
        self.answer(req).await
    }

    /// GETs `{base}{path}`.
    pub(crate) async fn get(&self, path: &str) -> Result<Answer, SendOutcome> {
        self.answer(self.auth(self.http.get(format!("{}{path}", self.base)))).await
    }

    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Answer, SendOutcome> {
        let failed = |e: reqwest::Error| {
            // Without the URL: it may carry a recipient's code (status look-ups).
            let what = if e.is_timeout() {
                format!("no answer within {:?}", self.timeout)
            } else if e.is_connect() {
                format!("cannot connect: {}", e.without_url())
            } else {
                format!("the connection failed before an answer: {}", e.without_url())
            };
            SendOutcome::Retry(what, None)
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(failed)?.to_vec();
        Ok(Answer { status, headers, body })
    }
}

impl Answer {
    /// The `error` of a `{"error": "…"}` body, else the body's start.
    pub(crate) fn error(&self) -> String {
        #[derive(serde::Deserialize)]
        struct E {
            error: String,
        }
        match serde_json::from_slice::<E>(&self.body) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(&self.body).chars().take(200).collect(),
        }
    }

    /// 429 and 503: retry when the gateway said (`Retry-After`), else with backoff.
    pub(crate) fn busy(&self) -> Option<SendOutcome> {
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            let after = crate::connectors::feed::retry_after(self.headers.get(reqwest::header::RETRY_AFTER));
            Some(SendOutcome::Retry(format!("gateway busy (HTTP {})", self.status.as_u16()), after))
        } else {
            None
        }
    }

    /// Any answer the contract does not name: the gateway's problem, so retry.
    pub(crate) fn unexpected(&self) -> SendOutcome {
        if matches!(self.status.as_u16(), 401 | 403) {
            tracing::warn!(status = self.status.as_u16(), "a gateway refused our token; check token_env");
        }
        SendOutcome::Retry(format!("gateway answered HTTP {}: {}", self.status.as_u16(), self.error()), None)
    }
}
