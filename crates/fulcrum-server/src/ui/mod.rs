//! The web console (SPEC §12), served by the registry at `/ui/`: server-rendered HTML (askama
//! templates compiled into the binary), readable without JavaScript, with the same identities and
//! access decisions as the API — a console page asks the same questions of the same policy.
//!
//! - **Session**: `POST /ui/login` takes a pasted token, checks it like any bearer token, and seals
//!   it with an expiry (AES-256-GCM, key from `--ui-session-key-file`, else one per process) into a
//!   `Secure; HttpOnly; SameSite=Strict; Path=/ui` cookie that lives [`SESSION`]. The token never
//!   reaches the page or its scripts. A request with the cookie is authenticated exactly as
//!   `Authorization: Bearer <token>` would be.
//! - **Actions** are forms that POST to `/ui/…` with a CSRF token (HMAC of the session under the
//!   same key) and a same-origin check; each is the API's own governed call.
//! - **Headers**: a strict Content-Security-Policy (no inline script or style, no framing), no
//!   referrer, no sniffing, `Cache-Control: no-store`.

mod dashboard;
mod governance;
mod pages;
mod session;
mod version;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::AppState;

pub use dashboard::Folds;
pub use session::{SESSION, SessionKey};

/// The console's Content-Security-Policy: only this origin's stylesheet and scripts, no inline
/// code, no plugins, no framing, forms only to this origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("../../assets/ui.css");
const ICON: &str = include_str!("../../assets/favicon.svg");
const LIVE: &str = include_str!("../../assets/live.js");
const DASHBOARD: &str = include_str!("../../assets/dashboard.js");
const AUDIT: &str = include_str!("../../assets/audit.js");
/// uPlot 1.6.32 (MIT), vendored unchanged: `assets/vendor/uplot-1.6.32/` (see its README).
pub const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot-1.6.32/uPlot.iife.min.js");
pub const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot-1.6.32/uPlot.min.css");

fn asset(kind: &'static str, body: &'static str) -> ([(header::HeaderName, HeaderValue); 1], &'static str) {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(kind))], body)
}

/// The `/ui/` routes (merged into the main router; every other `/ui/…` path is the console's
/// own "no such page").
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { axum::response::Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::models))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/login/start", get(pages::login_start))
        .route("/ui/login/callback", get(pages::login_callback))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/incidents", get(pages::incidents))
        .route("/ui/policy", get(governance::policy))
        .route("/ui/audit", get(governance::audit))
        .route("/ui/audit/leaves", get(governance::leaves))
        .route("/ui/audit/proof/{index}", get(governance::proof))
        .route("/ui/incidents/{id}", get(pages::incident))
        .route("/ui/models/{name}", get(pages::model))
        .route("/ui/models/{name}/versions/{version}", get(version::page))
        .route("/ui/models/{name}/versions/{version}/live", get(pages::live))
        .route("/ui/models/{name}/versions/{version}/dashboard", get(dashboard::page))
        .route("/ui/models/{name}/versions/{version}/dashboard.json", get(dashboard::data))
        .route("/ui/models/{name}/versions/{version}/preview/{action}", post(version::preview))
        .route("/ui/models/{name}/versions/{version}/{action}", post(version::act))
        .route("/ui/static/ui.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/ui/static/live.js", get(|| async { asset("text/javascript; charset=utf-8", LIVE) }))
        .route("/ui/static/audit.js", get(|| async { asset("text/javascript; charset=utf-8", AUDIT) }))
        .route("/ui/static/dashboard.js", get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD) }))
        .route("/ui/static/uPlot.iife.min.js", get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }))
        .route("/ui/static/uPlot.min.css", get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }))
        .route("/ui/static/favicon.svg", get(|| async { asset("image/svg+xml", ICON) }))
        .route("/ui/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(middleware::from_fn(security_headers))
}

/// Every console answer carries the security headers.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_vendored_chart_library_is_the_pinned_one() {
        let hex = |b: &str| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b.as_bytes())
                .as_ref()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        };
        assert_eq!(hex(super::UPLOT_JS), "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f");
        assert_eq!(hex(super::UPLOT_CSS), "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04");
    }
}
