//! Retractions after a stage closed: the stage is re-decided from the verdicts still standing,
//! and the graph (edges and refutations, both versioned and hashed) follows.

use crate::on_both;

use crate::support::{Env, Server, post_json as post, staged_workflow as workflow, user};
use serde_json::{Value, json};

fn status_of(env: &Env, id: i64) -> String {
    env.strings(&format!("SELECT status FROM hypotheses WHERE id = {id}"))
        .pop()
        .expect("hypothesis")
}

fn verdict_of(env: &Env, id: i64, reviewer: &str) -> i64 {
    env.count(&format!(
        "SELECT id FROM verdicts WHERE hypothesis_id = {id} AND reviewer = '{reviewer}'"
    ))
}

fn live_edge(env: &Env, id: i64) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM edges e JOIN hypotheses h ON h.head = e.head AND h.relation = e.relation \
         AND h.tail = e.tail WHERE h.id = {id} AND e.removed_in IS NULL"
    ))
}

fn live_refutation(env: &Env, id: i64) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM refutations f JOIN hypotheses h ON h.head = f.head \
         AND h.relation = f.relation AND h.tail = f.tail WHERE h.id = {id} AND f.removed_in IS NULL"
    ))
}

fn versions(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM graph_versions")
}

fn a_retraction_re_decides_the_stage_from_the_standing_verdicts(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let carol = user(&env, "carol", "admin");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    quorum: 2\n    timeout: 72h\n"),
    );
    let wp = w.to_str().expect("path");
    env.ok(&["run", wp, "--wait", "0s"]);
    let ids: Vec<i64> = env
        .strings("SELECT CAST(id AS TEXT) FROM hypotheses ORDER BY rank")
        .iter()
        .map(|s| s.parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), 10);
    // 0: both confirm; 1: both refute; 2: both unsure; 3..: a split (a tie: inconclusive).
    let answers = |i: usize| match i {
        0 => ("confirmed", "confirmed"),
        1 => ("refuted", "refuted"),
        2 => ("inconclusive", "inconclusive"),
        _ => ("confirmed", "refuted"),
    };
    for (i, id) in ids.iter().enumerate() {
        let (a, b) = answers(i);
        for (token, verdict) in [(&alice, a), (&bob, b)] {
            let url = format!("{}/api/v1/hypotheses/{id}/verdict", server.base);
            let (status, body) = post(&url, token, &json!({ "verdict": verdict }));
            assert_eq!(status, 200, "{body}");
        }
    }
    env.ok(&["run", wp, "--wait", "0s"]);
    assert_eq!(
        env.strings("SELECT state FROM rounds WHERE number = 1"),
        vec!["done"]
    );
    let (h0, h1, h2, h3) = (ids[0], ids[1], ids[2], ids[3]);
    assert_eq!(
        [h0, h1, h2, h3].map(|h| status_of(&env, h)),
        ["confirmed", "refuted", "inconclusive", "inconclusive"]
    );
    assert_eq!((live_edge(&env, h0), live_refutation(&env, h1)), (1, 1));
    let retract = |verdict: i64| {
        let url = format!("{}/api/v1/verdicts/{verdict}/retract", server.base);
        let (status, body) = post(&url, &carol, &json!({ "reason": "re-checked" }));
        assert_eq!(status, 200, "{body}");
        body
    };

    // Bob's confirmation still stands: the hypothesis stays confirmed, the edge stays.
    let before = versions(&env);
    let r = retract(verdict_of(&env, h0, "alice"));
    assert_eq!(r["outcome"], "unchanged", "{r}");
    assert_eq!(r["version"], Value::Null, "{r}");
    assert_eq!(status_of(&env, h0), "confirmed");
    assert_eq!((live_edge(&env, h0), versions(&env)), (1, before));
    // No verdict stands any more: nothing supports the edge, and nothing refutes it either.
    let r = retract(verdict_of(&env, h0, "bob"));
    assert_eq!(r["outcome"], "inconclusive", "{r}");
    assert_eq!(r["version"], before + 1, "{r}");
    assert_eq!(status_of(&env, h0), "inconclusive");
    assert_eq!((live_edge(&env, h0), live_refutation(&env, h0)), (0, 0));

    // A refutation is withdrawn in a version of its own once no refuting verdict stands.
    let r = retract(verdict_of(&env, h1, "alice"));
    assert_eq!(r["outcome"], "unchanged", "{r}");
    let r = retract(verdict_of(&env, h1, "bob"));
    assert_eq!(r["outcome"], "inconclusive", "{r}");
    assert_eq!(r["version"], before + 2, "{r}");
    assert_eq!(live_refutation(&env, h1), 0);
    assert_eq!(
        env.count(&format!(
            "SELECT n_unrefuted FROM graph_versions WHERE id = {}",
            before + 2
        )),
        1
    );

    // Retracting an unsure verdict changes no graph data.
    let n = versions(&env);
    let refutations = env.count("SELECT count(*) FROM refutations");
    for who in ["alice", "bob"] {
        let r = retract(verdict_of(&env, h2, who));
        assert_eq!(r["outcome"], "unchanged", "{r}");
        assert_eq!(r["version"], Value::Null, "{r}");
    }
    assert_eq!(versions(&env), n);
    assert_eq!(env.count("SELECT count(*) FROM refutations"), refutations);
    assert_eq!(status_of(&env, h2), "inconclusive");

    // A split decided again: with Bob's refutation withdrawn, Alice's confirmation decides,
    // and the edge joins the graph.
    let r = retract(verdict_of(&env, h3, "bob"));
    assert_eq!(r["outcome"], "confirmed", "{r}");
    assert_eq!(r["version"], n + 1, "{r}");
    assert_eq!(live_edge(&env, h3), 1);

    // Every one of those versions is in the hash chain, refutations included.
    env.ok(&["graph", "verify"]);
    env.sql(&format!(
        "UPDATE refutations SET removed_in = NULL WHERE removed_in = {}",
        before + 2
    ));
    let out = env.fail(&["graph", "verify"]);
    assert!(out.contains(&format!("version {}", before + 2)), "{out}");
}

on_both!(
    a_retraction_re_decides_the_stage_from_the_standing_verdicts,
    a_retraction_re_decides_the_stage_from_the_standing_verdicts
);
