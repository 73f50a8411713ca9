//! The web console: a page served by every agent at `/ui` (on in `silt
//! dev`, behind `--ui` for `silt agent`).
//!
//! Invariant: the console is a client of the public API and nothing else.
//! Its files (a page, four scripts, a style sheet) are compiled into the
//! binary (no build step, nothing fetched from anywhere at run time, which
//! its Content-Security-Policy enforces in the browser); every view reads
//! `/v1/...` like any client, plus [`history`], the last hour of the
//! agent's own metrics, for charts.

pub mod history;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

const INDEX: &str = include_str!("assets/index.html");

/// The scripts and the style sheet, by name under `/ui/`.
const ASSETS: [(&str, &str, &str); 5] = [
    ("lib.js", JS, include_str!("assets/lib.js")),
    ("topics.js", JS, include_str!("assets/topics.js")),
    ("groups.js", JS, include_str!("assets/groups.js")),
    ("app.js", JS, include_str!("assets/app.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";

/// Only this origin, for scripts, styles, images and API calls.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Settings of the console and of what it shows.
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// Serve `/ui`.
    pub ui: bool,
    /// The canary running inside this agent, if any (shown by the console;
    /// its metrics are `silt_probe_*`).
    pub probe: Option<ProbeInfo>,
}

/// The in-agent canary's settings.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    pub topic: String,
    pub interval_ms: u64,
}

/// The `/ui` routes.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        // Deep links (`/ui/anything`) load the page too.
        .route("/ui/{*path}", get(index));
    for (name, content_type, body) in ASSETS {
        router = router.route(
            &format!("/ui/{name}"),
            get(move || async move { asset(content_type, body) }),
        );
    }
    router
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}
