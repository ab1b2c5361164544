//! The HTTP API on actix-web: shared state, problem+json errors, the middleware (request id and
//! access log; CORS; rate limits, `rate_limit.rs`; API tokens, `auth.rs`), extractors, the routes
//! and the OpenAPI document. Handlers parse, make one service call and render.

pub mod auth;
pub mod conditional;
pub mod cors;
pub mod extract;
pub mod forwarded;
pub mod idempotency;
pub mod middleware;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod schemas;
pub mod state;

pub use problem::ApiError;
pub use state::AppState;
