//! API tokens (off by default): once `API_TOKENS` or `API_TOKENS_FILE` names tokens, every write
//! needs `Authorization: Bearer <token>` (RFC 6750, section 2.1), and so do reads of
//! `/products` when `API_TOKENS_READ=true`.
//!
//! | request | needs a token |
//! |---|---|
//! | any method but GET, HEAD and OPTIONS on `/products` and below (POST, PUT, PATCH, DELETE, and any route added there, e.g. `POST /products/batch`) | yes |
//! | GET and HEAD on `/products` and below | only with `API_TOKENS_READ=true` |
//! | OPTIONS anywhere (CORS preflights included) | never |
//! | `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`, `/` | never |
//!
//! The path is the one the router matches (percent-decoded), so `/product%73` is `/products`.
//! Without a token the answer is 401 with `WWW-Authenticate: Bearer realm="product-service"`;
//! with a token that is not configured, the same with `error="invalid_token"` (RFC 6750, section
//! 3; RFC 9110, section 15.5.2). Another scheme (`Basic`) counts as no token.
//!
//! Tokens are kept only as SHA-256 digests. A presented token is hashed and compared with every
//! configured digest in constant time (`subtle`), without stopping at a match, so neither its
//! length nor how much of it matches shows in the time taken. No token is ever logged: the
//! access log has no headers, and the messages here name the file, never a token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use actix_web::HttpMessage as _;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::{Config, parse_token};
use crate::http::problem::ApiError;
use crate::telemetry::metrics::{Metrics, UnauthorizedReason};

/// The SHA-256 digest of a token: what is kept, compared and keyed on, never the token.
pub type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(token.as_bytes()));
    out
}

/// The configured tokens, as digests; the set is swapped whole when the file is re-read.
#[derive(Debug)]
pub struct ApiTokens {
    digests: RwLock<Arc<[TokenDigest]>>,
    file: Option<PathBuf>,
}

impl ApiTokens {
    /// The tokens the settings name: `None` when neither `API_TOKENS` nor `API_TOKENS_FILE` is
    /// set.
    ///
    /// # Errors
    /// A message naming `API_TOKENS_FILE` when it cannot be read, holds a malformed line or no
    /// token at all (a start-up error: the service would otherwise refuse every write).
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        if let Some(path) = &config.api_tokens_file {
            return Self::from_file(path).map(Some);
        }
        if config.api_tokens.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::from_tokens(
            config.api_tokens.iter().map(|token| token.expose()),
        )))
    }

    /// A fixed set of tokens (never re-read).
    pub fn from_tokens<'a>(tokens: impl Iterator<Item = &'a str>) -> Self {
        Self {
            digests: RwLock::new(tokens.map(digest).collect()),
            file: None,
        }
    }

    /// The tokens of `path`, one a line; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    /// As [`ApiTokens::from_config`].
    pub fn from_file(path: &Path) -> Result<Self, String> {
        Ok(Self {
            digests: RwLock::new(read_file(path)?.into()),
            file: Some(path.to_owned()),
        })
    }

    /// The file the tokens come from, when they do.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether no token is configured (never, once built: an empty set is refused).
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    fn current(&self) -> Arc<[TokenDigest]> {
        Arc::clone(&self.digests.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads the file (what SIGHUP does) and returns how many tokens it holds now; a fixed
    /// set stays as it is.
    ///
    /// # Errors
    /// When the file cannot be read, holds a malformed line or no token: the previous set stays
    /// in force (the message names the file, never a token).
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.file else {
            return Ok(self.len());
        };
        let digests: Arc<[TokenDigest]> = read_file(path)?.into();
        let count = digests.len();
        *self.digests.write().unwrap_or_else(|e| e.into_inner()) = digests;
        Ok(count)
    }

    /// The digest of `presented` when it is one of the tokens. Every configured digest is
    /// compared, in constant time, whatever matches.
    pub fn verify(&self, presented: &str) -> Option<TokenDigest> {
        let presented = digest(presented);
        let mut found = subtle::Choice::from(0);
        for configured in self.current().iter() {
            found |= configured.ct_eq(&presented);
        }
        bool::from(found).then_some(presented)
    }
}

/// The tokens of the file at `path`, as digests.
fn read_file(path: &Path) -> Result<Vec<TokenDigest>, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("API_TOKENS_FILE {shown}: {e}"))?;
    let mut digests = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let token = parse_token(line)
            .map_err(|e| format!("API_TOKENS_FILE {shown}, line {}: {e}", number + 1))?;
        digests.push(digest(token.expose()));
    }
    if digests.is_empty() {
        return Err(format!(
            "API_TOKENS_FILE {shown} holds no token (every write would be refused)"
        ));
    }
    digests.sort_unstable();
    digests.dedup();
    Ok(digests)
}

/// Re-reads the tokens' file on every SIGHUP, for ever; a file that fails to read keeps the
/// previous set, with a warning; without a file (`tokens` `None`, or from `API_TOKENS`), a
/// SIGHUP is logged and ignored. The handler is installed before this returns, so that a SIGHUP
/// from then on never takes the process down (its default action).
///
/// # Errors
/// When the signal handler cannot be installed.
pub fn reload_on_hangup(
    tokens: Option<Arc<ApiTokens>>,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            let Some(tokens) = tokens.as_ref().filter(|tokens| tokens.file().is_some()) else {
                // A reload command sent to every instance must not end this one.
                log::info!("SIGHUP: no API_TOKENS_FILE to re-read; nothing to do");
                continue;
            };
            match tokens.reload() {
                Ok(count) => log::info!("SIGHUP: API_TOKENS_FILE re-read, {count} tokens"),
                Err(e) => log::warn!(
                    "SIGHUP: {e}; the previous {} tokens stay in force",
                    tokens.len()
                ),
            }
        }
    })
}

/// What a request's `Authorization` field presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// No bearer token (no field, or another scheme).
    Missing,
    /// A bearer token that is not configured.
    Invalid,
    /// A configured token, by its digest.
    Valid(TokenDigest),
}

/// The bearer token of an `Authorization` value (`Bearer <token>`, the scheme in any case,
/// RFC 9110 section 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// What `req` presents, checked against `tokens` once per request (the rate limit asks first,
/// to count a valid token as its client; the answer is kept in the request's extensions).
pub fn credentials(req: &ServiceRequest, tokens: &ApiTokens) -> Credentials {
    if let Some(known) = req.extensions().get::<Credentials>() {
        return *known;
    }
    let found = match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
    {
        None => Credentials::Missing,
        Some(token) => tokens
            .verify(token)
            .map_or(Credentials::Invalid, Credentials::Valid),
    };
    req.extensions_mut().insert(found);
    found
}

/// Whether a request of `method` to `path` (as the router matches it) needs a token; `reads`:
/// `API_TOKENS_READ`.
pub fn needs_token(method: &Method, path: &str, reads: bool) -> bool {
    let products = path == "/products" || path.starts_with("/products/");
    if !products || method == Method::OPTIONS {
        false
    } else if method == Method::GET || method == Method::HEAD {
        reads
    } else {
        true
    }
}

/// The token check's settings, as actix app data; absent when no tokens are configured.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    /// The configured tokens.
    pub tokens: Arc<ApiTokens>,
    /// `API_TOKENS_READ`.
    pub reads: bool,
    /// Where 401s are counted (`unauthorized_total`).
    pub metrics: Metrics,
}

/// Answers 401 to a request that needs a token and presents no valid one (see the module
/// documentation); passes every other request on.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let check = req.app_data::<web::Data<TokenCheck>>().cloned();
    if let Some(check) = check
        && needs_token(req.method(), req.match_info().as_str(), check.reads)
    {
        let reason = match credentials(&req, &check.tokens) {
            Credentials::Valid(_) => None,
            Credentials::Missing => Some(UnauthorizedReason::Missing),
            Credentials::Invalid => Some(UnauthorizedReason::Invalid),
        };
        if let Some(reason) = reason {
            check.metrics.count_unauthorized(reason);
            let invalid = matches!(reason, UnauthorizedReason::Invalid);
            return Ok(req
                .error_response(ApiError::Unauthorized { invalid })
                .map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_a_token_reads_only_when_asked_and_options_never() {
        let cases: &[(Method, &str, bool, bool)] = &[
            (Method::POST, "/products", false, true),
            (Method::POST, "/products/batch", false, true),
            (Method::PUT, "/products/7", false, true),
            (Method::PATCH, "/products/7/", false, true),
            (Method::DELETE, "/products/7", false, true),
            (Method::GET, "/products", false, false),
            (Method::GET, "/products", true, true),
            (Method::HEAD, "/products/7", true, true),
            (Method::OPTIONS, "/products", true, false),
            (Method::GET, "/healthz", true, false),
            (Method::POST, "/healthz", true, false),
            (Method::GET, "/openapi.json", true, false),
            (Method::POST, "/productsx", true, false),
        ];
        for (method, path, reads, needed) in cases {
            assert_eq!(
                needs_token(method, path, *reads),
                *needed,
                "{method} {path} reads={reads}"
            );
        }
    }

    #[test]
    fn only_a_bearer_token_is_read() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn a_token_is_valid_only_when_configured_whatever_its_length() {
        let tokens = ApiTokens::from_tokens(["s3cret", "other"].into_iter());
        assert!(tokens.verify("s3cret").is_some());
        assert!(tokens.verify("other").is_some());
        for wrong in ["", "s3cre", "s3cret ", "s3cretx", "S3CRET"] {
            assert!(tokens.verify(wrong).is_none(), "{wrong:?}");
        }
    }
}
