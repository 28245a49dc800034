//! `/ask` in the review app: a form for one new entity (its claimed edges, a context, what to
//! predict), the answer as a table (probability, spread, evidence paths, a visible flag on
//! rows that rest on a prior alone), the entities it behaves like and the claims with the
//! prior's probability; ticked rows go into one of the server's workflows through
//! `/ask/submit`. Problems are shown beside the field they belong to. Reviewers and admins,
//! signed in with the cookie; both forms carry the CSRF token.

use super::AppState;
use super::ask::{self, AskRouteError, LoadedAsker, SubmitRequest};
use super::web::{Session, check_csrf, page, session};
use crate::ask::{Answer, Basis, NewEntity, Problem, Prompt};
use crate::store::{Role, SubmitSummary};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use std::collections::BTreeMap;
use std::sync::Arc;

const ROLES: &[Role] = &[Role::Reviewer, Role::Admin];

/// The form's fields, as typed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fields {
    entity: String,
    category: String,
    name: String,
    smiles: String,
    sequence: String,
    vector: String,
    /// One `HEAD RELATION TAIL` per line.
    edges: String,
    /// Known entities, separated by commas or spaces.
    context: String,
    relations: String,
    /// One `HEAD RELATION TAIL` with `?` per line.
    predict: String,
    top: String,
}

/// Where on the form a problem is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    /// Above the form: the prompt as a whole.
    General,
    Entity,
    Category,
    Name,
    Smiles,
    Sequence,
    Vector,
    Edges,
    Context,
    Relations,
    Predict,
    Top,
}

type Problems = BTreeMap<Field, Vec<String>>;

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Non-blank lines with their 1-based line numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

fn words(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn triple(line: &str) -> Option<[String; 3]> {
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [h, r, t] => Some([(*h).to_owned(), (*r).to_owned(), (*t).to_owned()]),
        _ => None,
    }
}

fn optional(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Fields {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| first(pairs, k).unwrap_or_default().to_owned();
        Self {
            entity: get("entity"),
            category: get("category"),
            name: get("name"),
            smiles: get("smiles"),
            sequence: get("sequence"),
            vector: get("vector"),
            edges: get("edges"),
            context: get("context"),
            relations: get("relations"),
            predict: get("predict"),
            top: get("top"),
        }
    }

    /// The form that would make `p` (its first entity).
    fn from_prompt(p: &Prompt) -> Self {
        let e = p.entities.first().cloned().unwrap_or_default();
        let join = |ts: &[[String; 3]]| {
            ts.iter()
                .map(|t| t.join(" "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        Self {
            entity: e.id,
            category: e.category,
            name: e.name,
            smiles: e.smiles.unwrap_or_default(),
            sequence: e.sequence.unwrap_or_default(),
            vector: e
                .vector
                .map(|v| v.iter().map(f32::to_string).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            edges: join(&p.edges),
            context: p.context.entities.join(", "),
            relations: p.context.relations.join(", "),
            predict: join(&p.predict),
            top: p.top.to_string(),
        }
    }

    /// The prompt the form describes, or what is wrong with its fields.
    fn prompt(&self) -> Result<Prompt, Problems> {
        let mut problems = Problems::new();
        let mut add = |f: Field, m: String| problems.entry(f).or_default().push(m);
        let vector = match optional(&self.vector) {
            None => None,
            Some(v) => {
                let parsed: Result<Vec<f32>, String> = words(&v)
                    .iter()
                    .enumerate()
                    .map(|(i, x)| match x.parse::<f32>() {
                        Ok(n) if n.is_finite() => Ok(n),
                        _ => Err(format!("value {} (`{x}`) is not a finite number", i + 1)),
                    })
                    .collect();
                match parsed {
                    Ok(v) => Some(v),
                    Err(m) => {
                        add(Field::Vector, m);
                        None
                    }
                }
            }
        };
        let mut triples = |text: &str, field: Field, hint: &str| -> Vec<[String; 3]> {
            let mut out = Vec::new();
            for (n, l) in lines(text) {
                match triple(l) {
                    Some(t) => out.push(t),
                    None => add(field, format!("line {n}: expected three words, {hint}")),
                }
            }
            out
        };
        let edges = triples(&self.edges, Field::Edges, "HEAD RELATION TAIL");
        let predict = triples(
            &self.predict,
            Field::Predict,
            "with ? for what to predict (`my-mol treats ?`)",
        );
        let top = match self.top.trim() {
            "" => 20,
            t => match t.parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    add(Field::Top, format!("`{t}` is not a whole number"));
                    20
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Prompt {
            entities: vec![NewEntity {
                id: self.entity.trim().to_owned(),
                category: self.category.clone(),
                name: self.name.trim().to_owned(),
                smiles: optional(&self.smiles),
                sequence: optional(&self.sequence),
                vector,
            }],
            edges,
            context: crate::ask::Context {
                entities: words(&self.context),
                relations: words(&self.relations),
            },
            predict,
            top,
        })
    }

    /// The problems of a prompt made from this form, by field (`edges[1]` -> the edges
    /// field, with its line).
    fn place(&self, problems: &[Problem]) -> Problems {
        let mut out = Problems::new();
        let index = |rest: &str| -> Option<usize> { rest.split(']').next()?.parse().ok() };
        let line_of = |text: &str, i: usize| lines(text).nth(i).map(|(n, _)| n);
        for p in problems {
            let path = p.path.as_str();
            let (field, prefix) = if let Some(rest) = path.strip_prefix("edges[") {
                let line = index(rest).and_then(|i| line_of(&self.edges, i));
                (Field::Edges, line.map(|n| format!("line {n}: ")))
            } else if let Some(rest) = path.strip_prefix("predict[") {
                let line = index(rest).and_then(|i| line_of(&self.predict, i));
                (Field::Predict, line.map(|n| format!("line {n}: ")))
            } else if path == "edges" {
                (Field::Edges, None)
            } else if path == "predict" {
                (Field::Predict, None)
            } else if path.starts_with("context.entities") || path == "context" {
                (Field::Context, None)
            } else if path.starts_with("context.relations") {
                (Field::Relations, None)
            } else if path == "top" {
                (Field::Top, None)
            } else if let Some(rest) = path.strip_prefix("entities") {
                let field = match rest.rsplit('.').next() {
                    Some("category") => Field::Category,
                    Some("name") => Field::Name,
                    Some("smiles") => Field::Smiles,
                    Some("sequence") => Field::Sequence,
                    Some("vector") => Field::Vector,
                    _ => Field::Entity,
                };
                (field, None)
            } else {
                (Field::General, None)
            };
            let text = match (prefix, field) {
                (Some(pre), _) => format!("{pre}{}", p.message),
                (None, Field::General) if !path.is_empty() => format!("{path}: {}", p.message),
                (None, _) => p.message.clone(),
            };
            out.entry(field).or_default().push(text);
        }
        out
    }
}

/// The answer beside the form, and where it may be submitted.
struct Shown<'a> {
    answer: &'a Answer,
    prompt: &'a Prompt,
    workflows: &'a [String],
}

fn problems_of(problems: &Problems, field: Field) -> Markup {
    html! {
        @for m in problems.get(&field).map(Vec::as_slice).unwrap_or_default() {
            span.problem data-field=(format!("{field:?}").to_lowercase()) { (m) }
        }
    }
}

fn basis_text(b: Basis) -> &'static str {
    match b {
        Basis::Edges => "its claimed edges",
        Basis::Features => "its features only (a prior, not evidence)",
        Basis::CategoryMean => "its category only (a prior, not evidence)",
    }
}

fn named(key: &str, name: &str) -> Markup {
    html! {
        @if name.is_empty() { span.key { (key) } }
        @else { span.name { (name) } " " span.cat { "(" (key) ")" } }
    }
}

fn form_markup(
    s: &Session,
    categories: &[String],
    f: &Fields,
    problems: &Problems,
    notice: Option<&str>,
) -> Markup {
    let text = |label: &str, name: &str, value: &str, field: Field, hint: &str| {
        html! {
            label { (label) " " input type="text" name=(name) value=(value) placeholder=(hint) size="50";
                (problems_of(problems, field)) }
        }
    };
    let area = |label: &str, name: &str, value: &str, field: Field, hint: &str| {
        html! {
            label { (label) br; textarea name=(name) rows="3" placeholder=(hint) { (value) }
                (problems_of(problems, field)) }
        }
    };
    html! {
        h1 { "Ask about a new entity" }
        @if let Some(n) = notice { p.error.notice { (n) } }
        @if !problems.is_empty() {
            p.error { "The prompt has problems; they are shown beside their fields." }
            (problems_of(problems, Field::General))
        }
        form.ask method="post" action="/ask" {
            input type="hidden" name="csrf" value=(s.csrf);
            (text("Entity id", "entity", &f.entity, Field::Entity, "my-mol"))
            label { "Category "
                select name="category" {
                    @for c in categories {
                        option value=(c) selected[*c == f.category] {
                            @if c.is_empty() { "(none: this graph has no categories)" } @else { (c) }
                        }
                    }
                }
                (problems_of(problems, Field::Category))
            }
            (text("Name", "name", &f.name, Field::Name, "a display name"))
            (text("SMILES", "smiles", &f.smiles, Field::Smiles, "for compounds"))
            (text("Sequence", "sequence", &f.sequence, Field::Sequence, "protein or nucleic acid"))
            (text("Vector", "vector", &f.vector, Field::Vector, "comma-separated numbers"))
            (area("Claimed edges, one HEAD RELATION TAIL per line", "edges", &f.edges, Field::Edges, "my-mol binds Gene::1017"))
            (text("Context entities", "context", &f.context, Field::Context, "known entities, comma-separated"))
            (text("Relations", "relations", &f.relations, Field::Relations, "relations to predict, comma-separated"))
            (area("Predict, one per line with ? (default: every relation)", "predict", &f.predict, Field::Predict, "my-mol treats ?"))
            label { "Rows " input type="number" name="top" value=(f.top) min="1" max=(crate::ask::MAX_TOP) placeholder="20";
                (problems_of(problems, Field::Top)) }
            button type="submit" { "Ask" }
        }
    }
}

fn answer_markup(s: &Session, shown: &Shown) -> Markup {
    let a = shown.answer;
    let prompt_json = serde_json::to_string(shown.prompt).unwrap_or_default();
    html! {
        h2 { "Answer" }
        p.meta { "model " (a.model) " on graph version " (a.graph_version) ": "
            (a.candidates) " candidates scored in " (format!("{:.0}", a.seconds * 1000.0)) " ms" }
        @for e in &a.entities {
            div.card.entity {
                div { strong { (e.id) } @if !e.name.is_empty() { " " (e.name) }
                    @if !e.category.is_empty() { " " span.cat { "[" (e.category) "]" } } }
                div.meta { "placed on " (basis_text(e.basis)) ", " (e.edges) " claimed edge(s)"
                    @if let Some(k) = &e.prior { ", prior from " (k) } }
                @if !e.similar.is_empty() {
                    div.meta.similar { "behaves like: "
                        @for (i, x) in e.similar.iter().enumerate() {
                            @if i > 0 { ", " }
                            (named(&x.id, &x.name)) " " (format!("{:.2}", x.similarity))
                        }
                    }
                }
            }
        }
        @if !a.claims.is_empty() {
            h3 { "Your claims" }
            p.cat { "Not graph facts until reviewed or asserted; the probability the model gave them before it was told." }
            table.claims {
                tr { th { "claim" } th { "prior probability" } th { "spread" } }
                @for c in &a.claims {
                    tr { td { (named(&c.head, &c.head_name)) " " span.rel { (c.relation) } " " (named(&c.tail, &c.tail_name)) }
                         td { (format!("{:.3}", c.prior_probability)) } td { (format!("{:.3}", c.prior_spread)) } }
                }
            }
        }
        h3 { "Predictions" }
        form.submit method="post" action="/ask/submit" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="prompt" value=(prompt_json);
            input type="hidden" name="model" value=(a.model);
            table.rows {
                tr { th { "submit" } th { "rank" } th { "triple" } th { "probability" } th { "spread" } th { "evidence (* your claims)" } }
                @for r in &a.rows {
                    tr.row data-rank=(r.rank) {
                        td { input type="checkbox" name="pick" value=(r.rank); }
                        td { (r.rank) }
                        td.triple { (named(&r.head, &r.head_name)) " " span.rel { (r.relation) } " " (named(&r.tail, &r.tail_name))
                            @if r.no_edges { " " span.flag { "no edges: prior only" } } }
                        td { (format!("{:.3}", r.probability)) }
                        td { (format!("{:.3}", r.spread)) }
                        td { @if !r.paths.is_empty() { ul.paths { @for p in &r.paths { li { (p.to_string()) } } } } }
                    }
                }
            }
            @if a.rows.is_empty() { p { "No candidate fits." } }
            @if shown.workflows.is_empty() {
                p.cat { "This server knows no workflows to submit to (" code { "serve --workflows DIR" } ")." }
            } @else {
                p {
                    label { "Workflow "
                        select name="workflow" { @for w in shown.workflows { option value=(w) { (w) } } } }
                    " "
                    label { input type="checkbox" name="assert" value="on";
                        " assert my edges (add them to the graph as facts named as mine, instead of having them reviewed)" }
                    " " button type="submit" { "Submit ticked rows" }
                }
            }
        }
    }
}

fn ask_page(
    s: &Session,
    categories: &[String],
    f: &Fields,
    problems: &Problems,
    shown: Option<&Shown>,
    notice: Option<&str>,
) -> Markup {
    let body = html! {
        (form_markup(s, categories, f, problems, notice))
        @if let Some(shown) = shown { (answer_markup(s, shown)) }
    };
    page("Ask", Some(s), body)
}

/// A page that says what went wrong, with the status that says it too.
fn error_page(s: &Session, title: &str, e: &AskRouteError) -> Response {
    let message = e.public_message();
    let body = html! {
        h1 { (title) }
        @if let AskRouteError::Problems(ps) | AskRouteError::TooLarge(ps) = e {
            ul { @for p in ps { li.error { @if !p.path.is_empty() { code { (p.path) } ": " } (p.message) } } }
        } @else {
            p.error { (message) }
        }
        p { a href="/ask" { "Back to the form" } }
    };
    (e.status(), page("Ask", Some(s), body)).into_response()
}

/// The page without a model: nothing to ask yet.
fn no_model(s: &Session, e: &AskRouteError) -> Response {
    let body = html! { h1 { "Ask about a new entity" } p.error { (e.public_message()) } };
    (e.status(), page("Ask", Some(s), body)).into_response()
}

async fn loaded(state: &AppState, s: &Session) -> Result<Arc<LoadedAsker>, Response> {
    state
        .asker
        .get(&state.store, &state.data_dir)
        .await
        .map_err(|e| no_model(s, &e))
}

/// `GET /ask`: the empty form.
pub async fn form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let s = match session(&state, &headers, ROLES).await {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    let l = match loaded(&state, &s).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let f = Fields {
        top: "20".into(),
        ..Fields::default()
    };
    ask_page(&s, &l.categories, &f, &Problems::new(), None, None).into_response()
}

/// The session behind a form post, with its CSRF token checked.
async fn signed_form(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Session, Response> {
    let s = session(state, headers, ROLES)
        .await
        .map_err(IntoResponse::into_response)?;
    check_csrf(&s, first(pairs, "csrf")).map_err(IntoResponse::into_response)?;
    Ok(s)
}

/// `POST /ask`: the form's prompt answered, or its problems beside their fields.
pub async fn answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let s = match signed_form(&state, &headers, &pairs).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = match loaded(&state, &s).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let f = Fields::from_pairs(&pairs);
    let prompt = match f.prompt() {
        Ok(p) => p,
        Err(problems) => {
            return (
                StatusCode::BAD_REQUEST,
                ask_page(&s, &l.categories, &f, &problems, None, None),
            )
                .into_response();
        }
    };
    let workflows = match ask::workflow_names(&state).await {
        Ok(w) => w,
        Err(e) => return error_page(&s, "Not answered", &e),
    };
    show_answer(&state, &s, &l, &f, prompt, &workflows, None, StatusCode::OK).await
}

#[allow(clippy::too_many_arguments)]
async fn show_answer(
    state: &AppState,
    s: &Session,
    l: &Arc<LoadedAsker>,
    f: &Fields,
    prompt: Prompt,
    workflows: &[String],
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    let prompt = Arc::new(prompt);
    match ask::answer(&state.asker, &s.user.name, l.clone(), prompt.clone(), "").await {
        Ok(answer) => {
            let shown = Shown {
                answer: &answer,
                prompt: &prompt,
                workflows,
            };
            (
                status,
                ask_page(s, &l.categories, f, &Problems::new(), Some(&shown), notice),
            )
                .into_response()
        }
        Err(e) => match &e {
            AskRouteError::Problems(ps) | AskRouteError::TooLarge(ps) => (
                e.status(),
                ask_page(s, &l.categories, f, &f.place(ps), None, notice),
            )
                .into_response(),
            _ => error_page(s, "Not answered", &e),
        },
    }
}

/// `POST /ask/submit`: the ticked rows of the answer into a workflow; a confirmation.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let s = match signed_form(&state, &headers, &pairs).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let bad = |path: &str, m: String| {
        error_page(
            &s,
            "Not submitted",
            &AskRouteError::Problems(vec![Problem::new(path, m)]),
        )
    };
    let prompt: Prompt = match serde_json::from_str(first(&pairs, "prompt").unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return bad("prompt", format!("not a prompt: {e}")),
    };
    let mut pick = Vec::new();
    for (k, v) in &pairs {
        if k == "pick" {
            match v.parse::<usize>() {
                Ok(n) => pick.push(n),
                Err(_) => return bad("pick", format!("`{v}` is not a rank")),
            }
        }
    }
    if pick.is_empty() {
        return bad("pick", "tick at least one row to submit".into());
    }
    let model = match first(&pairs, "model").map(str::parse::<i64>) {
        Some(Ok(m)) => Some(m),
        None => None,
        Some(Err(_)) => return bad("model", "not a model id".into()),
    };
    let workflow = first(&pairs, "workflow").unwrap_or_default().to_owned();
    let req = SubmitRequest {
        prompt: prompt.clone(),
        workflow: workflow.clone(),
        pick,
        assert: first(&pairs, "assert").is_some_and(|v| v == "on"),
        model,
    };
    match ask::submit(&state, req, &s.user.name, "").await {
        Ok((_, summary)) => confirmation(&s, &workflow, &summary).into_response(),
        Err(AskRouteError::ModelChanged { asked, current }) => {
            // Ranks of the old answer mean nothing now: show the new one to choose from.
            let l = match loaded(&state, &s).await {
                Ok(l) => l,
                Err(r) => return r,
            };
            let workflows = ask::workflow_names(&state).await.unwrap_or_default();
            let notice = format!(
                "Nothing was submitted: model {current} was trained after the answer you chose from (model {asked}). Here is its answer; tick the rows again."
            );
            let f = Fields::from_prompt(&prompt);
            show_answer(
                &state,
                &s,
                &l,
                &f,
                prompt,
                &workflows,
                Some(&notice),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => error_page(&s, "Not submitted", &e),
    }
}

fn confirmation(s: &Session, workflow: &str, summary: &SubmitSummary) -> Markup {
    let body = html! {
        h1 { "Submitted" }
        dl.confirmation {
            dt { "submission" } dd.submission { (summary.submission) }
            dt { "workflow" } dd { (workflow) }
            dt { "graph version" }
            dd.version {
                @match summary.version {
                    Some(v) => { (v) " (" (summary.entities_added) " new entities, " (summary.asserted_added) " asserted edges)" }
                    None => { "none: nothing new to add to the graph" }
                }
            }
            dt { "pinned" } dd.pinned { (summary.pinned.len()) " row(s) wait for the next round of " (workflow) }
        }
        @if !summary.already_known.is_empty() {
            h2 { "Not submitted" }
            table.not-submitted {
                tr { th { "triple" } th { "reason" } }
                @for k in &summary.already_known {
                    tr { td { (k.triple[0]) " " span.rel { (k.triple[1]) } " " (k.triple[2]) } td { (k.reason) } }
                }
            }
        }
        p { a href="/ask" { "Ask again" } }
    };
    page("Submitted", Some(s), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_form_becomes_a_prompt_and_back() {
        let f = Fields::from_pairs(&pairs(&[
            ("entity", " new:x "),
            ("category", "Compound"),
            ("name", "X"),
            ("vector", "1, 2.5"),
            ("edges", "new:x isa entity\n\n  new:x location_of alga \n"),
            ("context", "alga, entity"),
            ("relations", "isa"),
            ("predict", "new:x isa ?"),
            ("top", "7"),
        ]));
        let p = f.prompt().expect("a prompt");
        assert_eq!(p.entities[0].id, "new:x");
        assert_eq!(p.entities[0].vector, Some(vec![1.0, 2.5]));
        assert_eq!(p.entities[0].smiles, None);
        assert_eq!(p.edges.len(), 2);
        assert_eq!(p.edges[1], ["new:x", "location_of", "alga"]);
        assert_eq!(p.context.entities, ["alga", "entity"]);
        assert_eq!(p.top, 7);
        assert_eq!(Fields::from_prompt(&p).prompt().expect("again"), p);
    }

    #[test]
    fn field_problems_name_the_field_and_line() {
        let f = Fields::from_pairs(&pairs(&[
            ("edges", "a b c\n\noops\n"),
            ("vector", "1, x"),
            ("top", "many"),
        ]));
        let p = f.prompt().expect_err("problems");
        assert_eq!(
            p[&Field::Edges],
            ["line 3: expected three words, HEAD RELATION TAIL"]
        );
        assert!(p[&Field::Vector][0].contains("value 2 (`x`)"), "{p:?}");
        assert!(p.contains_key(&Field::Top));

        let f = Fields::from_pairs(&pairs(&[("edges", "\na b c\nd e f")]));
        let placed = f.place(&[
            Problem::new("edges[1][1]", "unknown relation `e`"),
            Problem::new("entities[0].category", "unknown category"),
            Problem::new("entities[0].id", "an entity needs an id"),
            Problem::new("context.relations[0]", "unknown relation"),
            Problem::new("pick", "row 9"),
        ]);
        assert_eq!(placed[&Field::Edges], ["line 3: unknown relation `e`"]);
        assert_eq!(placed[&Field::Category], ["unknown category"]);
        assert_eq!(placed[&Field::Entity], ["an entity needs an id"]);
        assert_eq!(placed[&Field::Relations], ["unknown relation"]);
        assert_eq!(placed[&Field::General], ["pick: row 9"]);
    }
}
