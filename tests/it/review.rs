//! The REST API and the people side: assay callbacks, the review queue with quorum rules,
//! the terminal reviewer, retraction, polling the bundled assay service, the circuit breaker.

use crate::on_both;

use crate::support::Env;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    Server, get_json as get, mt_runtime as runtime, request, run_now as run,
    staged_workflow as workflow, user,
};

fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let (status, _, text) = request(reqwest::Method::POST, url, token, None, Some(body));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn count(env: &Env, status: &str) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM hypotheses WHERE status = '{status}'"
    ))
}

fn assay_callbacks_are_authenticated_idempotent_and_checked(env: Env) {
    let rt = runtime();
    let assay = rt.block_on(async {
        let s = MockServer::start().await;
        // Accepts everything, answers later by callback.
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({ "results": [] })))
            .mount(&s)
            .await;
        s
    });
    let svc = env
        .ok(&["user", "add", "lab", "--role", "service", "--workflow", "w"])
        .trim()
        .to_owned();
    let rev = user(&env, "alice", "reviewer");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n    callback_url: {}\n    timeout: 1h\n",
            assay.uri(),
            server.base
        )),
    );
    let out = run(&env, &w);
    assert!(out.contains("awaiting answers at stage `assay`"), "{out}");
    let sent: Value =
        serde_json::from_slice(&rt.block_on(assay.received_requests()).unwrap_or_default()[0].body)
            .expect("json");
    assert_eq!(
        sent["callback_url"],
        format!("{}/api/v1/results", server.base)
    );
    let keys: Vec<String> = sent["hypotheses"]
        .as_array()
        .expect("hypotheses")
        .iter()
        .map(|h| h["key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(keys.len(), 10);
    let url = format!("{}/api/v1/results", server.base);
    let results = |ks: &[String]| json!({ "results": ks.iter().map(|k| json!({ "key": k, "verdict": "confirmed", "confidence": 0.9, "evidence": { "plate": 7 } })).collect::<Vec<_>>() });
    assert_eq!(post(&url, None, &results(&keys)).0, 401, "no token");
    assert_eq!(
        post(&url, Some("not-a-token"), &results(&keys)).0,
        401,
        "wrong token"
    );
    assert_eq!(
        post(&url, Some(&rev), &results(&keys)).0,
        403,
        "a reviewer cannot post results"
    );
    assert_eq!(env.count("SELECT count(*) FROM verdicts"), 0);

    let mut first: Vec<String> = keys[..5].to_vec();
    first.push("1:99999:0".into());
    let (status, body) = post(&url, Some(&svc), &results(&first));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["accepted"].as_i64(),
            body["rejected"].as_array().map(Vec::len)
        ),
        (Some(5), Some(1)),
        "{body}"
    );
    let (_, again) = post(&url, Some(&svc), &results(&keys[..5]));
    assert_eq!(
        (again["accepted"].as_i64(), again["duplicates"].as_i64()),
        (Some(0), Some(5)),
        "{again}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts"),
        5,
        "a repeated callback changes nothing"
    );
    let (_, rest) = post(&url, Some(&svc), &results(&keys[5..]));
    assert_eq!(rest["accepted"].as_i64(), Some(5), "{rest}");
    let out = run(&env, &w);
    assert!(
        out.contains("round 1: 10 hypotheses, 10 confirmed"),
        "{out}"
    );
    assert_eq!(
        env.strings("SELECT DISTINCT reviewer FROM verdicts"),
        vec!["lab"]
    );
}

fn reviewers_reach_a_quorum_by_api_and_terminal_and_a_retraction_removes_the_edge(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let svc = user(&env, "lab", "service");
    let carol = user(&env, "carol", "admin");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    quorum: 2\n    timeout: 72h\n"),
    );
    run(&env, &w);
    let (status, q) = get(&format!("{}/api/v1/queue", server.base), &alice);
    assert_eq!(status, 200, "{q}");
    let items = q["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 10);
    assert_eq!(
        get(&format!("{}/api/v1/queue", server.base), &svc).0,
        403,
        "a service token cannot review"
    );
    let (status, detail) = get(
        &format!("{}/api/v1/hypotheses/{}", server.base, items[0]["id"]),
        &alice,
    );
    assert_eq!(status, 200);
    assert!(detail["context"]["head"].is_array(), "{detail}");
    // Alice: the first five confirmed, the rest refuted.
    for (i, item) in items.iter().enumerate() {
        let verdict = if i < 5 { "confirmed" } else { "refuted" };
        let (status, body) = post(
            &format!("{}/api/v1/hypotheses/{}/verdict", server.base, item["id"]),
            Some(&alice),
            &json!({ "verdict": verdict, "comment": "checked the literature" }),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["answered"], false, "one of two reviews");
    }
    let (status, _) = post(
        &format!(
            "{}/api/v1/hypotheses/{}/verdict",
            server.base, items[0]["id"]
        ),
        Some(&alice),
        &json!({ "verdict": "refuted" }),
    );
    assert_eq!(status, 409, "one verdict per reviewer");
    assert_eq!(
        get(&format!("{}/api/v1/queue", server.base), &alice).1["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    // Bob answers everything in the terminal, one key each.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["review", "--as", "bob"])
        .env("HYPOGRAPH_TOKEN", &bob)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn review");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all("c\n".repeat(10).as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("review");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("10 verdicts recorded"), "{stdout}");
    assert!(stdout.contains("model probability"), "{stdout}");
    let out = run(&env, &w);
    assert!(
        out.contains("round 1: 10 hypotheses, 5 confirmed, 0 refuted"),
        "{out}"
    );
    assert_eq!(
        count(&env, "inconclusive"),
        5,
        "a 1-1 split is a tie under the majority rule"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE client = 'cli'"),
        10
    );
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE comment = 'checked the literature'"),
        10
    );

    // Alice's confirmation of the first hypothesis was wrong: retract it. Bob's still stands,
    // so the stage decides as before and the edge stays.
    let verdict = env.count(&format!(
        "SELECT id FROM verdicts WHERE reviewer = 'alice' AND hypothesis_id = {}",
        items[0]["id"]
    ));
    let triple = env
        .strings(&format!(
            "SELECT he.key || '\t' || r.key || '\t' || te.key FROM hypotheses h \
         JOIN entities he ON he.id = h.head JOIN relations r ON r.id = h.relation \
         JOIN entities te ON te.id = h.tail WHERE h.id = {}",
            items[0]["id"]
        ))
        .pop()
        .expect("triple");
    let before = env.count("SELECT max(id) FROM graph_versions");
    let out = env.ok(&[
        "retract",
        &verdict.to_string(),
        "--reason",
        "sample mix-up",
        "--by",
        "carol",
        "--token",
        &carol,
    ]);
    assert!(out.contains("is unchanged"), "{out}");
    assert_eq!(env.count("SELECT max(id) FROM graph_versions"), before);
    // Bob's was the same mix-up: with no verdict standing, the edge leaves the graph.
    let bobs = env.count(&format!(
        "SELECT id FROM verdicts WHERE reviewer = 'bob' AND hypothesis_id = {}",
        items[0]["id"]
    ));
    let out = env.ok(&[
        "retract",
        &bobs.to_string(),
        "--reason",
        "sample mix-up",
        "--by",
        "carol",
        "--token",
        &carol,
    ]);
    assert!(out.contains("is now inconclusive"), "{out}");
    assert!(out.contains(&format!("version {}", before + 1)), "{out}");
    let t: Vec<&str> = triple.split('\t').collect();
    let blame = env.json(&["graph", "blame", t[0], t[1], t[2]]);
    let history = blame["history"].as_array().expect("history");
    assert!(
        history.iter().any(|h| h["removed_in"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sample mix-up"))),
        "{blame}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts"),
        20,
        "nothing is deleted"
    );
    assert_eq!(count(&env, "confirmed"), 4);
    // The next round trains on the version without the edge.
    run(&env, &w);
    assert_eq!(
        env.count("SELECT graph_version FROM models ORDER BY id DESC LIMIT 1"),
        env.count("SELECT base_version FROM rounds WHERE number = 2")
    );
    assert_eq!(
        env.count("SELECT base_version FROM rounds WHERE number = 2"),
        before + 1
    );
}

fn an_escalated_disagreement_waits_for_an_admin(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let carol = user(&env, "carol", "admin");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    quorum: 2\n    rule: escalate\n"),
    );
    run(&env, &w);
    let items = get(&format!("{}/api/v1/queue?limit=1", server.base), &alice).1["items"].clone();
    let id = items[0]["id"].as_i64().expect("id");
    let verdict = |token: &str, v: &str| {
        post(
            &format!("{}/api/v1/hypotheses/{id}/verdict", server.base),
            Some(token),
            &json!({ "verdict": v }),
        )
        .1
    };
    assert_eq!(verdict(&alice, "confirmed")["answered"], false);
    let split = verdict(&bob, "refuted");
    assert_eq!(
        (split["answered"].as_bool(), split["escalated"].as_bool()),
        (Some(false), Some(true)),
        "{split}"
    );
    let decided = verdict(&carol, "refuted");
    assert_eq!(decided["answered"], true, "{decided}");
    assert_eq!(
        env.strings(&format!(
            "SELECT s.status FROM stage_items s WHERE s.hypothesis_id = {id}"
        )),
        vec!["answered"]
    );
    // Carol's call was a mistake, and the stage is still open: the hypothesis goes back to the
    // queue, through the API.
    let carols = env.count(&format!(
        "SELECT id FROM verdicts WHERE hypothesis_id = {id} AND reviewer = 'carol'"
    ));
    let url = format!("{}/api/v1/verdicts/{carols}/retract", server.base);
    assert_eq!(
        post(&url, Some(&alice), &json!({ "reason": "x" })).0,
        403,
        "admins only"
    );
    let (status, r) = post(&url, Some(&carol), &json!({ "reason": "wrong hypothesis" }));
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("requeued")),
        "{r}"
    );
    assert_eq!(
        env.strings(&format!(
            "SELECT s.status FROM stage_items s WHERE s.hypothesis_id = {id}"
        )),
        vec!["submitted"]
    );
    assert_eq!(env.count("SELECT count(*) FROM retractions"), 1);
    // Her retracted verdict no longer counts: she may decide again.
    let again = verdict(&carol, "confirmed");
    assert_eq!(again["answered"], true, "{again}");
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts"),
        4,
        "nothing is deleted"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE withdrawn = 1"),
        1
    );
}

fn the_bundled_assay_service_is_polled_to_completion(env: Env) {
    let service = crate::support::ExampleAssay::start(
        &["--mode", "poll", "--delay", "0.5"].map(std::ffi::OsStr::new),
        &[],
    );
    let base = service.base.clone();
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let text = workflow(&format!(
        "  - name: assay\n    plugin: example-assay\n    url: {base}/assay\n    poll_url: {base}/poll\n    timeout: 1h\n"
    )) + &format!("plugins_dir: {}\n", plugins.display());
    let w = env.write("w.yaml", text);
    let out = env.ok(&["run", w.to_str().expect("path"), "--wait", "60s"]);
    drop(service);
    assert!(out.contains("round 1: 10 hypotheses"), "{out}");
    assert_eq!(count(&env, "confirmed") + count(&env, "refuted"), 10);
    assert_eq!(
        env.count("SELECT count(*) FROM stage_items WHERE external_id IS NOT NULL"),
        10,
        "job ids kept"
    );
    assert_eq!(
        env.count("SELECT CAST(sum(cost) AS INTEGER) FROM verdicts"),
        50,
        "the manifest's cost"
    );
}

#[test]
fn repeated_failures_open_the_circuit_and_the_rest_wait() {
    let rt = runtime();
    let assay = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    let w = env.write(
        "w.yaml",
        workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n    retries: 0\n    breaker: 2\n    batch: 2\n    concurrency: 1\n",
            assay.uri()
        )),
    );
    let out = run(&env, &w);
    assert!(out.contains("paused after repeated failures"), "{out}");
    assert_eq!(count(&env, "failed"), 4, "two batches of two");
    assert_eq!(
        env.count("SELECT count(*) FROM stage_items WHERE status = 'queued'"),
        6
    );
    assert_eq!(env.strings("SELECT state FROM rounds"), vec!["dispatching"]);
}

fn a_retrain_while_items_wait_shows_fresh_scores_and_marks_stale_ones(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let server = Server::start(&env, &[]);
    // Every item is stale once rescored: no probability clears 1.0.
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    stale_below: 1.0\n"),
    );
    run(&env, &w);
    let before = get(&format!("{}/api/v1/queue", server.base), &alice).1;
    assert!(before["items"][0]["fresh_score"].is_null(), "{before}");
    assert_eq!(before["items"][0]["stale"], false);
    // The graph moves on and the workflow's model retrains (a retrain-only run of it).
    let extra = env.write(
        "extra.tsv",
        "acquired_abnormality\tisa\tanatomical_abnormality\n",
    );
    env.ok(&["import", extra.to_str().expect("path")]);
    let retrain = env.write(
        "retrain.yaml",
        "name: w\nretrain:\n  schedule: \"0 0 2 * * *\"\nmodel:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n",
    );
    let out = env.ok(&["run", retrain.to_str().expect("path")]);
    assert!(out.contains("warm from model"), "{out}");
    let after = get(&format!("{}/api/v1/queue", server.base), &alice).1;
    let items = after["items"].as_array().expect("items");
    assert_eq!(items.len(), 10);
    assert!(
        items
            .iter()
            .all(|i| i["fresh_score"].as_f64().is_some() && i["stale"] == true),
        "{after}"
    );
    assert!(items[0]["fresh_model"].as_i64() > items[0]["model_id"].as_i64());
}

/// The `stale_below` threshold itself: fresh scores below it are stale, at or above it (or not
/// rescored yet) are not; stale items sink to the end of the queue, and each part keeps the
/// acquisition order. The fresh scores and acquisition values are set by hand so the expected
/// order can be written down (`a_retrain_while_items_wait...` covers where fresh scores come
/// from).
fn stale_items_follow_the_threshold_and_sink_in_the_queue(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    stale_below: 0.5\n"),
    );
    run(&env, &w);
    let ids: Vec<i64> = env
        .strings("SELECT CAST(id AS TEXT) FROM hypotheses ORDER BY id")
        .iter()
        .map(|s| s.parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), 10);
    // By acquisition alone the order would be ids[0], ids[1], ... ids[9].
    let fresh = [
        "0.9", "0.2", "0.5", "NULL", "0.7", "0.1", "0.49", "0.95", "NULL", "0.3",
    ];
    for (i, (id, f)) in ids.iter().zip(fresh).enumerate() {
        env.sql(&format!(
            "UPDATE hypotheses SET acquisition = {}, fresh_score = {f}, \
             fresh_model = CASE WHEN {f} IS NULL THEN NULL ELSE model_id END WHERE id = {id}",
            1.0 - i as f64 / 10.0
        ));
    }
    let stale_at = [1, 5, 6, 9];
    let expected: Vec<i64> = [0, 2, 3, 4, 7, 8, 1, 5, 6, 9]
        .iter()
        .map(|&i| ids[i])
        .collect();

    let q = get(&format!("{}/api/v1/queue", server.base), &alice).1;
    let items = q["items"].as_array().expect("items");
    let order: Vec<i64> = items.iter().filter_map(|i| i["id"].as_i64()).collect();
    assert_eq!(order, expected, "{q}");
    for item in items {
        let at = ids.iter().position(|&id| Some(id) == item["id"].as_i64());
        let want = at.is_some_and(|i| stale_at.contains(&i));
        assert_eq!(item["stale"], want, "{item}");
    }
    // Paging keeps the order: the stale ones are on the second page of four.
    let second = get(
        &format!("{}/api/v1/queue?limit=4&offset=4", server.base),
        &alice,
    )
    .1;
    let page: Vec<i64> = second["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_i64())
        .collect();
    assert_eq!(page, expected[4..8], "{second}");

    // The web page: the same order, stale cards marked.
    let html = crate::support::queue_page(&server.base, &alice);
    let cards: Vec<(i64, bool)> = html
        .split("<div class=\"card")
        .skip(1)
        .filter_map(|card| {
            let (classes, rest) = card.split_once('"')?;
            let id = rest.split_once("data-id=\"")?.1.split_once('"')?.0;
            Some((id.parse().ok()?, classes.contains("stale")))
        })
        .collect();
    let want: Vec<(i64, bool)> = [0, 2, 3, 4, 7, 8, 1, 5, 6, 9]
        .iter()
        .map(|&i| (ids[i], stale_at.contains(&i)))
        .collect();
    assert_eq!(cards, want, "{html}");
}

/// An undo re-decides the stage as a retraction does: when the verdicts still standing
/// complete the item (here the admin's call on an escalated split), it stays answered, since
/// the reviewers behind those verdicts cannot answer again and a requeued item would only
/// expire.
fn an_undo_redecides_its_stage_like_a_retraction(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let carol = user(&env, "carol", "admin");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    quorum: 2\n    rule: escalate\n"),
    );
    run(&env, &w);
    let items = get(&format!("{}/api/v1/queue?limit=2", server.base), &alice).1["items"].clone();
    let (id, other) = (
        items[0]["id"].as_i64().expect("id"),
        items[1]["id"].as_i64().expect("id"),
    );
    let verdict = |token: &str, hyp: i64, v: &str| {
        post(
            &format!("{}/api/v1/hypotheses/{hyp}/verdict", server.base),
            Some(token),
            &json!({ "verdict": v }),
        )
        .1
    };
    verdict(&alice, id, "confirmed");
    assert_eq!(verdict(&bob, id, "refuted")["escalated"], true);
    assert_eq!(verdict(&carol, id, "confirmed")["answered"], true);
    verdict(&alice, other, "confirmed");
    // Undo through the web app, as the `z` key does: a signed-in form post with its CSRF.
    let undo = |token: &str, hyp: i64| {
        let (_, _, page) = request(
            reqwest::Method::GET,
            &format!("{}/queue", server.base),
            None,
            Some(token),
            None,
        );
        let csrf = page
            .split("name=\"csrf\" content=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a CSRF meta tag")
            .to_owned();
        runtime().block_on(async {
            let resp = reqwest::Client::new()
                .post(format!("{}/review/{hyp}/undo", server.base))
                .timeout(std::time::Duration::from_secs(60))
                .header(
                    "Cookie",
                    crate::support::session(&server.base, token).expect("the token signs in"),
                )
                .header("Accept", "application/json")
                .form(&[("csrf", csrf.as_str())])
                .send()
                .await
                .expect("the server answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let items_of = |hyp: i64| {
        env.strings(&format!(
            "SELECT status FROM stage_items WHERE hypothesis_id = {hyp}"
        ))
    };
    // Bob's refutation and Carol's decision still stand: the item stays answered.
    let (status, r) = undo(&alice, id);
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("unchanged")),
        "{r}"
    );
    assert_eq!(items_of(id), vec!["answered"]);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM verdicts WHERE hypothesis_id = {id} AND withdrawn = 1"
        )),
        1
    );
    // A lone verdict short of the quorum: nothing stands, back to the queue.
    let (status, r) = undo(&alice, other);
    assert_eq!(
        (status, r["outcome"].as_str()),
        (200, Some("requeued")),
        "{r}"
    );
    assert_eq!(items_of(other), vec!["submitted"]);
    assert_eq!(env.count("SELECT count(*) FROM retractions"), 2);
}

on_both!(
    reviewers_reach_a_quorum_by_api_and_terminal_and_a_retraction_removes_the_edge,
    reviewers_reach_a_quorum_by_api_and_terminal_and_a_retraction_removes_the_edge
);
on_both!(
    an_escalated_disagreement_waits_for_an_admin,
    an_escalated_disagreement_waits_for_an_admin
);
on_both!(
    the_bundled_assay_service_is_polled_to_completion,
    the_bundled_assay_service_is_polled_to_completion
);
on_both!(
    a_retrain_while_items_wait_shows_fresh_scores_and_marks_stale_ones,
    a_retrain_while_items_wait_shows_fresh_scores_and_marks_stale_ones
);
on_both!(
    stale_items_follow_the_threshold_and_sink_in_the_queue,
    stale_items_follow_the_threshold_and_sink_in_the_queue
);
on_both!(
    assay_callbacks_are_authenticated_idempotent_and_checked,
    assay_callbacks_are_authenticated_idempotent_and_checked
);
on_both!(
    an_undo_redecides_its_stage_like_a_retraction,
    an_undo_redecides_its_stage_like_a_retraction
);
