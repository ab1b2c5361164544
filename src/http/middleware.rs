//! The one middleware every request passes: request id, access log line, HTTP metrics.
//!
//! The request id comes from `X-Request-Id` when it is printable ASCII of at most 128
//! characters, else a fresh UUID. It is echoed on the response, set for the duration of the
//! request in the task-local of `telemetry::request_id` (so every log line and problem+json body
//! of the request carries it), and written in the access-log line.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::HttpMessage as _;
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::StreamExt as _;

use crate::telemetry::metrics::RequestCounter;
use crate::telemetry::request_id::{within_request, within_request_sync};

/// The request-id header, read and echoed.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest accepted incoming request id.
const MAX_REQUEST_ID_CHARS: usize = 128;
/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// The log target of the access-log lines (`RUST_LOG=info,access=off` turns them off).
pub const ACCESS_LOG: &str = "access";

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_CHARS
        && id.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The request's own id when acceptable, else a fresh UUID (version 4, from the thread's
/// random generator: no system call per request).
fn request_id(req: &ServiceRequest) -> String {
    match req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
    {
        Some(id) => id.to_owned(),
        None => uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .hyphenated()
            .to_string(),
    }
}

/// Assigns the request id, logs one access line and records the HTTP metrics (in the worker's
/// [`RequestCounter`], under the name of the matched route: its pattern, see
/// `routes::resource`).
///
/// What it does per request is kept small, as every request pays it: the access line is built
/// only when the log filter lets it through.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    // Printable ASCII (checked above, or a UUID), so always a valid header value.
    let echoed = HeaderValue::from_str(&id).ok();
    let mut response = within_request(Some(id), next.call(req)).await?;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let request = response.request();
    let route = request.match_name().unwrap_or(UNMATCHED_ROUTE);
    let method = request.method().as_str();
    if let Some(counter) = request.app_data::<RequestCounter>() {
        counter.observe(method, route, status, elapsed);
    }
    if log::log_enabled!(target: ACCESS_LOG, log::Level::Info) {
        let id = echoed
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = request.path();
        within_request_sync(id, || {
            log::info!(
                target: ACCESS_LOG,
                "{method} {route} {status} {:.2}ms path={path}",
                elapsed.as_secs_f64() * 1000.0
            );
        });
    }
    if let Some(value) = echoed {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

/// Closes the connection after the answer to a request whose chunked body was not read to its
/// end (a late body answered 408, or any early answer: 404, 405, 413, 415), instead of leaving it
/// open.
///
/// Why: actix-http 3.20 drains an unread *chunked* body after the answer with no deadline
/// (actix-web pull request #3936, "we should avoid unbounded draining"), so a client that never
/// finishes its body kept the connection, and a `MAX_CONNECTIONS` slot, forever; an unread body
/// with a `Content-Length` is closed. The dispatcher closes (after its 1 s linger) when the
/// request's payload is still alive as the answer is sent, so this keeps the payload alive,
/// shared with the handler's reading end, inside the answer's body until that body is sent.
/// Requests without a chunked body pass untouched.
pub async fn close_after_unread_chunked_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let chunked = req
        .headers()
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let held = chunked.then(|| {
        let payload = Rc::new(RefCell::new(req.take_payload()));
        let reader = Rc::clone(&payload);
        let stream =
            futures_util::stream::poll_fn(move |cx| reader.borrow_mut().poll_next_unpin(cx));
        req.set_payload(Payload::from(
            Box::pin(stream) as Pin<Box<dyn futures_util::Stream<Item = _>>>
        ));
        payload
    });
    let response = next.call(req).await?;
    Ok(response.map_body(|_, body| HoldingPayload {
        body,
        _payload: held,
    }))
}

pin_project_lite::pin_project! {
    /// A response body that keeps the request's payload alive until it has been sent.
    struct HoldingPayload<B> {
        #[pin]
        body: B,
        _payload: Option<Rc<RefCell<Payload>>>,
    }
}

impl<B: MessageBody> MessageBody for HoldingPayload<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }
}
