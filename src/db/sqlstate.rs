//! The SQLSTATE of every server error, read off the wire.
//!
//! diesel-async 0.9 turns most server errors into `DatabaseErrorKind::Unknown` carrying only the
//! message text, which follows the server's `lc_messages` (only a superuser may change it), so
//! the SQLSTATE (PostgreSQL docs, appendix A "PostgreSQL Error Codes") is lost before any caller
//! sees it. [`Tap`] wraps a connection's byte stream and watches the backend messages that pass
//! through it (docs, section 55.7 "Message Formats": a type byte, an Int32 length that counts
//! itself, then the body); of each ErrorResponse (`E`) it keeps the field `C`, the SQLSTATE, in
//! the connection's [`SqlStates`]. Every byte passes through unchanged.
//!
//! This is the one piece of the wire protocol the service reads itself: no crate offers it, and
//! the alternatives (forking diesel-async, matching translated messages) are worse.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
pub use tokio_postgres::error::SqlState;

/// Longest ErrorResponse body read for its SQLSTATE; a longer one (a huge message) is skipped.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The SQLSTATEs of the server errors one connection received since [`SqlStates::clear`], in
/// order. Shared between the connection's reader and its user.
#[derive(Debug, Clone, Default)]
pub struct SqlStates(Arc<Mutex<Vec<SqlState>>>);

impl SqlStates {
    /// Forgets the codes seen so far (call it before the work whose errors are wanted).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The first code seen since the last [`SqlStates::clear`]: the error that failed the work
    /// (the statements pipelined after it only fail with 25P02, "current transaction is
    /// aborted").
    pub fn first(&self) -> Option<SqlState> {
        self.lock().first().cloned()
    }

    /// Whether any code seen since the last [`SqlStates::clear`] (up to the first 16) is one
    /// that `matches`.
    pub fn any(&self, matches: impl Fn(&SqlState) -> bool) -> bool {
        self.lock().iter().any(matches)
    }

    fn push(&self, code: SqlState) {
        let mut codes = self.lock();
        // Bounded: a connection whose codes nobody clears keeps only its first few.
        if codes.len() < 16 {
            codes.push(code);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SqlState>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A byte stream from a PostgreSQL server whose ErrorResponse codes are recorded.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    reader: MessageReader,
    codes: SqlStates,
}

impl<S> Tap<S> {
    /// Wraps `inner`, recording the codes in `codes`.
    pub fn new(inner: S, codes: SqlStates) -> Self {
        Self {
            inner,
            reader: MessageReader::default(),
            codes,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.reader.feed(&buf.filled()[before..], &this.codes);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Splits the backend byte stream into messages, however the reads cut it.
#[derive(Debug, Default)]
struct MessageReader {
    /// The type byte and Int32 length of the message being read.
    header: [u8; 5],
    header_read: usize,
    /// Body bytes of the current message still to come.
    body_left: usize,
    /// The body so far, when it is an ErrorResponse.
    error_body: Option<Vec<u8>>,
}

impl MessageReader {
    fn feed(&mut self, mut bytes: &[u8], codes: &SqlStates) {
        while !bytes.is_empty() {
            if self.header_read < self.header.len() {
                let take = (self.header.len() - self.header_read).min(bytes.len());
                self.header[self.header_read..self.header_read + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_read += take;
                bytes = &bytes[take..];
                if self.header_read == self.header.len() {
                    self.start_body();
                    if self.body_left == 0 {
                        self.finish(codes);
                    }
                }
            } else {
                let take = self.body_left.min(bytes.len());
                if let Some(body) = &mut self.error_body {
                    body.extend_from_slice(&bytes[..take]);
                }
                self.body_left -= take;
                bytes = &bytes[take..];
                if self.body_left == 0 {
                    self.finish(codes);
                }
            }
        }
    }

    fn start_body(&mut self) {
        let [kind, length @ ..] = self.header;
        let length = u32::from_be_bytes(length) as usize;
        self.body_left = length.saturating_sub(4);
        self.error_body =
            (kind == b'E' && self.body_left <= MAX_ERROR_BODY).then(|| Vec::with_capacity(128));
    }

    fn finish(&mut self, codes: &SqlStates) {
        if let Some(code) = self.error_body.take().as_deref().and_then(error_code) {
            codes.push(code);
        }
        self.header_read = 0;
    }
}

/// The `C` field of an ErrorResponse body: fields are a type byte and a NUL-terminated string
/// each, and a zero byte ends them.
fn error_code(mut body: &[u8]) -> Option<SqlState> {
    while let [kind, rest @ ..] = body {
        if *kind == 0 {
            break;
        }
        let end = rest.iter().position(|b| *b == 0)?;
        if *kind == b'C' {
            return std::str::from_utf8(&rest[..end])
                .ok()
                .map(SqlState::from_code);
        }
        body = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend message of type `kind` with `body`.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let length = u32::try_from(body.len() + 4).expect("small");
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    fn error_response(code: &str) -> Vec<u8> {
        let body = format!("SFEHLER\0VERROR\0C{code}\0Mstorniere Anfrage\0\0");
        message(b'E', body.as_bytes())
    }

    #[test]
    fn error_codes_are_read_whatever_the_reads_cut_and_other_messages_pass() {
        let mut stream = message(b'C', b"SELECT 1\0");
        stream.extend(error_response("55P03"));
        stream.extend(message(b'Z', b"E"));
        stream.extend(error_response("25P02"));
        for cut in [1, 2, 3, 5, 7, stream.len()] {
            let codes = SqlStates::default();
            let mut reader = MessageReader::default();
            for chunk in stream.chunks(cut) {
                reader.feed(chunk, &codes);
            }
            assert_eq!(
                codes.first(),
                Some(SqlState::LOCK_NOT_AVAILABLE),
                "reads of {cut} bytes"
            );
            assert_eq!(codes.lock().len(), 2, "reads of {cut} bytes");
            codes.clear();
            assert_eq!(codes.first(), None);
        }
    }
}
