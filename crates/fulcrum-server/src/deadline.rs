//! Deadlines on what a client sends and on how long a request may take, answered as
//! problem+json like every other error.
//!
//! - **Body idle timeout** ([`Config::body_idle_timeout`](crate::Config)): every request body is
//!   wrapped ([`idle_body`], at the [edge](crate::edge)) so that a stall longer than the timeout between two chunks ends it with
//!   [`BodyTimeout`]. Handlers see a failed body; the answer is 408 `body_timeout`, and whatever
//!   the request had started (a blob's temp file) is dropped. A half-sent upload never holds a
//!   connection and a file open forever.
//! - **Request deadline** for JSON routes ([`Config::request_timeout`](crate::Config)): a handler
//!   that has not answered in time is answered 503 `request_timeout` (nothing half-applied: the
//!   store's transactions are all-or-nothing).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use crate::AppState;
use crate::problem::ApiError;

/// The body stalled for longer than the idle timeout.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body stalled for longer than {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A body that fails with [`BodyTimeout`] when no chunk arrives within `idle`.
struct IdleBody {
    inner: Body,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (or anything in its source chain) is a body timeout.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<BodyTimeout>().is_some() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The 408 answer for a stalled body.
pub fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body stopped arriving; nothing was stored (send it again)",
    )
}

/// A request body that fails with [`BodyTimeout`] when it stalls longer than `idle` (wrapped
/// around every request that has a body, by [`crate::edge`]).
pub fn idle_body(inner: Body, idle: Duration) -> Body {
    let timer = Box::pin(tokio::time::sleep(idle));
    Body::new(IdleBody { inner, idle, timer }.map_err(axum::Error::new))
}

/// Middleware for JSON routes: answer 503 `request_timeout` (problem+json) when the handler has
/// not answered within the request deadline.
pub async fn request_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the registry did not finish the request in time; retry (nothing was half-applied)",
        )
        .into_response(),
    }
}
