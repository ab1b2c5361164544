//! What every layer reports through: the request id of the work in progress, the log set-up that
//! writes it on every line, and the Prometheus instruments.
//!
//! The HTTP layer sets the request id; every other layer only reads it (or carries it to work done
//! for a request on another task, as group commit does).

pub mod metrics;
pub mod request_id;

use std::io::Write as _;

use request_id::current_request_id;

/// Installs env_logger with `filter` (env_logger syntax, as in `RUST_LOG`); lines logged while
/// serving a request carry its id as `request_id=<id>`.
pub fn init_logging(filter: &str) {
    env_logger::Builder::new()
        .parse_filters(filter)
        .format(|buf, record| {
            let timestamp = buf.timestamp_millis();
            let level = record.level();
            let target = record.target();
            match current_request_id() {
                Some(id) => writeln!(
                    buf,
                    "[{timestamp} {level:<5} {target}] request_id={id} {}",
                    record.args()
                ),
                None => writeln!(buf, "[{timestamp} {level:<5} {target}] {}", record.args()),
            }
        })
        .init();
}
