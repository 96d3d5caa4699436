//! What every request passes through before routing: the HTTP metrics (by route template) and
//! the idle deadline on request bodies ([`crate::deadline`]).
//!
//! It is one service *around* the router, with a concrete future, rather than per-route
//! middleware: axum clones a route's whole layered stack on every request, so each per-route
//! layer costs allocations and shared reference-count traffic on each call — measured at about a
//! tenth of the resolve hot path's CPU. The route label is the route's template (`/v1/models/{name}`),
//! looked up in a table built once from the same route list the router is made of (the OpenAPI
//! document plus the two undocumented endpoints), so labels stay bounded whatever paths clients
//! send.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use tower::Service;

use crate::AppState;

/// Label of requests whose path matches no route.
pub const UNMATCHED: &str = "unmatched";

/// Route templates and a matcher from a request path to its template's index.
struct RouteTable {
    matcher: matchit::Router<usize>,
    /// Index → template; the last one is [`UNMATCHED`].
    labels: Vec<&'static str>,
}

static ROUTES: LazyLock<RouteTable> = LazyLock::new(|| {
    let doc = crate::routes::openapi();
    let mut labels: Vec<&'static str> = doc
        .paths
        .paths
        .keys()
        .map(|p| &*Box::leak(p.clone().into_boxed_str()))
        .chain(crate::routes::UNDOCUMENTED)
        .collect();
    labels.sort_unstable();
    labels.dedup();
    let mut matcher = matchit::Router::new();
    for (i, l) in labels.iter().enumerate() {
        matcher.insert(*l, i).expect("route templates are valid and distinct");
    }
    labels.push(UNMATCHED);
    RouteTable { matcher, labels }
});

/// Every route label, in a fixed order (the index [`route_of`] answers).
pub fn route_labels() -> &'static [&'static str] {
    &ROUTES.labels
}

/// The index (in [`route_labels`]) of the route template a path matches.
pub fn route_of(path: &str) -> usize {
    ROUTES.matcher.at(path).map_or(ROUTES.labels.len() - 1, |m| *m.value)
}

/// The router with the edge in front: what the listeners serve.
#[derive(Clone)]
pub struct Edge {
    router: Router,
    state: AppState,
}

impl Edge {
    pub fn new(router: Router, state: AppState) -> Self {
        Self { router, state }
    }
}

impl<B> Service<axum::http::Request<B>> for Edge
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Observed {
        let start = Instant::now();
        let route = route_of(req.uri().path());
        let method = crate::metrics::method_index(req.method());
        // A request without a body (every GET, resolve's included) has nothing to time out.
        let req: Request = if req.body().is_end_stream() {
            req.map(Body::new)
        } else {
            req.map(|b| crate::deadline::idle_body(Body::new(b), self.state.config.body_idle_timeout))
        };
        Observed { inner: self.router.call(req), state: self.state.clone(), route, method, start }
    }
}

pin_project_lite::pin_project! {
    /// The router's future; its answer is counted when it completes.
    pub struct Observed {
        #[pin]
        inner: RouteFuture<Infallible>,
        state: AppState,
        route: usize,
        method: usize,
        start: Instant,
    }
}

impl Future for Observed {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(Ok(resp)) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        this.state.metrics.observe(*this.route, *this.method, resp.status().as_u16(), this.start.elapsed());
        Poll::Ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_labelled_by_their_template_and_strangers_share_one_label() {
        let label = |p: &str| route_labels()[route_of(p)];
        assert_eq!(label("/v1/resolve"), "/v1/resolve");
        assert_eq!(label("/v1/models/fraud/versions/1.0.0"), "/v1/models/{name}/versions/{version}");
        assert_eq!(label("/v1/models/fraud/aliases/production/history"), "/v1/models/{name}/aliases/{alias}/history");
        assert_eq!(label("/metrics"), "/metrics");
        assert_eq!(label("/openapi.json"), "/openapi.json");
        for stranger in ["/", "/v1", "/v1/resolve/extra", "/wp-admin/x.php", "/v1/models/a/b/c/d/e/f"] {
            assert_eq!(label(stranger), UNMATCHED, "{stranger}");
        }
        assert_eq!(route_labels().last(), Some(&UNMATCHED));
    }
}
