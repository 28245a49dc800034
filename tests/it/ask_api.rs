//! `ask` over HTTP against the real server: `POST /api/v1/ask` and `/api/v1/ask/submit`
//! (roles, problems by path, one model load per new model, submissions into a workflow of the
//! server's directory), and the `/ask` page's forms (CSRF, problems beside their field,
//! escaping).

use crate::support::{Env, Server, data, get_text, mt_runtime, post_json, request, user};
use serde_json::{Value, json};

/// Imports UMLS, adds users, writes workflow `w` into `wf/`; returns the tokens
/// (reviewer, admin, service).
fn setup(env: &Env) -> (String, String, String) {
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    env.write(
        "wf/w.yaml",
        format!(
            "name: w\ngraph:\n  import: {}\n\
             model:\n  dim: 8\n  epochs: 2\n  ensemble: 1\n  calibration: none\n\
             rank:\n  batch: 10\n\
             stages:\n  - name: experts\n    plugin: human\n    quorum: 1\n",
            data("umls/train.txt").display()
        ),
    );
    (
        user(env, "alice", "reviewer"),
        user(env, "carol", "admin"),
        user(env, "lab", "service"),
    )
}

fn train(env: &Env) {
    env.ok(&["train", "--epochs", "5", "--ensemble", "2", "--dim", "16"]);
}

/// New entity `new:x` with two claimed edges; every relation predicted.
fn prompt(name: &str) -> Value {
    prompt_for("new:x", name)
}

fn prompt_for(id: &str, name: &str) -> Value {
    json!({
        "entities": [{ "id": id, "name": name }],
        "edges": [[id, "isa", "entity"], [id, "location_of", "alga"]],
        "top": 8,
    })
}

fn metric(base: &str, admin: &str, name: &str) -> Option<f64> {
    let (status, text) = get_text(&format!("{base}/metrics"), Some(admin));
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn problems(body: &Value) -> Vec<(String, String)> {
    body["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["path"].as_str().unwrap_or_default().to_owned(),
                        p["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ask_and_submit_through_the_api() {
    let env = Env::new();
    let (alice, carol, lab) = setup(&env);
    let wf = env.path("wf");
    let server = Server::start(&env, &["--workflows", wf.to_str().expect("path")]);
    let ask = format!("{}/api/v1/ask", server.base);
    let submit = format!("{}/api/v1/ask/submit", server.base);

    // No model yet: a clear conflict, not a 500.
    let (status, body) = post_json(&ask, &alice, &prompt("X"));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no trained model")),
        "{body}"
    );

    // A model trained while the server runs is picked up, and loaded once for requests
    // that arrive together (from six users: one user has one ask in flight).
    train(&env);
    let askers: Vec<String> = (0..6)
        .map(|i| user(&env, &format!("asker{i}"), "reviewer"))
        .collect();
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = askers
            .iter()
            .map(|token| {
                let ask = &ask;
                s.spawn(move || post_json(ask, token, &prompt("X")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread"))
            .collect()
    });
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["model"], 1, "{body}");
    }
    assert_eq!(
        metric(&server.base, &carol, "hypograph_ask_model_loads_total"),
        Some(1.0)
    );

    // The answer: rows by probability, claims with the prior's probability, evidence paths
    // for an entity placed on its edges; the same for the same model.
    let a = &answers[0].1;
    let rows = a["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 8, "{a}");
    let probs: Vec<f64> = rows
        .iter()
        .map(|r| r["probability"].as_f64().expect("probability"))
        .collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{probs:?}");
    let ranks: Vec<i64> = rows.iter().filter_map(|r| r["rank"].as_i64()).collect();
    assert_eq!(ranks, (1..=8).collect::<Vec<_>>());
    assert!(
        rows.iter()
            .all(|r| r["no_edges"] == false && r["basis"] == "edges")
    );
    assert!(
        rows.iter()
            .any(|r| r["paths"].as_array().is_some_and(|p| !p.is_empty())),
        "{a}"
    );
    let claims = a["claims"].as_array().expect("claims");
    assert_eq!(claims.len(), 2, "{a}");
    assert_eq!(claims[0]["relation"], "isa");
    assert!(
        claims.iter().all(|c| c["prior_probability"]
            .as_f64()
            .is_some_and(|p| (0.0..=1.0).contains(&p))),
        "{a}"
    );
    assert_eq!(a["entities"][0]["edges"], 2);
    assert!(
        a["entities"][0]["similar"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{a}"
    );
    assert_eq!(
        answers[1].1["rows"], a["rows"],
        "deterministic for one model"
    );

    // Without edges the rows are a prior, and say so.
    let (status, bare) = post_json(
        &ask,
        &alice,
        &json!({ "entities": [{ "id": "new:y" }], "top": 3 }),
    );
    assert_eq!(status, 200, "{bare}");
    assert!(
        bare["rows"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["no_edges"] == true)),
        "{bare}"
    );

    // Who may ask.
    let (status, _, text) = request(reqwest::Method::POST, &ask, None, None, Some(&prompt("X")));
    assert_eq!(status, 401, "{text}");
    let (status, body) = post_json(&ask, &lab, &prompt("X"));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("ask")),
        "{body}"
    );
    assert_eq!(post_json(&ask, &carol, &prompt("X")).0, 200);
    assert_eq!(post_json(&submit, &lab, &json!({})).0, 403);

    // Problems by path: the prompt's own, and the body's shape.
    let mut bad = prompt("X");
    bad["edges"][0][1] = json!("cures_all");
    let (status, body) = post_json(&ask, &alice, &bad);
    assert_eq!(status, 400, "{body}");
    let ps = problems(&body);
    assert_eq!(ps.len(), 1, "{body}");
    assert_eq!(ps[0].0, "edges[0][1]");
    assert!(ps[0].1.contains("unknown relation `cures_all`"), "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = post_json(
        &ask,
        &alice,
        &json!({ "entities": [{ "id": "new:x", "colour": "red" }] }),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(problems(&body)[0].0, "entities[0].colour", "{body}");

    // Submit the first two rows (and the two claims, for review) into `w`.
    let request_body = json!({ "prompt": prompt("X"), "workflow": "w", "pick": [1, 2] });
    let (status, summary) = post_json(&submit, &alice, &request_body);
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        summary["pinned"].as_array().map(Vec::len),
        Some(4),
        "{summary}"
    );
    assert_eq!(summary["entities_added"], 1, "{summary}");
    assert_eq!(summary["version"], 2, "{summary}");
    assert_eq!(summary["already_known"], json!([]), "{summary}");
    let listed = env.json(&["pinned", "list"]);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|p| p["status"] == "waiting" && p["workflow"] == "w" && p["asker"] == "alice"),
        "{listed:?}"
    );
    let first_row = &a["rows"][0];
    assert_eq!(listed[0]["relation"], first_row["relation"], "{listed:?}");
    assert_eq!(listed[0]["tail"], first_row["tail"], "{listed:?}");
    assert_eq!(listed[2]["origin"], "claim", "{listed:?}");

    // Again: `new:x` is in the graph now, and an ask never redeclares an entity (its
    // features would be replaced): a located problem, nothing written.
    let (status, again) = post_json(&submit, &alice, &request_body);
    assert_eq!(status, 400, "{again}");
    let ps = problems(&again);
    assert_eq!(ps.len(), 1, "{again}");
    assert_eq!(ps[0].0, "prompt.entities[0].id", "{again}");
    assert!(
        ps[0]
            .1
            .contains("`new:x` is already in the graph (since version 2)"),
        "{again}"
    );
    assert_eq!(env.count("SELECT count(*) FROM pinned_candidates"), 4);
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 1);

    // Unknown workflows, ranks and shapes are refused with a reason, writing nothing.
    let (status, body) = post_json(
        &submit,
        &alice,
        &json!({ "prompt": prompt("X"), "workflow": "nope" }),
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("`nope`") && e.contains("knows: w")),
        "{body}"
    );
    let (status, body) = post_json(
        &submit,
        &alice,
        &json!({ "prompt": prompt("X"), "workflow": "w", "pick": [99] }),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(problems(&body)[0].0, "pick", "{body}");
    let (status, body) = post_json(&submit, &alice, &json!({ "prompt": bad, "workflow": "w" }));
    assert_eq!(status, 400, "{body}");
    assert_eq!(problems(&body)[0].0, "prompt.edges[0][1]", "{body}");
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 1);

    // A newer model is loaded on the next ask; an answer chosen from the old one is refused.
    // (`new:x` is in the graph now: model 2 trained on the submission's version.)
    train(&env);
    let (status, body) = post_json(&ask, &alice, &prompt("X"));
    assert_eq!(status, 400, "{body}");
    assert!(
        problems(&body)[0].1.contains("already in the graph"),
        "{body}"
    );
    let (status, body) = post_json(&ask, &alice, &prompt_for("new:z", "Z"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], 2, "{body}");
    assert_eq!(
        metric(&server.base, &carol, "hypograph_ask_model_loads_total"),
        Some(2.0)
    );
    let (status, body) = post_json(
        &submit,
        &alice,
        &json!({ "prompt": prompt("X"), "workflow": "w", "pick": [3], "model": 1 }),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("model 2")),
        "{body}"
    );
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 1);

    // The routes are timed like the others.
    let (_, text) = get_text(&format!("{}/metrics", server.base), Some(&carol));
    assert!(text.contains("route=\"/api/v1/ask\""), "{text}");
    assert!(text.contains("route=\"/api/v1/ask/submit\""), "{text}");
}

/// A form POST with the session of a sign-in with `token`: status and body.
fn post_form(url: &str, token: &str, form: &[(&str, &str)]) -> (u16, String) {
    let base = url.rsplit_once("/ask").expect("an /ask url").0;
    let cookie = crate::support::session(base, token).expect("signed in");
    mt_runtime().block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .timeout(std::time::Duration::from_secs(60))
            .header("Cookie", cookie)
            .form(form)
            .send()
            .await
            .expect("the server answers");
        (resp.status().as_u16(), resp.text().await.expect("a body"))
    })
}

fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" content=\"")
        .map(|i| i + "name=\"csrf\" content=\"".len())
        .expect("a CSRF meta tag");
    html[start..].split('"').next().expect("a token").to_owned()
}

#[test]
fn the_ask_page_escapes_places_problems_and_submits() {
    let env = Env::new();
    let (alice, _carol, lab) = setup(&env);
    let wf = env.path("wf");
    let server = Server::start(&env, &["--workflows", wf.to_str().expect("path")]);
    let page = format!("{}/ask", server.base);

    // No model: the page says so.
    let (status, _, html) = request(reqwest::Method::GET, &page, None, Some(&alice), None);
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("no trained model"), "{html}");
    train(&env);

    // Signed out: to the login page; a service token does not sign in.
    let (status, _, html) = request(reqwest::Method::GET, &page, None, None, None);
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("name=\"token\""),
        "redirected to the login page: {html}"
    );
    let (status, _, html) = request(reqwest::Method::GET, &page, None, Some(&lab), None);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("name=\"token\""), "still signed out: {html}");

    let (status, _, html) = request(reqwest::Method::GET, &page, None, Some(&alice), None);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/ask\""), "linked from the navigation");
    assert!(html.contains("<select name=\"category\">"), "{html}");
    let csrf = csrf_of(&html);

    let name = "<script>alert('x')</script> \"quoted\"";
    let edges = "new:x isa entity\nnew:x location_of alga";
    let form = |csrf: &str, edges: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("entity".into(), "new:x".into()),
            ("category".into(), String::new()),
            ("name".into(), name.into()),
            ("edges".into(), edges.to_owned()),
            ("top".into(), "5".into()),
        ]
    };
    let send = |f: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        post_form(&page, &alice, &pairs)
    };

    // Without the CSRF token: refused.
    let (status, html) = send(form("wrong", edges));
    assert_eq!(status, 403, "{html}");

    // The answer, with the name as text.
    let (status, html) = send(form(&csrf, edges));
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("<script>alert"), "the name is escaped");
    assert!(
        html.contains("&lt;script&gt;alert('x')&lt;/script&gt; &quot;quoted&quot;"),
        "{html}"
    );
    assert_eq!(html.matches("name=\"pick\"").count(), 5, "{html}");
    assert!(html.contains("behaves like"), "{html}");
    assert!(html.contains("Your claims"), "{html}");
    assert!(!html.contains("no edges: prior only"), "{html}");
    assert!(html.contains("<option value=\"w\">w</option>"), "{html}");
    let prompt_field = html.contains("name=\"prompt\" value=\"{&quot;entities&quot;");
    assert!(prompt_field, "the prompt travels escaped: {html}");

    // Without edges, rows are flagged as a prior.
    let (status, html) = send(form(&csrf, ""));
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("no edges: prior only"), "{html}");

    // A problem is shown beside its field, with its line, and the form keeps what was typed.
    let (status, html) = send(form(&csrf, "new:x isa entity\nnew:x cures_all alga"));
    assert_eq!(status, 400, "{html}");
    assert!(
        html.contains(
            "<span class=\"problem\" data-field=\"edges\">line 2: unknown relation `cures_all`"
        ),
        "{html}"
    );
    assert!(html.contains("new:x cures_all alga</textarea>"), "{html}");
    let (status, html) = send(form(&csrf, "new:x isa"));
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("line 1: expected three words"), "{html}");

    // Submit two rows: a confirmation with the submission, version and pinned count.
    let prompt = serde_json::to_string(&json!({
        "entities": [{ "id": "new:x", "category": "", "name": name }],
        "edges": [["new:x", "isa", "entity"], ["new:x", "location_of", "alga"]],
        "top": 5,
    }))
    .expect("json");
    let submit = format!("{}/ask/submit", server.base);
    let base_form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("prompt", prompt.clone()),
            ("model", "1".to_owned()),
            ("workflow", "w".to_owned()),
        ]
    };
    let post = |f: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&submit, &alice, &pairs)
    };
    let mut f = base_form("wrong");
    f.push(("pick", "1".into()));
    assert_eq!(post(f).0, 403);
    assert_eq!(post(base_form(&csrf)).0, 400, "no row ticked");
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 0);
    let mut f = base_form(&csrf);
    f.push(("pick", "1".into()));
    f.push(("pick", "3".into()));
    let (status, html) = post(f.clone());
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<dd class=\"submission\">1</dd>"), "{html}");
    assert!(
        html.contains("4 row(s) wait for the next round of w"),
        "{html}"
    );
    assert!(
        html.contains("<dd class=\"version\">2 (1 new entities"),
        "{html}"
    );
    assert_eq!(
        env.strings(
            "SELECT s.asker || ' ' || p.origin FROM pinned_candidates p \
             JOIN ask_submissions s ON s.id = p.submission_id ORDER BY p.id"
        ),
        [
            "alice prediction",
            "alice prediction",
            "alice claim",
            "alice claim"
        ]
    );
    assert_eq!(
        env.strings("SELECT name FROM entities WHERE key = 'new:x'"),
        [name]
    );
    // Again: `new:x` is in the graph now, and an ask never redeclares an entity.
    let (status, html) = post(f);
    assert_eq!(status, 400, "{html}");
    assert!(
        html.contains("<code>entities[0].id</code>: entity `new:x` is already in the graph"),
        "{html}"
    );
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 1);

    // An unknown workflow names the known ones.
    let mut f = base_form(&csrf);
    f[3].1 = "<b>nope</b>".into();
    f.push(("pick", "1".into()));
    let (status, html) = post(f);
    assert_eq!(status, 404, "{html}");
    assert!(
        html.contains("`&lt;b&gt;nope&lt;/b&gt;`; this server knows: w"),
        "{html}"
    );
}

/// `n` bare new entities.
fn bare(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({ "id": format!("new:{i}") }))
        .collect()
}

/// A prompt at every limit of `ask::limits` (the candidates stay under theirs on UMLS).
fn maximal() -> Value {
    let entities = bare(32);
    let edges: Vec<Value> = (0..256)
        .map(|i| json!([format!("new:{}", i % 32), "isa", "entity"]))
        .collect();
    let predict: Vec<Value> = (0..64)
        .map(|i| json!([format!("new:{}", i % 32), "?", "?"]))
        .collect();
    json!({ "entities": entities, "edges": edges, "predict": predict, "top": 1000 })
}

/// One prompt may not make the server do unbounded work: each count past its limit is
/// refused (413) with the limit and the value, before anything is computed; one user has one
/// ask in flight (429 with `Retry-After`), while other users are served.
#[test]
fn asks_are_bounded_and_one_at_a_time_per_user() {
    let env = Env::new();
    let (alice, carol, _) = setup(&env);
    train(&env);
    let dave = user(&env, "dave", "reviewer");
    let server = Server::start(&env, &[]);
    let ask = format!("{}/api/v1/ask", server.base);

    let over = |mut body: Value, key: &str, value: Value| {
        body[key] = value;
        let (status, body) = post_json(&ask, &alice, &body);
        assert_eq!(status, 413, "{key}: {body}");
        problems(&body)
    };
    let ps = over(maximal(), "entities", json!(bare(33)));
    assert_eq!(
        ps,
        vec![(
            "entities".to_owned(),
            "33 new entities: at most 32 per ask".to_owned()
        )]
    );
    let edges: Vec<Value> = (0..257)
        .map(|_| json!(["new:0", "isa", "entity"]))
        .collect();
    let ps = over(maximal(), "edges", json!(edges));
    assert_eq!(ps[0].0, "edges", "{ps:?}");
    assert!(ps[0].1.contains("257 claimed edges: at most 256"), "{ps:?}");
    let predict: Vec<Value> = (0..65).map(|_| json!(["new:0", "?", "?"])).collect();
    let ps = over(maximal(), "predict", json!(predict));
    assert!(ps[0].1.contains("65 predict lines: at most 64"), "{ps:?}");
    let context: Vec<String> = (0..1001).map(|_| "alga".to_owned()).collect();
    let ps = over(maximal(), "context", json!({ "entities": context }));
    assert_eq!(ps[0].0, "context", "{ps:?}");
    assert!(
        ps[0].1.contains("1001 context entries: at most 1000"),
        "{ps:?}"
    );
    let ps = over(maximal(), "top", json!(1001));
    assert!(ps[0].1.contains("1001 rows: at most 1000"), "{ps:?}");
    // The 5,000 bare entities that took a server past 6 GB: refused at once.
    let ps = over(json!({}), "entities", json!(bare(5000)));
    assert!(ps[0].1.contains("5000 new entities"), "{ps:?}");

    // A prompt at the limits is answered, its best 1,000 of every candidate.
    let (status, body) = post_json(&ask, &alice, &maximal());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1000));
    assert!(
        body["candidates"].as_u64().is_some_and(|c| c > 1000),
        "{body}"
    );

    // The same user six times at once: one is answered, the others are told to come back.
    let barrier = std::sync::Barrier::new(6);
    let answers: Vec<(u16, Option<String>, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    post_with_retry_after(&ask, &alice, &maximal())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread"))
            .collect()
    });
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    for (_, retry, body) in answers.iter().filter(|a| a.0 == 429) {
        assert_eq!(retry.as_deref(), Some("1"), "{body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("`alice`") && e.contains("one at a time")),
            "{body}"
        );
    }
    // Done, alice may ask again; other users were never held by her turn.
    assert_eq!(post_json(&ask, &alice, &prompt("X")).0, 200);
    let others: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = [&alice, &carol, &dave]
            .into_iter()
            .map(|t| {
                let ask = &ask;
                s.spawn(move || post_json(ask, t, &maximal()).0)
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a request thread"))
            .collect()
    });
    assert_eq!(others, vec![200, 200, 200]);
}

/// A POST of JSON: status, `Retry-After` and the body as JSON.
fn post_with_retry_after(url: &str, token: &str, body: &Value) -> (u16, Option<String>, Value) {
    mt_runtime().block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(body)
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await
            .expect("the server answers");
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (
            resp.status().as_u16(),
            retry,
            resp.json().await.unwrap_or(Value::Null),
        )
    })
}
