//! Rows submitted from `ask` (through the store's API) as pinned candidates: they join the
//! workflow's next round through the real binary, oldest first and at most half the batch,
//! survive a crash after ranking unchanged, are skipped with a reason once known, and a
//! confirmed one becomes an edge naming the asker.

use crate::support::{Env, data, run_now, staged_workflow, user};
use hypograph::graph::EntityRecord;
use hypograph::store::{
    Action, AskSubmission, OpenMode, PinnedOrigin, PinnedRow, Store, StoreError, SubmitSummary,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The demo's hidden triples (true for the oracle, absent from the graph), in file order.
fn hidden() -> Vec<[String; 3]> {
    std::fs::read_to_string(data("umls/demo-hidden.tsv"))
        .expect("read the hidden split")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            [f[0].to_owned(), f[1].to_owned(), f[2].to_owned()]
        })
        .collect()
}

fn triple(h: &str, r: &str, t: &str) -> [String; 3] {
    [h.to_owned(), r.to_owned(), t.to_owned()]
}

fn row(t: &[String; 3], probability: f64, origin: PinnedOrigin) -> PinnedRow {
    PinnedRow {
        triple: t.clone(),
        probability,
        spread: 0.05,
        origin,
    }
}

fn submission(rows: Vec<PinnedRow>) -> AskSubmission {
    AskSubmission {
        workflow: "w".into(),
        asker: "alice".into(),
        prompt: serde_json::json!({ "entities": ["ask:compound_x"], "note": "from a test" }),
        rows,
        ..AskSubmission::default()
    }
}

fn submit(env: &Env, s: &AskSubmission) -> Result<SubmitSummary, StoreError> {
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let out = store.submit_ask(s).await;
        store.close().await;
        out
    })
}

/// A workflow whose oracle knows the demo's hidden triples; batches of 10.
fn workflow(env: &Env) -> std::path::PathBuf {
    let stage = format!(
        "  - name: assay\n    plugin: oracle\n    truth: {}\n",
        data("umls/demo-hidden.tsv").display()
    );
    env.write("w.yaml", staged_workflow(&stage))
}

fn import_visible(env: &Env) {
    env.ok(&[
        "import",
        data("umls/demo-visible.tsv").to_str().expect("path"),
    ]);
}

/// A round's batch as `head relation tail rank pinned-row` lines, by rank.
fn batch(env: &Env, number: i64) -> Vec<String> {
    env.strings(&format!(
        "SELECT he.key || ' ' || r.key || ' ' || te.key || ' ' || h.rank || ' ' || \
         coalesce(p.id, '-') FROM hypotheses h JOIN rounds rd ON rd.id = h.round_id \
         JOIN entities he ON he.id = h.head JOIN relations r ON r.id = h.relation \
         JOIN entities te ON te.id = h.tail LEFT JOIN pinned_candidates p ON p.hypothesis_id = h.id \
         WHERE rd.number = {number} ORDER BY h.rank"
    ))
}

fn statuses(env: &Env) -> Vec<String> {
    env.strings("SELECT status FROM pinned_candidates ORDER BY id")
}

#[test]
fn submitted_rows_join_the_next_round_as_pinned_candidates() {
    let env = Env::new();
    import_visible(&env);
    let h = hidden();
    let known = triple(
        "acquired_abnormality",
        "location_of",
        "experimental_model_of_disease",
    );
    let claim = triple("ask:compound_x", "affects", "alga");
    let mut s = submission(vec![
        row(&known, 0.9, PinnedOrigin::Prediction),
        row(&h[7], 0.8, PinnedOrigin::Prediction),
        row(&h[0], 0.71, PinnedOrigin::Prediction),
        row(&h[1], 0.72, PinnedOrigin::Prediction),
        row(&claim, 0.3, PinnedOrigin::Claim),
        row(&h[2], 0.73, PinnedOrigin::Prediction),
        row(&h[3], 0.74, PinnedOrigin::Prediction),
        row(&h[4], 0.75, PinnedOrigin::Prediction),
        row(&h[0], 0.71, PinnedOrigin::Prediction),
        row(&h[5], 0.76, PinnedOrigin::Prediction),
    ]);
    s.entities = vec![EntityRecord {
        key: "ask:compound_x".into(),
        name: "compound X".into(),
        ..EntityRecord::default()
    }];
    s.asserted = vec![triple("ask:compound_x", "isa", "entity")];
    let summary = submit(&env, &s).expect("submit");
    assert_eq!(summary.version, Some(2), "{summary:?}");
    assert_eq!((summary.entities_added, summary.asserted_added), (1, 1));
    assert_eq!(summary.pinned.len(), 8, "{summary:?}");
    let reasons: Vec<(&str, &str)> = summary
        .already_known
        .iter()
        .map(|k| (k.triple[0].as_str(), k.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "acquired_abnormality");
    assert!(reasons[0].1.contains("already an edge"), "{reasons:?}");
    assert_eq!(reasons[1].0, h[0][0]);
    assert!(reasons[1].1.contains("already waiting"), "{reasons:?}");

    // The submission's version: the new entity and the asserted edge, named as alice's.
    let log = env.json(&["graph", "log"]);
    assert!(
        log.to_string()
            .contains("ask by alice: 1 entity, 1 asserted edge"),
        "{log}"
    );
    assert_eq!(
        env.strings("SELECT json_extract(source, '$.kind') || ' ' || json_extract(source, '$.asker') || ' ' || json_extract(source, '$.prompt.note') FROM graph_versions WHERE id = 2"),
        vec!["ask alice from a test"]
    );
    let b = env.json(&["graph", "blame", "ask:compound_x", "isa", "entity"]);
    assert_eq!(b["history"][0]["added_in"]["id"], 2, "{b}");
    assert_eq!(b["history"][0]["provenance"]["asserted_by"], "alice", "{b}");
    assert!(b["history"][0]["removed_in"].is_null(), "live: {b}");

    // h[7] becomes an edge after it was submitted: the round skips it and says why.
    let extra = env.write("extra.tsv", format!("{}\n", h[7].join("\t")));
    env.ok(&["import", extra.to_str().expect("path")]);

    let w = workflow(&env);
    run_now(&env, &w);
    let round1 = batch(&env, 1);
    assert_eq!(round1.len(), 10, "{round1:?}");
    let ids = &summary.pinned;
    // Oldest first, at most half the batch, ahead of the acquired ones.
    let expected: Vec<String> = [
        (&h[0], ids[1]),
        (&h[1], ids[2]),
        (&claim, ids[3]),
        (&h[2], ids[4]),
        (&h[3], ids[5]),
    ]
    .iter()
    .enumerate()
    .map(|(rank, (t, id))| format!("{} {rank} {id}", t.join(" ")))
    .collect();
    assert_eq!(round1[..5], expected[..], "{round1:?}");
    for line in &round1[5..] {
        assert!(line.ends_with(" -"), "acquired, not pinned: {line}");
        for t in [&h[4], &h[5], &h[7]] {
            assert!(
                !line.starts_with(&format!("{} ", t.join(" "))),
                "acquisition never proposes a pinned or known triple: {line}"
            );
        }
    }
    assert_eq!(
        env.count(
            "SELECT count(DISTINCT head || ' ' || relation || ' ' || tail) FROM hypotheses WHERE round_id = 1"
        ),
        10,
        "no duplicates in the batch"
    );
    assert_eq!(
        statuses(&env),
        vec![
            "skipped", "claimed", "claimed", "claimed", "claimed", "claimed", "waiting", "waiting"
        ]
    );
    let skipped = env.strings("SELECT reason FROM pinned_candidates WHERE status = 'skipped'");
    assert!(
        skipped[0].contains("already an edge at version 3"),
        "{skipped:?}"
    );
    // The stored score is the ask's; the round counts them and pays for their verdicts.
    assert_eq!(
        env.strings(
            "SELECT printf('%.2f', h.score) FROM hypotheses h JOIN pinned_candidates p \
             ON p.hypothesis_id = h.id ORDER BY h.rank"
        ),
        vec!["0.71", "0.72", "0.30", "0.73", "0.74"]
    );
    assert_eq!(
        env.count("SELECT json_extract(metrics, '$.pinned') FROM rounds WHERE number = 1"),
        5
    );
    assert_eq!(
        env.count(
            "SELECT CAST(json_extract(metrics, '$.cost') AS INTEGER) FROM rounds WHERE number = 1"
        ),
        10,
        "every verdict of the batch, pinned or acquired, is paid for"
    );

    // Confirmed: an edge whose provenance names the asker; refuted: evidence naming her.
    assert_eq!(
        env.strings(
            "SELECT h.status FROM hypotheses h JOIN pinned_candidates p ON p.hypothesis_id = h.id \
             ORDER BY h.rank"
        ),
        vec![
            "confirmed",
            "confirmed",
            "refuted",
            "confirmed",
            "confirmed"
        ]
    );
    let b = env.json(&["graph", "blame", &h[0][0], &h[0][1], &h[0][2]]);
    let p = &b["history"][0]["provenance"];
    assert_eq!(p["pinned"]["asker"], "alice", "{b}");
    assert_eq!(p["pinned"]["via"], "ask", "{b}");
    assert_eq!(p["pinned"]["row"], ids[1], "{b}");
    assert_eq!(p["workflow"], "w", "{b}");
    let text = env.ok(&["graph", "blame", &h[0][0], &h[0][1], &h[0][2]]);
    assert!(text.contains("\"asker\":\"alice\""), "{text}");
    let b = env.json(&["graph", "blame", &claim[0], &claim[1], &claim[2]]);
    assert_eq!(b["refuted"]["evidence"]["pinned"]["origin"], "claim", "{b}");

    // `pinned list` shows where each row went.
    let list = env.ok(&["pinned", "list", "--workflow", "w"]);
    assert!(list.contains("already an edge at version 3"), "{list}");
    assert!(list.contains("round 1, hypothesis"), "{list}");
    assert!(list.contains("confirmed"), "{list}");
    assert!(list.contains("waiting"), "{list}");
    let json = env.json(&["pinned", "list"]);
    assert_eq!(json.as_array().map(Vec::len), Some(8), "{json}");
    assert_eq!(json[1]["asker"], "alice");
    assert_eq!(json[1]["hypothesis_status"], "confirmed");
    assert_eq!(json[3]["origin"], "claim");
    // The claim's new entity is named where people read it.
    assert_eq!(json[3]["head_name"], "compound X", "{json}");
    assert_eq!(json[3]["tail_name"], "", "{json}");
    assert!(
        list.contains("ask:compound_x (compound X) affects alga"),
        "{list}"
    );
    assert!(
        env.ok(&["pinned", "list", "--workflow", "other"])
            .contains("no pinned rows")
    );

    // The next round takes the rows still waiting.
    run_now(&env, &w);
    let round2 = batch(&env, 2);
    assert_eq!(round2.len(), 10, "{round2:?}");
    assert_eq!(
        round2[..2],
        [
            format!("{} 0 {}", h[4].join(" "), ids[6]),
            format!("{} 1 {}", h[5].join(" "), ids[7]),
        ],
        "{round2:?}"
    );
    assert!(round2[2..].iter().all(|l| l.ends_with(" -")), "{round2:?}");

    // Retracted like any other: with the oracle's verdict withdrawn, the edge leaves.
    let admin = user(&env, "carol", "admin");
    let verdict = env.count(&format!(
        "SELECT v.id FROM verdicts v JOIN pinned_candidates p ON p.hypothesis_id = v.hypothesis_id \
         WHERE p.id = {}",
        ids[1]
    ));
    let r = env.json(&[
        "retract",
        &verdict.to_string(),
        "--reason",
        "re-checked",
        "--token",
        &admin,
    ]);
    assert_eq!(r["outcome"], "inconclusive", "{r}");
    let b = env.json(&["graph", "blame", &h[0][0], &h[0][1], &h[0][2]]);
    assert!(!b["history"][0]["removed_in"].is_null(), "{b}");
    env.ok(&["graph", "verify"]);
}

#[test]
fn a_crash_after_ranking_resumes_with_the_same_batch() {
    let h = hidden();
    let first = || {
        submission(vec![
            row(&h[10], 0.6, PinnedOrigin::Prediction),
            row(&h[11], 0.4, PinnedOrigin::Prediction),
        ])
    };
    let straight = Env::new();
    import_visible(&straight);
    submit(&straight, &first()).expect("submit");
    let w = workflow(&straight);
    run_now(&straight, &w);
    let expected = batch(&straight, 1);
    assert_eq!(expected.len(), 10);
    assert_eq!(
        expected.iter().filter(|l| !l.ends_with(" -")).count(),
        2,
        "{expected:?}"
    );

    let env = Env::new();
    import_visible(&env);
    submit(&env, &first()).expect("submit");
    let w = workflow(&env);
    let wp = w.to_str().expect("path");
    let crashed = env.run_with(
        &["run", wp, "--wait", "0s"],
        &[("HYPOGRAPH_CRASH_AT", "ranking")],
    );
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("aborting"),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert_eq!(env.strings("SELECT state FROM rounds"), vec!["ranking"]);
    assert_eq!(env.count("SELECT count(*) FROM hypotheses"), 0);
    assert_eq!(
        statuses(&env),
        vec!["waiting", "waiting"],
        "nothing claimed yet"
    );
    // A row submitted while the round is down waits for the next round: the resumed one
    // takes what it first saw.
    let late = submit(
        &env,
        &submission(vec![row(&h[12], 0.5, PinnedOrigin::Prediction)]),
    )
    .expect("submit");
    assert_eq!(late.version, None, "no new entity: no version");
    let out = run_now(&env, &w);
    assert!(out.contains("resuming round 1"), "{out}");
    assert_eq!(batch(&env, 1), expected);
    assert_eq!(statuses(&env), vec!["claimed", "claimed", "waiting"]);
}

#[test]
fn rows_already_decided_or_on_their_way_are_reported_not_stored() {
    let env = Env::new();
    import_visible(&env);
    let h = hidden();
    submit(
        &env,
        &submission(vec![row(&h[0], 0.5, PinnedOrigin::Prediction)]),
    )
    .expect("submit");
    let w = workflow(&env);
    // Stop the round once its batch is stored: h[0] is under review.
    let out = env.run_with(
        &["run", w.to_str().expect("path"), "--wait", "0s"],
        &[("HYPOGRAPH_CRASH_AT", "dispatching")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("aborting"));
    let refuted = triple("alga", "isa", "alga");
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        store
            .refute(
                [&refuted[0], &refuted[1], &refuted[2]],
                "no",
                &serde_json::json!({}),
            )
            .await
            .expect("refute");
        store.close().await;
    });
    let s = submission(vec![
        row(&h[0], 0.5, PinnedOrigin::Prediction),
        row(&refuted, 0.5, PinnedOrigin::Claim),
        row(&h[1], 0.5, PinnedOrigin::Prediction),
    ]);
    let summary = submit(&env, &s).expect("submit");
    assert_eq!(summary.pinned.len(), 1, "{summary:?}");
    let reasons: Vec<&str> = summary
        .already_known
        .iter()
        .map(|k| k.reason.as_str())
        .collect();
    assert!(
        reasons[0].starts_with("under review in round 1 of `w`"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1], "already refuted");
    // Another workflow has its own queue.
    let mut other = s.clone();
    other.workflow = "v".into();
    assert_eq!(submit(&env, &other).expect("submit").pinned.len(), 2);
}

#[test]
fn bad_submissions_are_errors_that_write_nothing() {
    let env = Env::new();
    import_visible(&env);
    let h = hidden();
    let versions = || env.count("SELECT count(*) FROM graph_versions");
    let before = versions();
    let entity = |key: &str, category: &str| EntityRecord {
        key: key.into(),
        category: category.into(),
        ..EntityRecord::default()
    };
    let with_new = |mut s: AskSubmission| {
        s.entities = vec![entity("ask:new", "")];
        s
    };

    // An entity the graph has is never declared again, whatever its category: its
    // features would be the asker's.
    for category in ["Drug", ""] {
        let mut s = with_new(submission(vec![row(&h[0], 0.5, PinnedOrigin::Prediction)]));
        s.entities.push(entity("alga", category));
        match submit(&env, &s) {
            Err(e @ StoreError::EntityExists { index: 1, .. }) => assert!(
                e.to_string()
                    .contains("`alga` is already in the graph (since version 1)"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
    }
    let s = with_new(submission(vec![row(
        &triple("ask:new", "cures", "alga"),
        0.5,
        PinnedOrigin::Claim,
    )]));
    assert!(matches!(submit(&env, &s), Err(StoreError::UnknownRelation(r)) if r == "cures"));
    let mut s = with_new(submission(vec![]));
    s.asserted = vec![triple("ask:new", "isa", "ask:nowhere")];
    assert!(matches!(submit(&env, &s), Err(StoreError::UnknownEntity(e)) if e == "ask:nowhere"));
    let s = with_new(submission(vec![row(
        &h[0],
        f64::NAN,
        PinnedOrigin::Prediction,
    )]));
    assert!(matches!(submit(&env, &s), Err(StoreError::Conflict(m)) if m.contains("probability")));
    let mut s = submission(vec![]);
    s.entities = vec![entity(" ", "")];
    assert!(matches!(submit(&env, &s), Err(StoreError::Conflict(m)) if m.contains("needs a key")));
    assert_eq!(versions(), before, "nothing written");
    assert_eq!(
        env.count("SELECT count(*) FROM entities WHERE key = 'ask:new'"),
        0
    );
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 0);

    // Naming it as an end of the rows (not declaring it) is how an ask uses it.
    let s = submission(vec![row(&h[0], 0.5, PinnedOrigin::Prediction)]);
    let summary = submit(&env, &s).expect("submit");
    assert_eq!((summary.version, summary.entities_added), (None, 0));
    assert_eq!(versions(), before);
    assert_eq!(
        env.count("SELECT graph_version FROM ask_submissions"),
        before,
        "rows wait for a round on the graph they were submitted against"
    );
}

#[test]
fn reviewers_and_admins_may_ask_services_may_not() {
    let env = Env::new();
    let tokens = [
        (user(&env, "rev", "reviewer"), true),
        (user(&env, "adm", "admin"), true),
        (user(&env, "svc", "service"), false),
    ];
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        for (token, allowed) in &tokens {
            match store.authorize(token, Action::Ask).await {
                Ok(_) => assert!(allowed),
                Err(StoreError::Forbidden(m)) => {
                    assert!(!allowed, "{m}");
                    assert!(m.contains("ask"), "{m}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        store.close().await;
    });
}
