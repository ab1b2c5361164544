//! The HTTP API on actix-web: shared state, problem+json errors, the middleware, extractors,
//! the routes and the OpenAPI document. Handlers parse, make one service call and render.

pub mod conditional;
pub mod cors;
pub mod extract;
pub mod forwarded;
pub mod idempotency;
pub mod middleware;
pub mod problem;
pub mod routes;
pub mod schemas;
pub mod state;

pub use problem::ApiError;
pub use state::AppState;
