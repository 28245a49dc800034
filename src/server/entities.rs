//! Finding entities: the search box's results page, an entity's page (its live edges, named
//! and paged) and `GET /api/v1/entities`.

use super::web::{Denied, page, session, urlencode};
use super::{ApiError, ApiResult, AppState, authorize, paging};
use crate::store::{Action, EntityHit, Role, StoreError};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;

/// Hits on a results page.
const HITS: i64 = 50;
/// The most hits the API returns at once.
const MAX_LIMIT: i64 = 200;
/// Edges on a page of an entity.
const EDGES: i64 = 50;
/// The last page whose offset, and the row past it, fit an `i64`.
const MAX_PAGE: i64 = i64::MAX / EDGES - 2;

/// A search hit with its number of live edges.
#[derive(Debug, serde::Serialize)]
struct Found {
    #[serde(flatten)]
    hit: EntityHit,
    degree: i64,
}

async fn find(state: &AppState, text: &str, limit: i64) -> Result<Vec<Found>, StoreError> {
    let hits = state.store.search_entities(text, limit).await?;
    let keys: Vec<&str> = hits.iter().map(|h| h.key.as_str()).collect();
    let degrees = state.store.entity_degrees(&keys).await?;
    Ok(hits
        .into_iter()
        .map(|hit| Found {
            degree: degrees.get(&hit.key).copied().unwrap_or(0),
            hit,
        })
        .collect())
}

fn entity_link(key: &str) -> String {
    format!("/entity?key={}", urlencode(key))
}

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
}

/// `GET /entities?q=`: the search box's results.
pub async fn search_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<SearchParams>,
) -> Result<Markup, Denied> {
    let s = session(&state, &headers, &[Role::Reviewer, Role::Admin]).await?;
    let q = p.q.as_deref().map(str::trim).unwrap_or("");
    let found = find(&state, q, HITS)
        .await
        .map_err(|e| Denied::Error(e.to_string()))?;
    let body = html! {
        h1 { "Entities" }
        form.find method="get" action="/entities" {
            input type="search" name="q" value=(q) placeholder="id or any part of a name";
            " " button type="submit" { "Search" }
        }
        @if q.is_empty() {
            p.cat { "Type an id or any part of a name (three characters or more match anywhere)." }
        } @else if found.is_empty() {
            p.none { "No entity matches " strong { (q) } "." }
        } @else {
            table.hits {
                tr { th { "id" } th { "name" } th { "category" } th { "edges" } }
                @for f in &found {
                    tr.hit {
                        td.key { a href=(entity_link(&f.hit.key)) { (f.hit.key) } }
                        td.name { (f.hit.name) }
                        td { (f.hit.category) }
                        td { (f.degree) }
                    }
                }
            }
            @if found.len() as i64 == HITS { p.cat { "The first " (HITS) " matches; type more to narrow." } }
        }
    };
    Ok(page("Entities", Some(&s), body))
}

#[derive(Deserialize)]
pub struct EntityParams {
    key: Option<String>,
    /// A number as text, so an overflowing one gets a message that names it.
    page: Option<String>,
}

/// `GET /entity?key=&page=`: one entity and a page of its live edges, both ends named.
pub async fn entity_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<EntityParams>,
) -> Result<Markup, Denied> {
    let s = session(&state, &headers, &[Role::Reviewer, Role::Admin]).await?;
    let err = |e: StoreError| Denied::Error(e.to_string());
    let key = p.key.as_deref().unwrap_or("");
    let page_no = paging("page", p.page.as_deref(), MAX_PAGE)
        .map_err(Denied::BadRequest)?
        .unwrap_or(0);
    let Some(entity) = state.store.entity(key).await.map_err(err)? else {
        let body = html! {
            h1 { "No such entity" }
            p.error { "The graph has no entity " code { (key) } "." }
            p { a href=(format!("/entities?q={}", urlencode(key))) { "Search for it" } }
        };
        return Ok(page("Entity", Some(&s), body));
    };
    let degree = state
        .store
        .entity_degrees(&[key])
        .await
        .map_err(err)?
        .get(key)
        .copied()
        .unwrap_or(0);
    let mut edges = state
        .store
        .entity_edges(key, EDGES + 1, page_no * EDGES)
        .await
        .map_err(err)?;
    let more = edges.len() as i64 > EDGES;
    edges.truncate(EDGES as usize);
    let link = |n: i64| format!("{}&page={n}", entity_link(key));
    let end = |k: &str, name: &str| {
        html! {
            @if k == key { strong { (k) } } @else { a href=(entity_link(k)) { (k) } }
            @if !name.is_empty() { " " span.cat { "(" (name) ")" } }
        }
    };
    let body = html! {
        h1.entity { (if entity.name.is_empty() { &entity.key } else { &entity.name }) }
        p.meta { code { (entity.key) } " · " (entity.category) " · " (degree) " live edges" }
        @if edges.is_empty() && page_no == 0 { p { "No live edges." } }
        @if !edges.is_empty() {
            p.cat { "edges " (page_no * EDGES + 1) "–" (page_no * EDGES + edges.len() as i64) " of " (degree) }
            table.edges {
                tr { th { "head" } th { "relation" } th { "tail" } }
                @for e in &edges {
                    tr.edge { td { (end(&e.head, &e.head_name)) } td.rel { (e.relation) } td { (end(&e.tail, &e.tail_name)) } }
                }
            }
        }
        p {
            @if page_no > 0 { a href=(link(page_no - 1)) { "← previous" } " " }
            @if more { a href=(link(page_no + 1)) { "more →" } }
        }
    };
    Ok(page(&entity.key, Some(&s), body))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    /// A number as text, so a bad one gets a message that names it.
    limit: Option<String>,
}

/// `GET /api/v1/entities?q=&limit=`: entities whose id or name contains `q`, with their
/// number of live edges; a reviewer's read (`Action::Review`), like the queue.
pub async fn search_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<SearchQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&state, &headers, Action::Review).await?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let q = p.q.as_deref().map(str::trim).unwrap_or("");
    if q.is_empty() {
        return Err(bad("`q` (the text to find) is required".into()));
    }
    let limit = match paging("limit", p.limit.as_deref(), MAX_LIMIT).map_err(bad)? {
        Some(0) => return Err(bad(format!("`limit` must be from 1 to {MAX_LIMIT}"))),
        Some(n) => n,
        None => 20,
    };
    let found = find(&state, q, limit).await?;
    Ok(Json(serde_json::json!({ "q": q, "entities": found })))
}
