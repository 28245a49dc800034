//! The REST API (axum): assay callbacks, the human review queue, verdicts and retractions.
//! Every request carries a bearer token; each route checks the token's role. All data goes
//! through `store`.

use crate::plugin::{Outcome, Verdict, WireVerdict, parse_key};
use crate::store::{QueueFilter, Review, Role, Store, StoreError, User};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;

mod web;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Workflow files, for the dashboard's next scheduled runs.
    pub workflows: Option<std::path::PathBuf>,
}

/// The next fire time of every schedule in the workflows directory.
fn next_fires(state: &AppState) -> Vec<(String, &'static str, String)> {
    let Some(dir) = &state.workflows else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if !p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            continue;
        }
        let Ok(l) = crate::workflow::load(&p) else {
            continue;
        };
        for entry in crate::schedule::entries(&l).unwrap_or_default() {
            if let Some(t) = entry.schedule.after(&now).next() {
                out.push((
                    entry.workflow.clone(),
                    entry.kind.as_str(),
                    crate::store::stamp(t),
                ));
            }
        }
    }
    out.sort();
    out
}

/// An API error: a status and a JSON body `{"error": ...}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self(StatusCode::CONFLICT, m),
            StoreError::UnknownHypothesis(_) | StoreError::UnknownRound(_) => {
                Self(StatusCode::NOT_FOUND, e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store error in a request");
                Self(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The user behind the request's bearer token, if their role is one of `roles`.
async fn authorize(state: &AppState, headers: &HeaderMap, roles: &[Role]) -> ApiResult<User> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required".into(),
            )
        })?;
    let user = state
        .store
        .user_by_token(token)
        .await?
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown token".into()))?;
    if !roles.contains(&user.role) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("a {} token cannot do this", user.role.as_str()),
        ));
    }
    Ok(user)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/results", post(results))
        .route("/api/v1/queue", get(queue))
        .route("/api/v1/hypotheses/{id}", get(hypothesis))
        .route("/api/v1/hypotheses/{id}/verdict", post(verdict))
        .route("/api/v1/verdicts/{id}/retract", post(retract))
        .route("/api/v1/rounds", get(rounds))
        .route("/", get(web::home))
        .route("/login", get(web::login_page).post(web::login))
        .route("/logout", post(web::logout))
        .route("/queue", get(web::queue))
        .route("/review/{id}", post(web::review))
        .route("/review/{id}/undo", post(web::undo))
        .route("/dashboard", get(web::dashboard))
        .route("/versions/{a}/{b}", get(web::version_diff))
        .route("/audit", get(web::audit))
        .route("/metrics", get(web::metrics))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Results {
    results: Vec<WireVerdict>,
}

/// Assay callbacks: verdicts by idempotency key. Unknown keys and hypotheses not waiting at
/// that stage are rejected (and logged); the rest are kept; a repeated callback changes
/// nothing.
async fn results(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let user = authorize(&state, &headers, &[Role::Service, Role::Admin]).await?;
    let parsed: Results = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid results: {e}")))?;
    let mut groups: BTreeMap<(i64, i64), Vec<Verdict>> = BTreeMap::new();
    let mut rejected: Vec<serde_json::Value> = Vec::new();
    for r in parsed.results {
        let Some((round, hypothesis, stage)) = r.key.as_deref().and_then(parse_key) else {
            rejected.push(
                serde_json::json!({ "key": r.key, "error": "not a key `round:hypothesis:stage`" }),
            );
            continue;
        };
        match r.verdict(hypothesis, 0.0) {
            Ok(Some(mut v)) => {
                v.reviewer = Some(user.name.clone());
                groups.entry((round, stage)).or_default().push(v);
            }
            Ok(None) => rejected.push(serde_json::json!({ "key": r.key, "error": "no verdict" })),
            Err(why) => rejected.push(serde_json::json!({ "key": r.key, "error": why })),
        }
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for ((round, stage), verdicts) in groups {
        let rec = state.store.record_verdicts(round, stage, &verdicts).await?;
        accepted += rec.accepted;
        duplicates += rec.duplicates;
        for h in rec.rejected {
            rejected.push(serde_json::json!({
                "key": crate::plugin::idempotency_key(round, h, stage),
                "error": "no such hypothesis waiting at that stage",
            }));
        }
    }
    if !rejected.is_empty() {
        tracing::warn!(service = %user.name, rejected = %serde_json::Value::from(rejected.clone()), "callback answers rejected");
    }
    Ok(Json(serde_json::json!({
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
    })))
}

#[derive(Debug, Deserialize)]
struct QueueQuery {
    workflow: Option<String>,
    relation: Option<String>,
    entity: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let user = authorize(&state, &headers, &[Role::Reviewer, Role::Admin]).await?;
    let items = state
        .store
        .review_queue(
            &user.name,
            &QueueFilter {
                workflow: q.workflow,
                relation: q.relation,
                entity: q.entity,
                limit: q.limit.unwrap_or(50).clamp(1, 500),
                offset: q.offset.unwrap_or(0),
            },
        )
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn hypothesis(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers, &[Role::Reviewer, Role::Admin]).await?;
    Ok(Json(state.store.hypothesis_detail(id, 20).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictBody {
    verdict: Outcome,
    #[serde(default)]
    confidence: Option<f64>,
    #[serde(default)]
    comment: Option<String>,
}

async fn verdict(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<VerdictBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let user = authorize(&state, &headers, &[Role::Reviewer, Role::Admin]).await?;
    let confidence = body.confidence.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&confidence) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("confidence {confidence} is outside 0..=1"),
        ));
    }
    let done = state
        .store
        .record_review(&Review {
            hypothesis: id,
            reviewer: &user,
            verdict: body.verdict,
            confidence,
            comment: body.comment.as_deref(),
            client: "api",
        })
        .await?;
    Ok(Json(serde_json::to_value(done).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetractBody {
    reason: String,
}

async fn retract(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<RetractBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let user = authorize(&state, &headers, &[Role::Admin]).await?;
    if body.reason.trim().is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a retraction needs a reason".into(),
        ));
    }
    let done = state.store.retract(id, &body.reason, &user.name).await?;
    Ok(Json(serde_json::to_value(done).unwrap_or_default()))
}

async fn rounds(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(
        &state,
        &headers,
        &[Role::Reviewer, Role::Admin, Role::Service],
    )
    .await?;
    let rounds = state.store.rounds(None, 100).await?;
    Ok(Json(serde_json::json!({ "rounds": rounds })))
}

/// Serves until `stop` turns true.
pub async fn serve(
    store: Store,
    workflows: Option<std::path::PathBuf>,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Err(e) = store.ensure_review_indexes().await {
        return Err(std::io::Error::other(e.to_string()));
    }
    let app = router(AppState { store, workflows });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}
