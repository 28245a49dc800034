//! `/metrics` in the Prometheus text format (prometheus-client): rounds by state and
//! hypotheses by status (counted in the database at each scrape), plugin calls and latency
//! (`plugin::stats`), models loaded for `ask`, and request latency per route (the `track` middleware). Admins only,
//! unless the server was started with `--metrics-public`.

use super::{ApiError, AppState, authorize};
use crate::store::Action;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Instant;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// The route as declared (`/api/v1/hypotheses/{id}`), so ids do not multiply series;
    /// `unmatched` for paths no route serves.
    route: String,
    status: u16,
}

/// 1 ms to about 16 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

type RequestFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Request latency of every server in this process (tests and benches may run several; the
/// `route` label is the same for all of them).
static REQUESTS: LazyLock<RequestFamily> =
    LazyLock::new(|| Family::new_with_constructor(request_histogram));

/// Middleware: times each request from arrival to response headers, by method, route and
/// status.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Clients can send any method name: only the standard ones become label values, so
    // unauthenticated requests cannot grow the number of series without bound.
    let method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        .into_iter()
        .find(|m| *m == req.method().as_str())
        .unwrap_or("other");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let resp = next.run(req).await;
    REQUESTS
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    resp
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_public
        && let Err(e) = authorize(&state, &headers, Action::ReadMetrics).await
    {
        return e.into_response();
    }
    match scrape(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// One exposition. The database counts go into gauges made for this scrape, labelled with
/// whatever states and statuses the database holds (so a `failed` round shows up, and a state
/// that emptied does not linger); the process-wide families are shared into the same registry.
async fn scrape(state: &AppState) -> Result<String, ApiError> {
    let (rounds, hypotheses) = state.store.metric_counts().await?;
    let mut registry = Registry::with_prefix("hypograph");
    let by_state = Family::<StateLabel, Gauge>::default();
    for (s, n) in rounds {
        by_state.get_or_create(&StateLabel { state: s }).set(n);
    }
    registry.register("rounds", "Rounds by state", by_state);
    let by_status = Family::<StatusLabel, Gauge>::default();
    for (s, n) in hypotheses {
        by_status.get_or_create(&StatusLabel { status: s }).set(n);
    }
    registry.register("hypotheses", "Hypotheses by status", by_status);
    crate::plugin::stats::register(&mut registry);
    registry.register(
        "ask_model_loads",
        "Models loaded for ask by the servers of this process",
        super::ask::loads(),
    );
    registry.register(
        "http_request_seconds",
        "Time to answer a request, by method, route and status",
        REQUESTS.clone(),
    );
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
    })?;
    Ok(out)
}
