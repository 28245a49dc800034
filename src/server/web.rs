//! The review web app and dashboard: server-rendered HTML (maud escapes every value), a
//! little JavaScript for the keyboard, sign-in by token into a session the server holds (its
//! id in an HttpOnly SameSite=Strict cookie), a keyed CSRF token in every form (the sign-in
//! form's included), role checks on every page.

use super::AppState;
use crate::plot::{Panel, Series};
use crate::plugin::Outcome;
use crate::store::{QueueFilter, Review, Role, RoundInfo, RoundState, User};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The sign-in cookie: a random session id the server holds (`sessions`), never the token.
const COOKIE: &str = "hg_session";
/// The sign-in form's cookie: a random value the form's CSRF token is derived from, so a form
/// posted from another site (which cannot read or send it) signs nobody in.
const LOGIN_COOKIE: &str = "hg_login";

/// The signed-in user and their CSRF token.
pub struct Session {
    pub user: User,
    /// The session id (the cookie's value).
    id: String,
    pub csrf: String,
    /// `csrf` as a hash: compared in constant time.
    csrf_mac: blake3::Hash,
}

/// A keyed hash (BLAKE3's keyed mode, a MAC) of `value` for `purpose`, with the server's
/// secret key (`server_secrets`): nobody without the key can derive it from the cookie.
fn mac(key: &[u8; 32], purpose: &str, value: &str) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(purpose.as_bytes());
    h.update(&[0]);
    h.update(value.as_bytes());
    h.finalize()
}

/// Whether the hex token `given` is `expected`: `blake3::Hash` compares in constant time.
fn hash_matches(expected: &blake3::Hash, given: Option<&str>) -> bool {
    given
        .and_then(|g| blake3::Hash::from_hex(g.trim()).ok())
        .is_some_and(|g| g == *expected)
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, and Secure when the server is reached
/// over HTTPS (`--public-url https://...`).
fn set_cookie(state: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}")
}

fn add_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Why a page cannot be shown.
pub enum Denied {
    Login,
    /// A request the page cannot serve as asked (a page number out of range).
    BadRequest(String),
    Forbidden(String),
    Error(String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Login => Redirect::to("/login").into_response(),
            Self::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                page(
                    "Bad request",
                    None,
                    html! { h1 { "Bad request" } p.error { (why) } },
                ),
            )
                .into_response(),
            Self::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                page(
                    "Forbidden",
                    None,
                    html! { h1 { "Forbidden" } p.error { (why) } },
                ),
            )
                .into_response(),
            Self::Error(why) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Error",
                    None,
                    html! { h1 { "Something went wrong" } p.error { (why) } },
                ),
            )
                .into_response(),
        }
    }
}

pub(super) async fn session(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
) -> Result<Session, Denied> {
    let id = cookie_value(headers, COOKIE).ok_or(Denied::Login)?;
    let user = state
        .store
        .session_user(&id)
        .await
        .map_err(|e| Denied::Error(e.to_string()))?
        .ok_or(Denied::Login)?;
    if !roles.contains(&user.role) {
        return Err(Denied::Forbidden(format!(
            "this page is not open to {} accounts",
            user.role.as_str()
        )));
    }
    let csrf_mac = mac(&state.csrf_key, "csrf", &id);
    Ok(Session {
        csrf: csrf_mac.to_hex().to_string(),
        csrf_mac,
        id,
        user,
    })
}

pub(super) fn check_csrf(s: &Session, given: Option<&str>) -> Result<(), Denied> {
    if hash_matches(&s.csrf_mac, given) {
        Ok(())
    } else {
        Err(Denied::Forbidden(
            "the form's CSRF token is missing or wrong: reload the page and try again".into(),
        ))
    }
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfe0ff;text-decoration:none} header form.signout{margin-left:auto}
header form.find input{width:16rem}
main{padding:1rem 1.2rem;max-width:1100px}
.card{background:#fff;border:1px solid #d8dce4;border-radius:8px;padding:.8rem 1rem;margin:.7rem 0}
.card.current{border-color:#3a6ff7;box-shadow:0 0 0 2px #3a6ff733}
.card.answered{opacity:.65} .card.stale{border-style:dashed}
.triple{font-size:1.1rem} .cat{color:#6b7385;font-size:.85rem} .rel{color:#3a6ff7;font-weight:600}
.meta{color:#444;font-size:.9rem;margin:.3rem 0} .changed{color:#b0451b;font-weight:600}
.badge{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.8rem;background:#eee}
.badge.stale{background:#fde2cf;color:#8a3b0f}
.evidence{font-size:.85rem;color:#333} .evidence li{margin:.1rem 0}
.progress{font-size:.85rem;color:#1b6b3a}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #d8dce4;padding:.25rem .5rem;font-size:.9rem}
.error{color:#a11}
.problem{color:#a11;font-size:.85rem;display:block}
form.ask label{display:block;margin:.35rem 0} form.ask textarea{width:100%;font-family:monospace}
.flag{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.8rem;background:#fde2cf;color:#8a3b0f}
dl.confirmation{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem} dl.confirmation dd{margin:0}
.paths{font-family:monospace;font-size:.8rem;color:#333;margin:0;padding-left:1rem}
kbd{border:1px solid #aaa;border-radius:3px;padding:0 .25rem;font-size:.8rem;background:#fff}
"#;

/// Keyboard review: j/k move, c/r/u answer (with the card's comment), z undoes the last
/// answer. Without JavaScript the buttons post the same forms.
const SCRIPT: &str = r#"
(function(){
  const cards=[...document.querySelectorAll('.card[data-id]')];
  if(!cards.length) return;
  let cur=0; const undo=[];
  const csrf=document.querySelector('meta[name=csrf]').content;
  function show(i){cards.forEach(c=>c.classList.remove('current'));cur=Math.max(0,Math.min(cards.length-1,i));cards[cur].classList.add('current');cards[cur].scrollIntoView({block:'nearest'});}
  function next(){for(let i=cur+1;i<cards.length;i++){if(!cards[i].classList.contains('answered')){show(i);return;}}}
  async function post(url,data){const f=new FormData();f.append('csrf',csrf);for(const k in data)f.append(k,data[k]);
    const r=await fetch(url,{method:'POST',body:new URLSearchParams(f),headers:{'Accept':'application/json'},credentials:'same-origin'});
    const j=await r.json().catch(()=>({error:'bad answer'}));if(!r.ok)throw new Error(j.error||r.status);return j;}
  async function answer(v){const c=cards[cur];if(c.classList.contains('answered'))return;
    const note=c.querySelector('textarea');
    try{const j=await post('/review/'+c.dataset.id,{verdict:v,comment:note?note.value:''});
      c.classList.add('answered');c.dataset.verdict=v;undo.push(cur);
      const p=c.querySelector('.progress');p.textContent='you: '+v+' · '+j.reviews+'/'+j.quorum+' reviews'+(j.escalated?' · reviewers disagree: escalated':'')+(j.others.length?' · others: '+j.others.map(o=>o.reviewer+' '+o.verdict).join(', '):'');
      next();}catch(e){c.querySelector('.progress').textContent='not recorded: '+e.message;}}
  async function back(){if(!undo.length)return;const i=undo.pop();const c=cards[i];
    try{await post('/review/'+c.dataset.id+'/undo',{});c.classList.remove('answered');delete c.dataset.verdict;
      c.querySelector('.progress').textContent='undone';show(i);}catch(e){c.querySelector('.progress').textContent='undo refused: '+e.message;}}
  document.addEventListener('keydown',e=>{if(e.target.tagName==='TEXTAREA'||e.target.tagName==='INPUT'||e.ctrlKey||e.metaKey||e.altKey)return;
    const k=e.key; if(k==='j')show(cur+1); else if(k==='k')show(cur-1);
    else if(k==='c')answer('confirmed'); else if(k==='r')answer('refuted'); else if(k==='u')answer('inconclusive');
    else if(k==='z')back(); else return; e.preventDefault();});
  document.querySelectorAll('form.answer').forEach(f=>f.addEventListener('submit',e=>{e.preventDefault();
    show(cards.indexOf(f.closest('.card')));answer(e.submitter?e.submitter.value:'inconclusive');}));
  show(0);
})();
"#;

pub(super) fn page(title: &str, s: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = s { meta name="csrf" content=(s.csrf); }
                title { (title) " · hypograph" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "hypograph" }
                    @if let Some(s) = s {
                        a href="/queue" { "Review queue" }
                        a href="/ask" { "Ask" }
                        @if s.user.role == Role::Admin {
                            a href="/dashboard" { "Dashboard" }
                            a href="/audit" { "Audit" }
                        }
                        form.find method="get" action="/entities" role="search" {
                            input type="search" name="q" placeholder="find an entity" aria-label="find an entity";
                            " " button type="submit" { "Find" }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span { (s.user.name) " (" (s.user.role.as_str()) ") " }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in form, with a fresh login cookie and the CSRF token derived from it.
pub async fn login_page(State(state): State<AppState>) -> Response {
    let nonce = crate::store::random_token();
    let csrf = mac(&state.csrf_key, "login", &nonce).to_hex().to_string();
    let mut resp = page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Token " input type="password" name="token" autocomplete="off" autofocus; }
                " " button type="submit" { "Sign in" }
            }
            p.cat { "Tokens come from " code { "hypograph user add NAME --role reviewer" } "." }
        },
    )
    .into_response();
    add_cookie(
        &mut resp,
        &set_cookie(&state, LOGIN_COOKIE, &nonce, "/login", 3600),
    );
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: Option<String>,
}

fn sign_in_refused(status: StatusCode, why: &str) -> Response {
    (
        status,
        page(
            "Sign in",
            None,
            html! { h1 { "Sign in" } p.error { (why) } a href="/login" { "Try again" } },
        ),
    )
        .into_response()
}

/// Signs in: only a form from this server's sign-in page (its login cookie and the CSRF
/// token derived from it), so another site cannot sign a visitor into its own account.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let from_our_form = cookie_value(&headers, LOGIN_COOKIE).is_some_and(|nonce| {
        hash_matches(&mac(&state.csrf_key, "login", &nonce), f.csrf.as_deref())
    });
    if !from_our_form {
        return sign_in_refused(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or did not come from this server: open the sign-in page again.",
        );
    }
    let token = f.token.trim();
    let user = match state.store.user_by_token(token).await {
        Ok(Some(u)) if u.role != Role::Service => u,
        Ok(_) => {
            return sign_in_refused(
                StatusCode::UNAUTHORIZED,
                "That token does not open the web app.",
            );
        }
        Err(e) => return Denied::Error(e.to_string()).into_response(),
    };
    let id = match state.store.start_session(&user, token).await {
        Ok(id) => id,
        Err(e) => return Denied::Error(e.to_string()).into_response(),
    };
    let mut resp = Redirect::to(if user.role == Role::Admin {
        "/dashboard"
    } else {
        "/queue"
    })
    .into_response();
    add_cookie(
        &mut resp,
        &set_cookie(&state, COOKIE, &id, "/", crate::store::SESSION_SECONDS),
    );
    add_cookie(
        &mut resp,
        &set_cookie(&state, LOGIN_COOKIE, "", "/login", 0),
    );
    resp
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// Signs out: the session ends on the server, not only in this browser.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match session(&state, &headers, &[Role::Reviewer, Role::Admin]).await {
        Ok(s) => s,
        Err(d) => return d.into_response(),
    };
    if let Err(d) = check_csrf(&s, f.csrf.as_deref()) {
        return d.into_response();
    }
    if let Err(e) = state.store.end_session(&s.id).await {
        return Denied::Error(e.to_string()).into_response();
    }
    let mut resp = Redirect::to("/login").into_response();
    add_cookie(&mut resp, &set_cookie(&state, COOKIE, "", "/", 0));
    resp
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session(&state, &headers, &[Role::Reviewer, Role::Admin]).await {
        Ok(s) if s.user.role == Role::Admin => Redirect::to("/dashboard").into_response(),
        Ok(_) => Redirect::to("/queue").into_response(),
        Err(d) => d.into_response(),
    }
}

#[derive(Deserialize)]
pub struct QueueParams {
    workflow: Option<String>,
    relation: Option<String>,
    entity: Option<String>,
    /// A number as text, so an overflowing one gets a message that names it.
    page: Option<String>,
}

const PAGE: i64 = 25;

/// The last page number whose offset, the page after it and one extra row all fit an `i64`.
const MAX_PAGE: i64 = i64::MAX / PAGE - 2;

/// The acquisition function a round ranked with, from its stored workflow text.
fn acquisition_of(spec: &str) -> String {
    serde_yaml::from_str::<serde_yaml::Value>(spec)
        .ok()
        .and_then(|v| {
            v.get("rank")?
                .get("acquisition")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "greedy".into())
}

fn name_of(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_owned()
    } else {
        name.to_owned()
    }
}

pub async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<QueueParams>,
) -> Result<Markup, Denied> {
    let s = session(&state, &headers, &[Role::Reviewer, Role::Admin]).await?;
    let err = |e: crate::store::StoreError| Denied::Error(e.to_string());
    let page_no = super::paging("page", q.page.as_deref(), MAX_PAGE)
        .map_err(Denied::BadRequest)?
        .unwrap_or(0);
    let empty = |v: &Option<String>| v.clone().filter(|x| !x.is_empty());
    let items = state
        .store
        .review_queue(
            &s.user.name,
            &QueueFilter {
                workflow: empty(&q.workflow),
                relation: empty(&q.relation),
                entity: empty(&q.entity),
                limit: PAGE + 1,
                offset: page_no * PAGE,
            },
        )
        .await
        .map_err(err)?;
    let more = items.len() as i64 > PAGE;
    let mut specs: BTreeMap<i64, String> = BTreeMap::new();
    let mut cards = Vec::new();
    for item in items.iter().take(PAGE as usize) {
        let h = &item.hypothesis;
        if let std::collections::btree_map::Entry::Vacant(slot) = specs.entry(h.round_id) {
            let r = state.store.round(h.round_id).await.map_err(err)?;
            slot.insert(acquisition_of(&r.spec));
        }
        let earlier: Vec<serde_json::Value> = state
            .store
            .verdicts(h.id)
            .await
            .map_err(err)?
            .into_iter()
            .filter(|v| v["stage"].as_i64().is_some_and(|st| st < h.stage))
            .collect();
        let mut head_n = state.store.neighbours(&h.head, 400).await.map_err(err)?;
        let mut tail_n = state.store.neighbours(&h.tail, 400).await.map_err(err)?;
        let paths = two_step_paths(&h.head, &h.tail, &head_n, &tail_n, 5);
        head_n.truncate(5);
        tail_n.truncate(5);
        cards.push((item, earlier, head_n, tail_n, paths));
    }
    let link = |p: i64| {
        let mut qs = vec![format!("page={p}")];
        for (k, v) in [
            ("workflow", &q.workflow),
            ("relation", &q.relation),
            ("entity", &q.entity),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                qs.push(format!("{k}={}", urlencode(v)));
            }
        }
        format!("/queue?{}", qs.join("&"))
    };
    let body = html! {
        h1 { "Review queue" }
        form.filters method="get" action="/queue" {
            input name="workflow" placeholder="workflow" value=[q.workflow.as_deref()];
            " " input name="relation" placeholder="relation" value=[q.relation.as_deref()];
            " " input name="entity" placeholder="entity key" value=[q.entity.as_deref()];
            " " button type="submit" { "Filter" }
        }
        p.cat { kbd{"j"} "/" kbd{"k"} " move · " kbd{"c"} " confirm · " kbd{"r"} " refute · " kbd{"u"} " unsure · " kbd{"z"} " undo the last answer" }
        @if cards.is_empty() { p { "Nothing waits for your review." } }
        @for (item, earlier, head_n, tail_n, paths) in &cards {
            @let h = &item.hypothesis;
            div.card.stale[item.stale] data-id=(h.id) {
                div.triple {
                    span.head { (name_of(&h.head_name, &h.head)) } " " span.cat { "[" (h.head_category) "]" }
                    " —" span.rel { (h.relation) } "→ "
                    span.tail { (name_of(&h.tail_name, &h.tail)) } " " span.cat { "[" (h.tail_category) "]" }
                    @if item.stale { " " span.badge.stale { "stale" } }
                }
                div.cat { (h.head) " · " (h.tail) " · " (item.workflow) " round " (item.round_number) " · stage " (item.stage_name) }
                div.meta {
                    "model probability " strong { (format!("{:.3}", h.score)) } " ± " (format!("{:.3}", h.spread))
                    @if let Some(f) = h.fresh_score {
                        " · " span.changed { "after retraining (model " (h.fresh_model.unwrap_or(0)) "): " (format!("{f:.3}")) " (" (format!("{:+.3}", f - h.score)) ")" }
                    }
                }
                div.meta {
                    "picked by " strong { (specs.get(&h.round_id).map(String::as_str).unwrap_or("?")) }
                    ": acquisition value " (format!("{:.3}", h.acquisition)) ", rank " (h.rank + 1)
                }
                @if !earlier.is_empty() {
                    ul.evidence {
                        @for v in earlier {
                            li { "stage " (v["stage"]) ": " strong { (v["verdict"].as_str().unwrap_or("?")) }
                                @if let Some(r) = v["evidence"]["rationale"].as_str() { " — " em { (r) } } }
                        }
                    }
                }
                ul.evidence {
                    @for n in head_n.iter().chain(tail_n.iter()) {
                        li { (n.direction) " " (n.relation) " " (name_of(&n.name, &n.entity)) }
                    }
                    @for p in paths { li { "path: " (h.head) " " (p[0]) " " (p[1]) " " (p[2]) " " (h.tail) } }
                }
                @let model_paths = crate::ask::paths::Path::list_of(h.model_paths.as_ref());
                @if !model_paths.is_empty() {
                    ul.evidence.model-paths {
                        @for p in &model_paths { li { "model path: " (p.to_string()) } }
                    }
                }
                div.progress { (item.reviews) "/" (item.quorum) " reviews so far" }
                form.answer method="post" action=(format!("/review/{}", h.id)) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    textarea name="comment" rows="1" cols="50" placeholder="comment (optional)" {}
                    " " button name="verdict" value="confirmed" { "Confirm (c)" }
                    " " button name="verdict" value="refuted" { "Refute (r)" }
                    " " button name="verdict" value="inconclusive" { "Unsure (u)" }
                }
            }
        }
        p {
            @if page_no > 0 { a href=(link(page_no - 1)) { "← newer" } " " }
            @if more { a href=(link(page_no + 1)) { "more →" } }
        }
        script { (PreEscaped(SCRIPT)) }
    };
    Ok(page("Review queue", Some(&s), body))
}

/// Paths head - x - tail through shared neighbours, as (head side, x, tail side) labels.
fn two_step_paths(
    head: &str,
    tail: &str,
    near_head: &[crate::plugin::Neighbour],
    near_tail: &[crate::plugin::Neighbour],
    limit: usize,
) -> Vec<[String; 3]> {
    let arrow = |n: &crate::plugin::Neighbour, from_head: bool| {
        // `out` from the head means head -> x; from the tail, x -> tail is `in` at the tail.
        let forward = (n.direction == "out") == from_head;
        format!("{} {}", n.relation, if forward { ">" } else { "<" })
    };
    let mut out = Vec::new();
    for a in near_head {
        if a.entity == head || a.entity == tail {
            continue;
        }
        for b in near_tail.iter().filter(|b| b.entity == a.entity) {
            out.push([arrow(a, true), a.entity.clone(), arrow(b, false)]);
            if out.len() == limit {
                return out;
            }
        }
    }
    out
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct VerdictForm {
    csrf: Option<String>,
    verdict: Outcome,
    comment: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn json_error(status: StatusCode, msg: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

pub async fn review(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<VerdictForm>,
) -> Response {
    let json = wants_json(&headers);
    let s = match session(&state, &headers, &[Role::Reviewer, Role::Admin]).await {
        Ok(s) => s,
        Err(Denied::Login) if json => {
            return json_error(StatusCode::UNAUTHORIZED, "sign in".into());
        }
        Err(d) => return d.into_response(),
    };
    if let Err(d) = check_csrf(&s, f.csrf.as_deref()) {
        return if json {
            json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token".into())
        } else {
            d.into_response()
        };
    }
    let agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    let client = format!("web; {agent}");
    let comment = f
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let done = state
        .store
        .record_review(&Review {
            hypothesis: id,
            reviewer: &s.user,
            verdict: f.verdict,
            confidence: 1.0,
            comment,
            client: &client,
        })
        .await;
    match done {
        Ok(r) => {
            if !json {
                return Redirect::to("/queue").into_response();
            }
            let others: Vec<serde_json::Value> = state
                .store
                .verdicts(id)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|v| {
                    v["stage"].as_i64() == Some(r.stage)
                        && v["reviewer"].as_str() != Some(s.user.name.as_str())
                })
                .map(|v| serde_json::json!({ "reviewer": v["reviewer"], "verdict": v["verdict"] }))
                .collect();
            let mut body = serde_json::to_value(&r).unwrap_or_default();
            if let Some(o) = body.as_object_mut() {
                o.insert("others".into(), serde_json::Value::Array(others));
            }
            axum::Json(body).into_response()
        }
        Err(crate::store::StoreError::Conflict(m)) => json_error(StatusCode::CONFLICT, m),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn undo(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match session(&state, &headers, &[Role::Reviewer, Role::Admin]).await {
        Ok(s) => s,
        Err(_) => return json_error(StatusCode::UNAUTHORIZED, "sign in".into()),
    };
    if check_csrf(&s, f.csrf.as_deref()).is_err() {
        return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token".into());
    }
    match state.store.undo_review(id, &s.user.name).await {
        Ok(r) if wants_json(&headers) => {
            axum::Json(serde_json::to_value(r).unwrap_or_default()).into_response()
        }
        Ok(_) => Redirect::to("/queue").into_response(),
        Err(crate::store::StoreError::Conflict(m)) => json_error(StatusCode::CONFLICT, m),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn metric(m: &serde_json::Value, k: &str) -> Option<f64> {
    m.get(k).and_then(serde_json::Value::as_f64)
}

/// Discoveries, MRR and ECE per round of one workflow.
fn plots(rounds: &[&RoundInfo]) -> String {
    let mut cum = 0.0;
    let mut disc = Vec::new();
    let mut mrr = Vec::new();
    let mut ece = Vec::new();
    for r in rounds.iter().filter(|r| r.state == RoundState::Done) {
        cum += metric(&r.metrics, "confirmed").unwrap_or(0.0);
        let x = r.number as f64;
        disc.push((x, cum));
        if let Some(m) = metric(&r.metrics, "test_mrr") {
            mrr.push((x, m));
        }
        if let Some(e) = r
            .metrics
            .pointer("/calibration/after/ece")
            .and_then(|v| v.as_f64())
        {
            ece.push((x, e));
        }
    }
    let panel = |title: &str, y: &str, points: Vec<(f64, f64)>, range| Panel {
        title: title.into(),
        x_label: "round".into(),
        y_label: y.into(),
        series: vec![Series {
            name: y.into(),
            points,
            markers: true,
        }],
        y_range: range,
    };
    let mut panels = vec![panel(
        "confirmed edges (cumulative)",
        "discoveries",
        disc,
        None,
    )];
    if !mrr.is_empty() {
        panels.push(panel("test MRR", "MRR", mrr, Some((0.0, 1.0))));
    }
    if !ece.is_empty() {
        panels.push(panel(
            "calibration error (ECE, validation)",
            "ECE",
            ece,
            None,
        ));
    }
    crate::plot::svg(&panels)
}

pub async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Markup, Denied> {
    let s = session(&state, &headers, &[Role::Admin]).await?;
    let err = |e: crate::store::StoreError| Denied::Error(e.to_string());
    let rounds = state.store.rounds(None, 500).await.map_err(err)?;
    let mut by_workflow: BTreeMap<&str, Vec<&RoundInfo>> = BTreeMap::new();
    for r in rounds.iter().rev() {
        by_workflow.entry(&r.workflow).or_default().push(r);
    }
    let mut stage_counts = BTreeMap::new();
    for r in rounds.iter().take(50) {
        stage_counts.insert(r.id, state.store.stage_counts(r.id).await.map_err(err)?);
    }
    let versions = state.store.log(Some(15)).await.map_err(err)?;
    let fires = state.store.fires(None, 10).await.map_err(err)?;
    let next = super::next_fires(&state);
    let body = html! {
        h1 { "Dashboard" }
        @if by_workflow.is_empty() { p { "No rounds yet." } }
        @for (w, rs) in &by_workflow {
            h2 { (w) }
            table {
                tr { th { "round" } th { "state" } th { "per stage" } th { "confirmed" } th { "refuted" } th { "test MRR" } th { "ECE" } th { "version" } }
                @for r in rs.iter().rev().take(20) {
                    tr {
                        td { (r.number) }
                        td { (r.state.as_str())
                             @if r.state == RoundState::Failed || r.attempts > 0 {
                                 @if let Some(e) = &r.error { br; span.error { (e) } } } }
                        td { @if let Some(c) = stage_counts.get(&r.id) {
                            @for ((st, status), n) in c { (format!("{st}:{status} {n}  ")) } } }
                        td { (metric(&r.metrics, "confirmed").unwrap_or(0.0)) }
                        td { (metric(&r.metrics, "refuted").unwrap_or(0.0)) }
                        td { @if let Some(m) = metric(&r.metrics, "test_mrr") { (format!("{m:.3}")) } }
                        td { @if let Some(e) = r.metrics.pointer("/calibration/after/ece").and_then(|v| v.as_f64()) { (format!("{e:.3}")) } }
                        td { @if let Some(v) = r.result_version { a href=(format!("/versions/{}/{v}", v - 1)) { "v" (v) } } }
                    }
                }
            }
            div.plot { (PreEscaped(plots(rs))) }
        }
        h2 { "Graph versions" }
        table {
            tr { th { "version" } th { "created" } th { "message" } th { "+" } th { "−" } th { "diff" } }
            @for v in &versions {
                tr { td { (v.id) } td { (v.created_at) } td { (v.message) } td { (v.n_added) } td { (v.n_removed) }
                     td { @if let Some(p) = v.parent_id { a href=(format!("/versions/{p}/{}", v.id)) { "diff" } } } }
            }
        }
        h2 { "Schedules" }
        @if next.is_empty() { p.cat { "No scheduled workflows known to this server." } }
        ul { @for (w, kind, t) in &next { li { (w) " (" (kind) "): next " (t) } } }
        @if !fires.is_empty() {
            table {
                tr { th { "workflow" } th { "slot" } th { "status" } th { "reason" } }
                @for f in &fires { tr { td { (f.workflow) } td { (f.scheduled_at) } td { (f.status) } td { (f.reason.clone().unwrap_or_default()) } } }
            }
        }
    };
    Ok(page("Dashboard", Some(&s), body))
}

pub async fn version_diff(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((a, b)): Path<(i64, i64)>,
) -> Result<Markup, Denied> {
    let s = session(&state, &headers, &[Role::Admin]).await?;
    let err = |e: crate::store::StoreError| Denied::Error(e.to_string());
    let d = state.store.diff(a, b).await.map_err(err)?;
    // Names as of the later version, which knows every entity either side names.
    let names = state.store.entity_names(a.max(b)).await.map_err(err)?;
    let end = |k: &str| match names.get(k) {
        Some(n) => html! { (k) " " span.cat { "(" (n) ")" } },
        None => html! { (k) },
    };
    let body = html! {
        h1 { "Version " (a) " → " (b) }
        p { (d.added.len()) " added, " (d.removed.len()) " removed" }
        table.diff {
            @for t in d.added.iter().take(500) { tr.added { td { "+" } td { (end(&t[0])) } td { (t[1]) } td { (end(&t[2])) } } }
            @for t in d.removed.iter().take(500) { tr.removed { td { "−" } td { (end(&t[0])) } td { (t[1]) } td { (end(&t[2])) } } }
        }
        @if !d.sources.is_empty() {
            h2 { "Edge sources" }
            table {
                @for c in d.sources.iter().take(500) {
                    tr {
                        td { @if c.added { "+" } @else { "−" } }
                        td { (c.source) } td { (c.triple[0]) } td { (c.triple[1]) } td { (c.triple[2]) }
                    }
                }
            }
        }
    };
    Ok(page("Diff", Some(&s), body))
}

pub async fn audit(State(state): State<AppState>, headers: HeaderMap) -> Result<Markup, Denied> {
    let s = session(&state, &headers, &[Role::Admin]).await?;
    let (verdicts, retractions) = state
        .store
        .audit(500)
        .await
        .map_err(|e| Denied::Error(e.to_string()))?;
    let accounts = state
        .store
        .user_events(500)
        .await
        .map_err(|e| Denied::Error(e.to_string()))?;
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let body = html! {
        h1 { "Audit" }
        h2 { "Verdicts" }
        table {
            tr { th{"id"} th{"hypothesis"} th{"stage"} th{"verdict"} th{"who"} th{"role"} th{"client"} th{"when"} th{"withdrawn"} th{"comment"} }
            @for v in &verdicts {
                tr { @for k in ["id","hypothesis","stage","verdict","reviewer","role","client","at","withdrawn","comment"] { td { (cell(&v[k])) } } }
            }
        }
        h2 { "Retractions and undos" }
        table {
            tr { th{"id"} th{"verdict"} th{"reason"} th{"by"} th{"version"} th{"outcome"} th{"when"} }
            @for r in &retractions {
                tr { @for k in ["id","verdict","reason","by","version","outcome","at"] { td { (cell(&r[k])) } } }
            }
        }
        h2 { "Accounts" }
        table {
            tr { th{"id"} th{"user"} th{"event"} th{"detail"} th{"by"} th{"when"} }
            @for e in &accounts {
                tr { td { (e.id) } td { (e.user) } td { (e.event) } td { (e.detail.clone().unwrap_or_default()) } td { (e.actor) } td { (e.at) } }
            }
        }
    };
    Ok(page("Audit", Some(&s), body))
}
