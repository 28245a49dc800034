//! The REST API (axum): assay callbacks, the human review queue, verdicts, retractions and
//! `ask` (`server::ask`). Every request carries a bearer token; each route checks the token's
//! role. All data goes through `store`.

use crate::plugin::{Outcome, Verdict, WireVerdict, parse_key};
use crate::store::{Action, QueueFilter, Review, Role, Scope, Store, StoreError, User};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;

mod ask;
mod ask_page;
mod entities;
mod metrics;
mod web;

/// How a server is set up, beside its store and listener.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Workflow files, for the dashboard's next scheduled runs.
    pub workflows: Option<std::path::PathBuf>,
    /// `/metrics` answers without a token (for a scraper on a trusted network); otherwise it
    /// needs an admin's bearer token.
    pub metrics_public: bool,
    /// The data directory: where a model whose checkpoint this host lacks is materialised
    /// from the database (`cache/models/<id>`).
    pub data_dir: std::path::PathBuf,
    /// Where people reach the server (`--public-url`): an `https://` one marks the sign-in
    /// cookies `Secure`, as a TLS proxy in front of it serves them.
    pub public_url: Option<String>,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Workflow files, for the dashboard's next scheduled runs.
    pub workflows: Option<std::path::PathBuf>,
    pub metrics_public: bool,
    /// Where checkpoints are materialised (`ServeOptions::data_dir`).
    pub data_dir: std::path::PathBuf,
    /// The model `ask` answers with, loaded once per newer model.
    pub asker: std::sync::Arc<ask::AskCache>,
    /// The key CSRF tokens are derived with (`server_secrets`, made on the first start).
    pub csrf_key: [u8; 32],
    /// Cookies carry `Secure` (the server is reached over HTTPS).
    pub secure_cookies: bool,
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
        let mut resp = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self(StatusCode::CONFLICT, m),
            StoreError::Unauthorized(m) => Self(StatusCode::UNAUTHORIZED, m),
            StoreError::Forbidden(m) => Self(StatusCode::FORBIDDEN, m),
            StoreError::UnknownHypothesis(_) | StoreError::UnknownRound(_) => {
                Self(StatusCode::NOT_FOUND, e.to_string())
            }
            other if other.is_unavailable() => {
                tracing::warn!(error = %other, "the database is unavailable");
                Self(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; nothing was recorded: retry".into(),
                )
            }
            other => {
                tracing::error!(error = %other, "store error in a request");
                Self(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The user behind the request's bearer token, if their role may do `action`.
async fn authorize(state: &AppState, headers: &HeaderMap, action: Action) -> ApiResult<User> {
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
    Ok(state.store.authorize(token, action).await?)
}

/// A paging parameter: a whole number from 0 to `max`. Offsets are multiplied and added, so a
/// value past `max` (or past `i64`) is refused here with a message instead of overflowing.
pub(crate) fn paging(name: &str, raw: Option<&str>, max: i64) -> Result<Option<i64>, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(n) if (0..=max).contains(&n) => Ok(Some(n)),
        _ => {
            let shown: String = raw.chars().take(40).collect();
            Err(format!(
                "`{name}` must be a whole number from 0 to {max}, not `{shown}`"
            ))
        }
    }
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
        .route("/api/v1/ask", post(ask::ask))
        .route("/api/v1/ask/submit", post(ask::submit_route))
        .route("/api/v1/entities", get(entities::search_api))
        .route("/", get(web::home))
        .route("/login", get(web::login_page).post(web::login))
        .route("/logout", post(web::logout))
        .route("/queue", get(web::queue))
        .route("/review/{id}", post(web::review))
        .route("/review/{id}/undo", post(web::undo))
        .route("/dashboard", get(web::dashboard))
        .route("/versions/{a}/{b}", get(web::version_diff))
        .route("/audit", get(web::audit))
        .route("/entities", get(entities::search_page))
        .route("/entity", get(entities::entity_page))
        .route("/ask", get(ask_page::form).post(ask_page::answer))
        .route("/ask/submit", post(ask_page::submit))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Results {
    results: Vec<WireVerdict>,
}

/// Why callbacks may not answer `stage` of `round`, if they may not: only stages declared to
/// take them (an http stage with a `callback_url`) do. A human stage's quorum is for people.
async fn callback_refusal(store: &Store, round: i64, stage: i64) -> ApiResult<Option<String>> {
    Ok(match store.round_stage(round, stage).await? {
        Some(m) if m.callbacks => None,
        Some(m) if m.kind == "human" => Some(format!(
            "stage `{}` is a human review (quorum {}): reviewers answer it, not callbacks",
            m.name, m.quorum
        )),
        Some(m) => Some(format!(
            "stage `{}` ({}) does not take callbacks",
            m.name, m.kind
        )),
        None => Some(format!("round {round} has no stage {stage}")),
    })
}

/// Why a key in the old `round:hypothesis:stage` form answers nothing: callback keys are now
/// random per item. Said only about workflows the token may answer, so a service learns
/// nothing of the others.
async fn legacy_refusal(
    store: &Store,
    scopes: Option<&[Scope]>,
    (round, stage): (i64, i64),
) -> ApiResult<String> {
    let unknown = || "unknown key: answer with the `key` the hypothesis was sent with".to_owned();
    let workflow = match store.round(round).await {
        Ok(r) => r.workflow,
        Err(StoreError::UnknownRound(_)) => return Ok(unknown()),
        Err(e) => return Err(e.into()),
    };
    if scopes.is_some_and(|s| !s.iter().any(|s| s.workflow == workflow)) {
        return Ok(unknown());
    }
    Ok(callback_refusal(store, round, stage)
        .await?
        .unwrap_or_else(unknown))
}

/// Assay callbacks: verdicts by the callback key each item was sent with (random, so a
/// service cannot name items it was not sent). A service answers only the workflows (and
/// stages) it is scoped to: a key outside them refuses the whole request (403) and records
/// nothing. Unknown keys, stages that do not take callbacks, bad confidences or costs and
/// hypotheses not waiting at that stage are rejected key by key (and logged); the rest are
/// kept; a repeated callback changes nothing.
async fn results(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let user = authorize(&state, &headers, Action::PostResults).await?;
    let parsed: Results = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid results: {e}")))?;
    let scopes = match user.role {
        Role::Service => Some(state.store.user_scopes(user.id).await?),
        _ => None,
    };
    let mut groups: BTreeMap<(i64, i64), Vec<Verdict>> = BTreeMap::new();
    let mut keys: BTreeMap<(i64, i64, i64), String> = BTreeMap::new();
    let mut rejected: Vec<serde_json::Value> = Vec::new();
    for r in parsed.results {
        let Some(key) = r.key.as_deref() else {
            rejected
                .push(serde_json::json!({ "key": r.key, "error": "an answer needs its `key`" }));
            continue;
        };
        let Some((round, hypothesis, stage)) = state.store.callback_item(key).await? else {
            let why = match parse_key(key) {
                Some((round, _, stage)) => {
                    legacy_refusal(&state.store, scopes.as_deref(), (round, stage)).await?
                }
                None => "unknown key".to_owned(),
            };
            rejected.push(serde_json::json!({ "key": key, "error": why }));
            continue;
        };
        match r.verdict(hypothesis, 0.0) {
            Ok(Some(mut v)) => {
                v.reviewer = Some(user.name.clone());
                keys.insert((round, stage, hypothesis), key.to_owned());
                groups.entry((round, stage)).or_default().push(v);
            }
            Ok(None) => rejected.push(serde_json::json!({ "key": key, "error": "no verdict" })),
            Err(why) => rejected.push(serde_json::json!({ "key": key, "error": why })),
        }
    }
    if let Some(scopes) = &scopes {
        for &(round, stage) in groups.keys() {
            let workflow = state.store.round(round).await?.workflow;
            let name = state
                .store
                .round_stage(round, stage)
                .await?
                .map(|m| m.name)
                .unwrap_or_default();
            if !scopes.iter().any(|s| s.covers(&workflow, &name)) {
                let held: Vec<String> = scopes.iter().map(ToString::to_string).collect();
                tracing::warn!(service = %user.name, %workflow, stage = %name, "callback outside the service's scope refused");
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!(
                        "service `{}` does not serve stage `{name}` of workflow `{workflow}` (it serves: {}); nothing was recorded",
                        user.name,
                        if held.is_empty() {
                            "nothing; see `hypograph user scope`".to_owned()
                        } else {
                            held.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    let key_of = |round: i64, stage: i64, h: i64| {
        keys.get(&(round, stage, h))
            .cloned()
            .unwrap_or_else(|| crate::plugin::idempotency_key(round, h, stage))
    };
    let (mut accepted, mut duplicates) = (0, 0);
    for ((round, stage), verdicts) in groups {
        if let Some(why) = callback_refusal(&state.store, round, stage).await? {
            for v in &verdicts {
                rejected.push(serde_json::json!({
                    "key": key_of(round, stage, v.hypothesis),
                    "error": why,
                }));
            }
            continue;
        }
        let rec = state.store.record_verdicts(round, stage, &verdicts).await?;
        accepted += rec.accepted;
        duplicates += rec.duplicates;
        for h in rec.rejected {
            rejected.push(serde_json::json!({
                "key": key_of(round, stage, h),
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
    /// Numbers as text, so an overflowing one gets a message that names it (`paging`).
    limit: Option<String>,
    offset: Option<String>,
}

/// The largest queue offset: far beyond any queue, and still `offset + limit` fits an `i64`.
const MAX_OFFSET: i64 = i64::MAX / 2;

async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let user = authorize(&state, &headers, Action::Review).await?;
    let bad = |m| ApiError(StatusCode::BAD_REQUEST, m);
    let limit = paging("limit", q.limit.as_deref(), i64::MAX).map_err(bad)?;
    let offset = paging("offset", q.offset.as_deref(), MAX_OFFSET).map_err(bad)?;
    let items = state
        .store
        .review_queue(
            &user.name,
            &QueueFilter {
                workflow: q.workflow,
                relation: q.relation,
                entity: q.entity,
                limit: limit.unwrap_or(50).clamp(1, 500),
                offset: offset.unwrap_or(0),
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
    let user = authorize(&state, &headers, Action::Review).await?;
    // Admins see every verdict (as on the audit page); reviewers answer blind.
    let viewer = (user.role != Role::Admin).then_some(user.name.as_str());
    Ok(Json(state.store.hypothesis_detail(id, 20, viewer).await?))
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
    let user = authorize(&state, &headers, Action::Review).await?;
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
    let user = authorize(&state, &headers, Action::Retract).await?;
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
    let user = authorize(&state, &headers, Action::ReadRounds).await?;
    let mut rounds = state.store.rounds(None, 100).await?;
    // A service sees the rounds of the workflows it serves, no others.
    if user.role == Role::Service {
        let scopes = state.store.user_scopes(user.id).await?;
        rounds.retain(|r| scopes.iter().any(|s| s.workflow == r.workflow));
    }
    Ok(Json(serde_json::json!({ "rounds": rounds })))
}

/// Serves until `stop` turns true.
pub async fn serve(
    store: Store,
    options: ServeOptions,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Err(e) = store.ensure_review_indexes().await {
        return Err(std::io::Error::other(e.to_string()));
    }
    let csrf_key = store
        .server_secret("csrf")
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let secure_cookies = options
        .public_url
        .as_deref()
        .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"));
    let app = router(AppState {
        store,
        workflows: options.workflows,
        metrics_public: options.metrics_public,
        data_dir: options.data_dir,
        asker: std::sync::Arc::default(),
        csrf_key,
        secure_cookies,
    });
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
