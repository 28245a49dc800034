//! The store's library API: refutations, the in-memory graph, and a killed import.

use crate::support::{Env, data};
use hypograph::graph::{OnInvalid, Triple, tsv};
use hypograph::store::{ImportOptions, OpenMode, Store, StoreError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn refutations_are_recorded_counted_and_blamed() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\nb\tr\tc\n");
    env.ok(&["import", f.to_str().expect("path")]);
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let evidence = serde_json::json!({ "assay": "x", "p": 0.2 });
        // A refutation is versioned data: a version of its own, in the hash chain.
        let first = store
            .refute(["c", "r", "a"], "assay x refutes c r a", &evidence)
            .await
            .expect("refute");
        assert!(
            matches!(first, hypograph::store::Outcome::Committed(ref c) if c.version == 2),
            "{first:?}"
        );
        let again = store
            .refute(["c", "r", "a"], "again", &evidence)
            .await
            .expect("refute again");
        assert!(matches!(again, hypograph::store::Outcome::Unchanged { .. }));
        let err = store.refute(["c", "nope", "a"], "x", &evidence).await;
        assert!(matches!(err, Err(StoreError::UnknownRelation(r)) if r == "nope"));
        assert_eq!(store.refuted(1).await.expect("refuted at 1").len(), 0);
        assert_eq!(store.refuted(2).await.expect("refuted at 2").len(), 1);
        store.close().await;
    });
    assert_eq!(env.json(&["stats"])["refutations"], 1);
    let b = env.json(&["graph", "blame", "c", "r", "a"]);
    assert_eq!(b["refuted"]["evidence"]["assay"], "x");
    assert_eq!(b["refuted"]["version"], 2);
    assert_eq!(b["history"].as_array().map(Vec::len), Some(0));
    env.ok(&["graph", "verify"]);
    // Changing a refutation behind the store's back breaks the chain at its version.
    env.sql("UPDATE refutations SET tail = (SELECT id FROM entities WHERE key = 'b')");
    let out = env.fail(&["graph", "verify"]);
    assert!(out.contains("version 2"), "{out}");
}

#[test]
fn loaded_graph_answers_lookups_like_the_file() {
    let env = Env::new();
    let train = data("umls/train.txt");
    env.ok(&["import", train.to_str().expect("path")]);
    let text = std::fs::read_to_string(&train).expect("read");
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let g = store.load_graph(1).await.expect("graph");
        assert_eq!(
            (g.num_entities(), g.num_relations(), g.num_triples()),
            (135, 46, 5216)
        );
        for line in text.lines().take(200) {
            let f: Vec<&str> = line.split('\t').collect();
            let t = Triple::new(
                g.entity_id(f[0]).expect("head"),
                g.relation_id(f[1]).expect("relation"),
                g.entity_id(f[2]).expect("tail"),
            );
            assert!(g.contains(t), "{line}");
            assert!(g.tails(t.head, t.relation).any(|x| x == t.tail));
            assert!(g.heads(t.relation, t.tail).any(|x| x == t.head));
        }
        let isa = g.relation_id("isa").expect("isa");
        let absent = (0..135u32)
            .flat_map(|h| (0..135u32).map(move |t| Triple::new(h, isa, t)))
            .find(|t| {
                !text.contains(&format!(
                    "{}\tisa\t{}\n",
                    g.entity_key(t.head),
                    g.entity_key(t.tail)
                ))
            })
            .expect("some absent isa edge");
        assert!(!g.contains(absent));
        store.close().await;
    });
}

#[test]
fn import_api_is_idempotent() {
    let env = Env::new();
    let batch = tsv::parse_triples(b"a\tr\tb\n", std::path::Path::new("x"), OnInvalid::Fail)
        .expect("parse");
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Create)
            .await
            .expect("open");
        let opts = ImportOptions::default();
        let first = store.import(&batch, &opts).await.expect("import");
        let second = store.import(&batch, &opts).await.expect("import");
        assert!(matches!(first, hypograph::store::Outcome::Committed(_)));
        assert!(matches!(
            second,
            hypograph::store::Outcome::Unchanged {
                head: Some(1),
                triples: 1
            }
        ));
        store.close().await;
    });
}

/// SIGKILL in the middle of an import leaves either no version or a complete one, never a
/// partial one; importing again completes the graph.
#[test]
fn killed_import_leaves_no_partial_version() {
    let env = Env::new();
    let mut text = String::new();
    for i in 0..300_000u32 {
        text.push_str(&format!(
            "e{}\tr{}\te{}\n",
            i % 5000,
            i % 7,
            (i * 7919) % 5000
        ));
    }
    let f = env.write("big.tsv", &text);
    let expected = crate::support::sorted_lines(&text);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .arg("import")
        .arg(&f)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Ready to kill once the write transaction has started filling the WAL.
    let wal = env.db.with_extension("db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(&wal).map_or(0, |m| m.len()) < 4096
        && child.try_wait().expect("poll").is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "import never started writing"
        );
        std::thread::yield_now();
    }
    child.kill().ok();
    child.wait().expect("reap");

    let versions = env.json(&["graph", "log"]).as_array().map(Vec::len);
    env.ok(&["graph", "verify"]);
    match versions {
        Some(0) => {}
        Some(1) => assert_eq!(env.export("HEAD"), expected),
        other => panic!("unexpected history {other:?}"),
    }
    env.ok(&["import", f.to_str().expect("path")]);
    assert_eq!(env.export("HEAD"), expected);
    env.ok(&["graph", "verify"]);
}

/// The per-stage bookkeeping an asynchronous stage relies on: answers only for waiting
/// hypotheses, duplicates change nothing, overdue items expire and are kept.
#[test]
fn stage_items_answer_once_and_expire_visibly() {
    use hypograph::plugin::{Outcome, Verdict};
    use hypograph::store::{NewHypothesis, RoundState, RoundUpdate};
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\nb\tr\tc\nc\tr\td\n");
    env.ok(&["import", f.to_str().expect("path")]);
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let round = store
            .create_round("w", "name: w", 1, None)
            .await
            .expect("round");
        to_ranking(&store, round.id).await;
        // A stale step is refused: another process already moved the round.
        assert!(matches!(
            store
                .advance_round(
                    round.id,
                    RoundState::Planned,
                    RoundState::Training,
                    0,
                    RoundUpdate::default()
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        let batch: Vec<NewHypothesis> = [("a", "c"), ("b", "d"), ("a", "d")]
            .iter()
            .enumerate()
            .map(|(i, (h, t))| NewHypothesis {
                head: (*h).into(),
                relation: "r".into(),
                tail: (*t).into(),
                score: 0.5,
                spread: 0.1,
                acquisition: 0.5 - i as f64 * 0.1,
                rank: i as i64,
                base_score: Some(0.4),
                model_paths: None,
            })
            .collect();
        store
            .insert_hypotheses(round.id, RoundState::Ranking, None, 1, &[], &batch)
            .await
            .expect("insert");
        let queued = store
            .stage_items(round.id, 0, "queued")
            .await
            .expect("items");
        let ids: Vec<i64> = queued.iter().map(|h| h.id).collect();
        assert_eq!(ids.len(), 3);
        store
            .mark_submitted(0, &ids, Some("2000-01-01T00:00:00.000Z"))
            .await
            .expect("submit");
        let verdict = |id: i64| Verdict {
            hypothesis: id,
            verdict: Outcome::Confirmed,
            confidence: 0.9,
            evidence: serde_json::json!({ "assay": "ok" }),
            cost: 1.0,
            reviewer: None,
        };
        let r = store
            .record_verdicts(round.id, 0, &[verdict(ids[0]), verdict(9999)])
            .await
            .expect("record");
        assert_eq!(
            (r.accepted, r.duplicates, r.rejected.clone()),
            (1, 0, vec![9999])
        );
        let again = store
            .record_verdicts(round.id, 0, &[verdict(ids[0])])
            .await
            .expect("record");
        assert_eq!(
            (again.accepted, again.duplicates),
            (0, 1),
            "a repeated answer changes nothing"
        );
        let expired = store
            .expire_items(round.id, 0, "2001-01-01T00:00:00.000Z")
            .await
            .expect("expire");
        assert_eq!(expired, 2);
        let late = store
            .record_verdicts(round.id, 0, &[verdict(ids[1])])
            .await
            .expect("record");
        assert_eq!(late.rejected, vec![ids[1]], "no answer after expiry");
        let counts = store.hypothesis_counts(round.id).await.expect("counts");
        assert_eq!(counts.get("expired"), Some(&2));
        assert_eq!(counts.get("active"), Some(&1));
        assert_eq!(store.verdicts(ids[0]).await.expect("verdicts").len(), 1);
        store.close().await;
    });
}

/// An item reopened (an undo, a retraction) after the engine counted none open must keep the
/// stage from closing: the check happens inside the closing transaction.
#[test]
fn a_stage_with_a_reopened_item_does_not_close() {
    use hypograph::plugin::{Outcome, Verdict};
    use hypograph::store::{NewHypothesis, RoundState, RoundUpdate};
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\nb\tr\tc\nc\tr\td\n");
    env.ok(&["import", f.to_str().expect("path")]);
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let round = store
            .create_round("w", "name: w", 1, None)
            .await
            .expect("round");
        assert!(
            matches!(
                store.create_round("w", "name: w", 1, None).await,
                Err(StoreError::Conflict(m)) if m.contains("already has an open round")
            ),
            "one open round per workflow"
        );
        to_ranking(&store, round.id).await;
        let batch: Vec<NewHypothesis> = [("a", "c"), ("b", "d")]
            .iter()
            .enumerate()
            .map(|(i, (h, t))| NewHypothesis {
                head: (*h).into(),
                relation: "r".into(),
                tail: (*t).into(),
                score: 0.5,
                spread: 0.1,
                acquisition: 0.5,
                rank: i as i64,
                base_score: None,
                model_paths: None,
            })
            .collect();
        store
            .insert_hypotheses(round.id, RoundState::Ranking, None, 1, &[], &batch)
            .await
            .expect("insert");
        let ids: Vec<i64> = store
            .stage_items(round.id, 0, "queued")
            .await
            .expect("items")
            .iter()
            .map(|h| h.id)
            .collect();
        store.mark_submitted(0, &ids, None).await.expect("submit");
        store
            .advance_round(
                round.id,
                RoundState::Dispatching,
                RoundState::Awaiting,
                0,
                RoundUpdate::default(),
            )
            .await
            .expect("awaiting");
        let verdict = |id: i64| Verdict {
            hypothesis: id,
            verdict: Outcome::Confirmed,
            confidence: 0.9,
            evidence: serde_json::json!({}),
            cost: 0.0,
            reviewer: None,
        };
        // Only the first is answered: the second is still open when the close comes.
        store
            .record_verdicts(round.id, 0, &[verdict(ids[0])])
            .await
            .expect("record");
        let close = || {
            store.close_stage(
                round.id,
                0,
                &[Outcome::Confirmed],
                true,
                false,
                RoundState::Awaiting,
                RoundState::Ingesting,
                0,
            )
        };
        assert_eq!(close().await.expect("close"), None, "nothing written");
        let r = store.round(round.id).await.expect("round");
        assert_eq!(r.state, RoundState::Awaiting);
        assert_eq!(
            store
                .hypothesis_counts(round.id)
                .await
                .expect("counts")
                .get("active"),
            Some(&2)
        );
        store
            .record_verdicts(round.id, 0, &[verdict(ids[1])])
            .await
            .expect("record");
        let closed = close().await.expect("close").expect("closed now");
        assert_eq!(closed.confirmed, 2);
        assert_eq!(
            store.round(round.id).await.expect("round").state,
            RoundState::Ingesting
        );
        store.close().await;
    });
}

/// Moves a new round to `ranking`, as training and generation would.
async fn to_ranking(store: &Store, round: i64) {
    use hypograph::store::{RoundState, RoundUpdate};
    for (from, to) in [
        (RoundState::Planned, RoundState::Training),
        (RoundState::Training, RoundState::Generating),
        (RoundState::Generating, RoundState::Ranking),
    ] {
        store
            .advance_round(round, from, to, 0, RoundUpdate::default())
            .await
            .expect("advance");
    }
}
