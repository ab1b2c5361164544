//! The `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header): its
//! reading, the fingerprint of the request it names, and the answers stored for it.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, HttpResponse};
use futures_util::future::{Ready, ready};
use sha2::{Digest as _, Sha256};

use crate::domain::FieldErrors;
use crate::http::auth::Credentials;
use crate::http::problem::ApiError;
use crate::store::idempotency::{IdempotencyKey, StoredResponse};

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The answer header that marks a replayed answer.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// The request's `Idempotency-Key`, if any: 1 to 255 printable ASCII characters, sent bare or
/// quoted as a structured-field string (`"abc"`, RFC 8941 section 3.3.3, as the draft defines
/// it; `\"` and `\\` escapes read).
///
/// Errors: 400 naming the header when it is empty, too long, sent twice, or not printable
/// ASCII.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKeyHeader(pub Option<String>);

impl FromRequest for IdempotencyKeyHeader {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
        let read = match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err("must be sent once"),
            (Some(value), None) => read_key(value).map(Some),
        };
        ready(read.map(IdempotencyKeyHeader).map_err(|message| {
            ApiError::Validation(FieldErrors::from([(
                "Idempotency-Key".to_owned(),
                vec![message.to_owned()],
            )]))
        }))
    }
}

fn read_key(value: &HeaderValue) -> Result<String, &'static str> {
    let text = value
        .to_str()
        .map_err(|_| "must be printable ASCII")?
        .trim_matches([' ', '\t']);
    let key = match text.strip_prefix('"') {
        Some(quoted) => unquote(quoted).ok_or("a quoted key must end with its quote")?,
        None => text.to_owned(),
    };
    if key.is_empty() {
        return Err("must not be empty");
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err("must be at most 255 characters");
    }
    if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("must be printable ASCII");
    }
    Ok(key)
}

/// The rest of an sf-string after its opening quote: its characters up to the closing quote,
/// which must end the text.
fn unquote(rest: &str) -> Option<String> {
    let mut key = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return chars.as_str().is_empty().then_some(key),
            '\\' => match chars.next()? {
                escaped @ ('"' | '\\') => key.push(escaped),
                _ => return None,
            },
            c => key.push(c),
        }
    }
    None
}

/// A POST sent with an idempotency key: whose key it is, the key, and the request's
/// fingerprint, owned for the length of the request.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    scope: String,
    key: String,
    fingerprint: Vec<u8>,
}

impl KeyedRequest {
    /// The key `key` of the POST `req` to `route` with `body`.
    pub fn new(req: &HttpRequest, key: String, route: &str, body: &[u8]) -> Self {
        Self {
            scope: caller_scope(req),
            key,
            fingerprint: fingerprint("POST", route, body),
        }
    }

    /// The key as the store takes it.
    pub fn key(&self) -> IdempotencyKey<'_> {
        IdempotencyKey {
            scope: &self.scope,
            key: &self.key,
            fingerprint: &self.fingerprint,
        }
    }
}

/// Whose idempotency keys a request's are: the hex digest of its valid API token, or `""`
/// (one namespace) when it presents none (tokens off, or a read-open route).
pub fn caller_scope(req: &HttpRequest) -> String {
    match req.extensions().get::<Credentials>() {
        Some(Credentials::Valid(digest)) => digest.iter().map(|b| format!("{b:02x}")).collect(),
        _ => String::new(),
    }
}

/// SHA-256 of the request a key names: its method, its route and its body's bytes. The same key
/// with another fingerprint is a 422.
pub fn fingerprint(method: &str, route: &str, body: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(route.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().to_vec()
}

/// The answer `stored` describes; marked `Idempotent-Replayed: true` when `replayed`.
pub fn render(stored: StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut answer = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        answer.insert_header((name.as_str(), value.as_str()));
    }
    if replayed {
        answer.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    answer.body(stored.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_bare_or_quoted_and_refused_when_malformed() {
        let read = |raw: &str| read_key(&HeaderValue::from_str(raw).expect("header"));
        assert_eq!(read("abc-123"), Ok("abc-123".to_owned()));
        assert_eq!(read("\"abc 123\""), Ok("abc 123".to_owned()));
        assert_eq!(read(r#""a\"b\\c""#), Ok(r#"a"b\c"#.to_owned()));
        assert!(read("\"unclosed").is_err());
        assert!(read("\"a\"b").is_err());
        assert!(read("").is_err());
        assert!(read("\"\"").is_err());
        assert!(read(&"k".repeat(256)).is_err());
        assert_eq!(read(&"k".repeat(255)).map(|k| k.len()), Ok(255));
    }

    #[test]
    fn the_documented_pattern_accepts_exactly_the_keys_read() {
        let pattern = regex::Regex::new(crate::http::schemas::IDEMPOTENCY_KEY_PATTERN).expect("re");
        let long = "k".repeat(255);
        let too_long = "k".repeat(256);
        let quoted_long = format!("\"{long}\"");
        for raw in [
            "abc",
            "a b",
            "\"a b\"",
            r#""a\"b""#,
            "\"unclosed",
            "\"\"",
            "0",
            "~",
            "a\"",
            r#""a\x""#,
            long.as_str(),
            too_long.as_str(),
            quoted_long.as_str(),
        ] {
            let value = HeaderValue::from_str(raw).expect("header");
            assert_eq!(pattern.is_match(raw), read_key(&value).is_ok(), "{raw:?}");
        }
    }
}
