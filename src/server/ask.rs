//! `POST /api/v1/ask` and `POST /api/v1/ask/submit`, and what the `/ask` page shares with
//! them: the loaded model ([`AskCache`]: one `Asker`, reloaded when a newer model is trained,
//! one load at a time), answering on the blocking pool (one ask per user, a few at a time),
//! the server's workflows by name, and submitting an answer's rows into one of them.

use super::{AppState, authorize};
use crate::ask::{Answer, AskError, Asker, Origin, Problem, Prompt};
use crate::store::{Action, Store, StoreError, SubmitSummary};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

/// Why an ask route could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AskRouteError {
    #[error("no trained model yet: run `hypograph train` first")]
    NoModel,
    /// Problems with what was sent, by path (`edges[0][1]`, `pick`).
    #[error("the prompt has problems")]
    Problems(Vec<Problem>),
    /// Over a limit of `ask::limits`, by path.
    #[error("the prompt asks for more work than one ask may do")]
    TooLarge(Vec<Problem>),
    /// The user has an ask in flight already.
    #[error(
        "an ask by `{0}` is still being answered: one at a time per user; send this one when it is done"
    )]
    Busy(String),
    #[error("{0}")]
    UnknownWorkflow(String),
    #[error(
        "the answer was computed with model {asked}; model {current} is the newest now: ask again"
    )]
    ModelChanged { asked: i64, current: i64 },
    #[error("loading model {id}: {source}")]
    Load {
        id: i64,
        #[source]
        source: AskError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task panicked or was cancelled.
    #[error("{0}")]
    Task(String),
}

impl AskRouteError {
    /// The HTTP status that says what went wrong.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoModel | Self::ModelChanged { .. } => StatusCode::CONFLICT,
            Self::Problems(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UnknownWorkflow(_) => StatusCode::NOT_FOUND,
            Self::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            Self::Load { .. } | Self::Store(_) | Self::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see: server-side failures are logged and summarized.
    pub fn public_message(&self) -> String {
        match self {
            Self::Load { .. } | Self::Task(_) => {
                tracing::error!(error = %self, "ask failed");
                "internal error while answering (see the server's log)".into()
            }
            Self::Store(e) if !matches!(e, StoreError::Conflict(_)) => {
                tracing::error!(error = %e, "store error in an ask");
                "internal error".into()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AskRouteError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({ "error": self.public_message() });
        if let Self::Problems(problems) | Self::TooLarge(problems) = &self {
            body["problems"] = serde_json::to_value(problems).unwrap_or_default();
        }
        if let Self::Busy(_) = &self {
            return (status, [(axum::http::header::RETRY_AFTER, "1")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

/// A model ready for prompts, with what the page shows beside it.
pub struct LoadedAsker {
    pub asker: Asker,
    /// The categories of the model's graph, sorted (one empty string when it has none).
    pub categories: Vec<String>,
}

/// Model loads by this process's servers (each newer model is loaded once).
static LOADS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The number of model loads so far, for `/metrics`.
pub fn loads() -> Counter {
    LOADS.clone()
}

/// The server's loaded model. Each request compares the newest model's id (one indexed
/// query) with the loaded one's; on a change one request loads it (graph, names, checkpoint,
/// on the blocking pool) while the others keep answering with the model they had, or wait
/// for the load when there is none yet.
///
/// It also gates the answering: one ask in flight per user (a second one is answered 429
/// at once rather than queued, so one person cannot fill the queue), and at most
/// [`ask_slots`] answers computing at a time on the blocking pool, the others waiting for a
/// slot; together with `ask::limits` they bound the memory and the cores asks may take.
pub struct AskCache {
    /// Never held across an await.
    current: RwLock<Option<Arc<LoadedAsker>>>,
    /// Held by the one request that loads.
    loading: tokio::sync::Mutex<()>,
    /// Answers computing now.
    slots: Arc<tokio::sync::Semaphore>,
    /// Users with an ask in flight (never held across an await).
    busy: Arc<Mutex<HashSet<String>>>,
}

impl Default for AskCache {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            loading: tokio::sync::Mutex::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(ask_slots())),
            busy: Arc::default(),
        }
    }
}

/// Answers computed at once: one core is left to the async runtime (pages, `/healthz`), so
/// a burst of asks never starves the rest of the server; at least one.
pub fn ask_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// A user's ask in flight; the user may ask again when it is dropped.
struct UserTurn {
    busy: Arc<Mutex<HashSet<String>>>,
    user: String,
}

impl Drop for UserTurn {
    fn drop(&mut self) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(&self.user);
        }
    }
}

impl AskCache {
    /// `user`'s turn to ask, unless an ask of theirs is in flight.
    fn turn(&self, user: &str) -> Result<UserTurn, AskRouteError> {
        let mut busy = self
            .busy
            .lock()
            .map_err(|_| AskRouteError::Task("the ask gate is poisoned".into()))?;
        if !busy.insert(user.to_owned()) {
            return Err(AskRouteError::Busy(user.to_owned()));
        }
        Ok(UserTurn {
            busy: self.busy.clone(),
            user: user.to_owned(),
        })
    }

    fn current(&self) -> Option<Arc<LoadedAsker>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// The newest model, loaded.
    pub async fn get(
        &self,
        store: &Store,
        data_dir: &std::path::Path,
    ) -> Result<Arc<LoadedAsker>, AskRouteError> {
        let latest = store
            .latest_model()
            .await?
            .ok_or(AskRouteError::NoModel)?
            .id;
        let had = self.current();
        if let Some(c) = &had
            && c.asker.model_id == latest
        {
            return Ok(c.clone());
        }
        let _guard = match (self.loading.try_lock(), had) {
            (Ok(g), _) => g,
            // Someone is loading: answer with the model we have rather than queue.
            (Err(_), Some(old)) => return Ok(old),
            (Err(_), None) => self.loading.lock().await,
        };
        // The load we waited for may have been this very model.
        if let Some(c) = self.current()
            && c.asker.model_id == latest
        {
            return Ok(c);
        }
        let asker = Asker::load(store, data_dir, Some(latest))
            .await
            .map_err(|source| AskRouteError::Load { id: latest, source })?;
        let mut categories: Vec<String> = {
            let g = asker.graph();
            let set: std::collections::BTreeSet<&str> = (0..g.num_entities() as u32)
                .map(|e| g.category(e))
                .collect();
            set.into_iter().map(str::to_owned).collect()
        };
        if categories.is_empty() {
            categories.push(String::new());
        }
        LOADS.inc();
        tracing::info!(model = latest, "loaded a model for ask");
        let loaded = Arc::new(LoadedAsker { asker, categories });
        if let Ok(mut c) = self.current.write() {
            *c = Some(loaded.clone());
        }
        Ok(loaded)
    }
}

/// Answers `prompt` for `user` on the blocking pool, in their turn and a free slot of
/// `gate`. `at` prefixes the problems' paths (`prompt.` when the prompt sits inside a larger
/// body).
pub async fn answer(
    gate: &AskCache,
    user: &str,
    loaded: Arc<LoadedAsker>,
    prompt: Arc<Prompt>,
    at: &str,
) -> Result<Answer, AskRouteError> {
    let located = |problems: Vec<Problem>| -> Vec<Problem> {
        problems
            .into_iter()
            .map(|p| Problem::new(format!("{at}{}", p.path), p.message))
            .collect()
    };
    // The counts need no graph: an oversized prompt is refused before it takes the user's
    // turn or waits for a slot.
    crate::ask::limits::check(&prompt).map_err(|p| AskRouteError::TooLarge(located(p)))?;
    let turn = gate.turn(user)?;
    let slot = gate
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| AskRouteError::Task(format!("waiting for an ask slot: {e}")))?;
    // The turn and the slot go with the work: a client that hangs up frees neither before
    // the answer is done.
    let answered = tokio::task::spawn_blocking(move || {
        let answered = loaded.asker.answer(&prompt, &Origin::Json);
        drop((slot, turn));
        answered
    })
    .await
    .map_err(|e| AskRouteError::Task(format!("answering a prompt: {e}")))?;
    answered.map_err(|e| {
        let problems = located(e.problems());
        if e.is_too_large() {
            AskRouteError::TooLarge(problems)
        } else {
            AskRouteError::Problems(problems)
        }
    })
}

/// The workflows in the server's directory by name (file order), and the files that did
/// not load.
pub fn workflows(dir: Option<&Path>) -> (Vec<(String, PathBuf)>, Vec<String>) {
    let Some(dir) = dir else {
        return (Vec::new(), Vec::new());
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let (mut known, mut broken) = (Vec::new(), Vec::new());
    for p in files {
        match crate::workflow::load(&p) {
            Ok(l) => known.push((l.workflow.name.clone(), p)),
            Err(_) => broken.push(
                p.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        }
    }
    (known, broken)
}

/// The names of the server's workflows, read off the async threads.
pub async fn workflow_names(state: &AppState) -> Result<Vec<String>, AskRouteError> {
    let dir = state.workflows.clone();
    let (known, _) = tokio::task::spawn_blocking(move || workflows(dir.as_deref()))
        .await
        .map_err(|e| AskRouteError::Task(format!("reading workflows: {e}")))?;
    let mut names: Vec<String> = known.into_iter().map(|(n, _)| n).collect();
    names.dedup();
    Ok(names)
}

/// `name` if it is one of the server's workflows; otherwise an error naming them.
async fn known_workflow(state: &AppState, name: &str) -> Result<String, AskRouteError> {
    let dir = state.workflows.clone();
    let (known, broken) = tokio::task::spawn_blocking(move || workflows(dir.as_deref()))
        .await
        .map_err(|e| AskRouteError::Task(format!("reading workflows: {e}")))?;
    if known.iter().any(|(n, _)| n == name) {
        return Ok(name.to_owned());
    }
    let mut message = if state.workflows.is_none() {
        format!(
            "unknown workflow `{name}`: this server has no workflows directory (`serve --workflows DIR`)"
        )
    } else if known.is_empty() {
        format!("unknown workflow `{name}`: this server knows no workflows")
    } else {
        let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
        format!(
            "unknown workflow `{name}`; this server knows: {}",
            names.join(", ")
        )
    };
    if !broken.is_empty() {
        message.push_str(&format!(
            " (files that do not load: {}; `hypograph validate` says why)",
            broken.join(", ")
        ));
    }
    Err(AskRouteError::UnknownWorkflow(message))
}

/// What a submission asks for, beside the prompt.
pub struct SubmitRequest {
    pub prompt: Prompt,
    pub workflow: String,
    /// Ranks, 1-based; empty: every row.
    pub pick: Vec<usize>,
    pub assert: bool,
    /// The model the asker saw the answer from; a newer one refuses the submission.
    pub model: Option<i64>,
}

/// Recomputes the answer (the same for the same model) and submits its chosen rows into a
/// workflow of this server, as `asker`. `at` prefixes prompt problems' paths.
pub async fn submit(
    state: &AppState,
    req: SubmitRequest,
    asker: &str,
    at: &str,
) -> Result<(Answer, SubmitSummary), AskRouteError> {
    let workflow = known_workflow(state, &req.workflow).await?;
    let loaded = state.asker.get(&state.store, &state.data_dir).await?;
    if let Some(asked) = req.model
        && asked != loaded.asker.model_id
    {
        return Err(AskRouteError::ModelChanged {
            asked,
            current: loaded.asker.model_id,
        });
    }
    let prompt = Arc::new(req.prompt);
    let answer = answer(&state.asker, asker, loaded, prompt.clone(), at).await?;
    let s = crate::ask::submission(&prompt, &answer, &req.pick, req.assert, &workflow, asker)
        .map_err(|p| AskRouteError::Problems(vec![p]))?;
    let summary = state.store.submit_ask(&s).await.map_err(|e| match e {
        StoreError::EntityExists { index, .. } => AskRouteError::Problems(vec![Problem::new(
            format!("{at}entities[{index}].id"),
            e.to_string(),
        )]),
        e => e.into(),
    })?;
    tracing::info!(
        asker,
        workflow = %workflow,
        submission = summary.submission,
        pinned = summary.pinned.len(),
        "ask submitted"
    );
    Ok((answer, summary))
}

/// A JSON body as `T`, or a 400 naming where it went wrong.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AskRouteError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        AskRouteError::Problems(vec![Problem::new(path, e.into_inner().to_string())])
    })
}

/// `POST /api/v1/ask`: a prompt in, the answer out.
pub async fn ask(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match authorize(&state, &headers, Action::Ask).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let run = async {
        let prompt: Prompt = parse_body(&body)?;
        let loaded = state.asker.get(&state.store, &state.data_dir).await?;
        answer(&state.asker, &user.name, loaded, Arc::new(prompt), "").await
    };
    match run.await {
        Ok(a) => Json(a).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    prompt: Prompt,
    workflow: String,
    #[serde(default)]
    pick: Vec<usize>,
    #[serde(default)]
    assert: bool,
    /// The model whose answer the asker chose from (optional): refused when newer exists.
    #[serde(default)]
    model: Option<i64>,
}

/// `POST /api/v1/ask/submit`: the answer's chosen rows into a workflow's next round.
pub async fn submit_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match authorize(&state, &headers, Action::Ask).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let run = async {
        let b: SubmitBody = parse_body(&body)?;
        let req = SubmitRequest {
            prompt: b.prompt,
            workflow: b.workflow,
            pick: b.pick,
            assert: b.assert,
            model: b.model,
        };
        submit(&state, req, &user.name, "prompt.").await
    };
    match run.await {
        Ok((_, summary)) => Json(summary).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn a_loaded_asker_is_shared_across_threads() {
        assert_send_sync::<LoadedAsker>();
        assert_send_sync::<AskCache>();
    }

    #[test]
    fn body_errors_name_their_path() {
        let e = parse_body::<SubmitBody>(
            br#"{"prompt": {"entities": [{"id": "x", "colour": 1}]}, "workflow": "w"}"#,
        )
        .expect_err("unknown field");
        let AskRouteError::Problems(p) = e else {
            panic!("{e}")
        };
        assert_eq!(p[0].path, "prompt.entities[0].colour", "{p:?}");
        assert!(p[0].message.contains("colour"), "{p:?}");
        let e = parse_body::<Prompt>(b"{").expect_err("truncated");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn unknown_workflows_are_listed_by_the_names_that_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.yaml"), "name: [\n").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a workflow").expect("write");
        let (known, broken) = workflows(Some(dir.path()));
        assert!(known.is_empty());
        assert_eq!(broken, vec!["bad.yaml".to_owned()]);
        assert_eq!(workflows(None), (Vec::new(), Vec::new()));
    }
}
