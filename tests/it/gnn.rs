//! The message-passing models (`model: ultra`, `model: gnn`) through the binary: zero-shot from
//! the embedded checkpoint, fine-tuning, checkpoints, `eval`, `predict`, `ask` with new
//! entities joining the graph, a workflow round, and a kill in the middle of fine-tuning.

use crate::support::{Env, data, run_now};
use crate::walks::{ask_new_compound, cluster_mean, sorted_probabilities};
use serde_json::Value;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("path")
}

/// The first `n` UMLS test triples: every query is a pass over the graph, and the tests'
/// build is unoptimized.
fn umls_test(env: &Env, n: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(data("umls/test.txt")).expect("test");
    let lines: Vec<&str> = text.lines().take(n).collect();
    env.write("test-head.tsv", lines.join("\n") + "\n")
}

/// The directories of the models trained in `env`, oldest first.
fn model_dirs(env: &Env) -> Vec<std::path::PathBuf> {
    let models = env.dir.path().join("hypograph-data/models");
    let mut dirs: Vec<_> = std::fs::read_dir(&models)
        .expect("models")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn ultra_answers_zero_shot_fine_tunes_and_reloads() {
    let env = Env::new();
    env.ok(&["import", path(&data("umls/train.txt"))]);
    // Zero-shot: the embedded checkpoint as it is, no training.
    let out = env.ok(&["train", "--model", "ultra", "--epochs", "0"]);
    assert!(
        out.starts_with("model 1: ultra dim 64, 6 layers on version 1, 0 epochs"),
        "{out}"
    );
    let dir = &model_dirs(&env)[0];
    for f in [
        "member-0/weights.bpk",
        "member-0/gnn.json",
        "member-0/config.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let test = umls_test(&env, 40);
    let report = env.json(&["eval", "--test", path(&test)]);
    assert_eq!(report["metrics"]["both"]["count"], 2 * 40);
    let zero_shot = report["metrics"]["both"]["mrr"].as_f64().expect("mrr");
    // Random ranking gets about 0.04, popularity about 0.66; ULTRA never saw UMLS and reaches
    // popularity zero-shot (BENCHMARKS.md has the whole test set).
    assert!(zero_shot > 0.35, "zero-shot MRR {zero_shot}");
    assert!(
        report["calibration"]["after"]["ece"].is_number(),
        "{report}"
    );
    let bare = env.json(&["eval", "--test", path(&test), "--no-calibration"]);
    assert!(bare["calibration"].is_null(), "{bare}");
    assert_eq!(bare["metrics"], report["metrics"]);

    let c = env.write(
        "c.tsv",
        "acquired_abnormality\tlocation_of\texperimental_model_of_disease\ncell\tisa\tcell\n",
    );
    let rows = env.json(&["predict", path(&c)]);
    assert_eq!(rows.as_array().expect("rows").len(), 2);
    for row in rows.as_array().expect("rows") {
        let p = row["probability"].as_f64().expect("p");
        assert!((0.0..=1.0).contains(&p), "{row}");
    }

    // Fine-tuning warm-starts from the zero-shot model: a few steps of masked-edge
    // prediction on this graph.
    let tuned = env.json(&[
        "train",
        "--model",
        "ultra",
        "--epochs",
        "1",
        "--queries-per-epoch",
        "48",
        "--batch-size",
        "8",
        "--negatives",
        "32",
    ]);
    assert_eq!(tuned["kind"], "ultra", "{tuned}");
    assert_eq!(tuned["parent_id"], 1, "{tuned}");
    let dirs = model_dirs(&env);
    let config: Value = serde_json::from_slice(
        &std::fs::read(dirs[1].join("member-0/config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(config["gnn"]["queries_per_epoch"], 48, "{config}");
    let a = std::fs::read(dirs[0].join("member-0/weights.bpk")).expect("weights");
    let b = std::fs::read(dirs[1].join("member-0/weights.bpk")).expect("weights");
    assert_ne!(a, b, "fine-tuning changed the weights");
    let after = env.json(&["eval", "--test", path(&test)]);
    let tuned_mrr = after["metrics"]["both"]["mrr"].as_f64().expect("mrr");
    assert!(tuned_mrr > 0.1, "fine-tuned MRR {tuned_mrr}");

    // A checkpoint of ULTRA that is not one is refused by name.
    let bad = env.write("bad.pth", "not a checkpoint");
    let err = env.fail(&[
        "train",
        "--model",
        "ultra",
        "--epochs",
        "0",
        "--cold",
        "--weights",
        path(&bad),
    ]);
    assert!(
        err.contains("bad.pth") && err.contains("not a PyTorch zip checkpoint"),
        "{err}"
    );
}

#[test]
fn a_network_trains_from_scratch() {
    let env = Env::new();
    env.ok(&["import", path(&data("umls/train.txt"))]);
    let out = env.ok(&[
        "train",
        "--model",
        "gnn",
        "--dim",
        "16",
        "--layers",
        "2",
        "--epochs",
        "2",
        "--queries-per-epoch",
        "320",
        "--lr",
        "0.01",
        "--negatives",
        "32",
    ]);
    assert!(
        out.starts_with("model 1: gnn dim 16, 2 layers on version 1, 2 epochs"),
        "{out}"
    );
    let test = umls_test(&env, 60);
    let report = env.json(&["eval", "--test", path(&test)]);
    let mrr = report["metrics"]["both"]["mrr"].as_f64().expect("mrr");
    // Random weights rank at random (about 0.04); 640 training queries move well above it.
    assert!(mrr > 0.15, "{mrr}");
}

#[test]
fn a_new_entity_joins_the_graph_for_its_question_only() {
    let env = Env::new();
    crate::ask::import_clustered(&env);
    // Fine-tuned a little on this graph: zero-shot, the published weights do not separate
    // its clusters (BENCHMARKS.md).
    env.ok(&[
        "train",
        "--model",
        "ultra",
        "--epochs",
        "2",
        "--queries-per-epoch",
        "160",
        "--lr",
        "0.005",
        "--negatives",
        "16",
    ]);
    let before = env.ok(&["graph", "log"]);
    let ask = |genes: [&str; 2]| ask_new_compound(&env, genes);
    let zero = ask(["G0", "G6"]);
    let rows = zero["rows"].as_array().expect("rows");
    sorted_probabilities(&zero);
    for c in zero["claims"].as_array().expect("claims") {
        let p = c["prior_probability"].as_f64().expect("prior");
        assert!((0.0..=1.0).contains(&p), "{c}");
    }
    // The claimed edges decide, read as paths (binds -> bound by other compounds -> treats):
    // cluster-0 genes favour cluster-0 diseases, cluster-1 genes cluster-1 diseases.
    let one = ask(["G1", "G7"]);
    assert!(
        cluster_mean(&zero, 0) > cluster_mean(&zero, 1),
        "cluster-0 genes: {zero}"
    );
    assert!(
        cluster_mean(&one, 1) > cluster_mean(&one, 0),
        "cluster-1 genes: {one}"
    );
    // The top rows' evidence is the model's own: paths from the new compound to the
    // answer, each with its share of the score.
    for row in &rows[..3] {
        let paths = row["paths"].as_array().expect("paths");
        assert!(!paths.is_empty(), "{row}");
        for p in paths {
            let share = p["share"].as_f64().expect("a model path has a share");
            assert!(share > 0.0 && share <= 1.0, "{p}");
            let steps = p["steps"].as_array().expect("steps");
            assert_eq!(steps[0]["from"], "new-mol", "{p}");
            assert_eq!(steps[steps.len() - 1]["to"], row["tail"], "{p}");
        }
    }
    // The stored graph is untouched.
    assert_eq!(env.ok(&["graph", "log"]), before);
}

/// A model path as stored with a hypothesis: its steps join `head` to `tail` and its share
/// lies in (0, 1].
fn check_model_path(p: &Value, head: &str, tail: &str) {
    let share = p["share"].as_f64().expect("share");
    assert!(share > 0.0 && share <= 1.0, "{p}");
    let steps = p["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["from"], head, "{p}");
    assert_eq!(steps[steps.len() - 1]["to"], tail, "{p}");
    for w in steps.windows(2) {
        assert_eq!(w[0]["to"], w[1]["from"], "{p}");
    }
}

#[test]
fn review_cards_show_the_paths_the_model_read() {
    let env = Env::new();
    let alice = crate::support::user(&env, "alice", "reviewer");
    let server = crate::support::Server::start(&env, &[]);
    let wf = ultra_yaml(
        &env,
        "",
        "generate:
  relations: [treats]
  top_k: 20
rank:
  acquisition: greedy
  batch: 4
stages:
  - name: experts
    plugin: human
seed: 3
",
    );
    run_now(&env, &wf);
    let rows = env.strings(
        "SELECT head.key || ' ' || tail.key || ' ' || COALESCE(h.model_paths, 'NULL') FROM hypotheses h \
         JOIN entities head ON head.id = h.head JOIN entities tail ON tail.id = h.tail \
         ORDER BY h.rank",
    );
    assert_eq!(rows.len(), 4);
    let rows: Vec<&String> = rows.iter().filter(|r| !r.ends_with(" NULL")).collect();
    assert!(
        !rows.is_empty(),
        "the model explains some of its hypotheses"
    );
    for row in &rows {
        let mut parts = row.splitn(3, ' ');
        let (head, tail, json) = (
            parts.next().expect("head"),
            parts.next().expect("tail"),
            parts.next().expect("paths"),
        );
        let paths: Value = serde_json::from_str(json).expect("stored JSON");
        let paths = paths.as_array().expect("a list");
        assert!(!paths.is_empty(), "{row}");
        for p in paths {
            check_model_path(p, head, tail);
        }
    }
    // Reviewers see them on the cards, and plugins in the queue's items.
    let (_, q) = crate::support::get_json(&format!("{}/api/v1/queue", server.base), &alice);
    let items = q["items"].as_array().expect("items");
    assert_eq!(items.len(), 4, "{q}");
    let explained: Vec<&Value> = items
        .iter()
        .filter(|i| !i["model_paths"].is_null())
        .collect();
    assert_eq!(explained.len(), rows.len(), "{q}");
    for item in explained {
        let paths = item["model_paths"]
            .as_array()
            .expect("model paths in the API");
        check_model_path(
            &paths[0],
            item["head"].as_str().expect("head"),
            item["tail"].as_str().expect("tail"),
        );
    }
    let html = crate::support::queue_page(&server.base, &alice);
    let cards: Vec<&str> = html.split("<div class=\"card").skip(1).collect();
    assert_eq!(cards.len(), 4, "{html}");
    let shown = cards.iter().filter(|c| c.contains("model path: ")).count();
    assert_eq!(shown, rows.len(), "{html}");
    assert_eq!(
        html.matches("% of the score)").count(),
        html.matches("model path: ").count()
    );
}

/// A workflow on the UMLS demo graph with a zero-shot ULTRA model: `model` adds settings
/// under `model:`, `rest` the sections after it.
fn ultra_yaml(env: &Env, model: &str, rest: &str) -> std::path::PathBuf {
    env.write(
        "ultra.yaml",
        format!(
            "name: w
graph:
  import: {}
model:
  kind: ultra
  epochs: 0
  ensemble: 1
  calibration: none
{model}{rest}",
            data("umls/demo-visible.tsv").display()
        ),
    )
}

fn ultra_workflow(env: &Env) -> std::path::PathBuf {
    ultra_yaml(
        env,
        "  retrain_epochs: 1
  gnn: {queries_per_epoch: 24, batch_size: 8, negatives: 16}
",
        &format!(
            "generate:
  relations: [treats, prevents]
  top_k: 60
rank:
  acquisition: greedy
  batch: 20
stages:
  - name: assay
    plugin: oracle
    truth: {}
stop:
  max_rounds: 1
seed: 3
",
            data("umls/demo-hidden.tsv").display()
        ),
    )
}

#[test]
fn a_workflow_round_runs_with_ultra_and_a_kill_while_fine_tuning_resumes() {
    let straight = Env::new();
    let wf = ultra_workflow(&straight);
    let out = run_now(&straight, &wf);
    assert_eq!(
        straight.count("SELECT count(*) FROM rounds WHERE state = 'done'"),
        1,
        "{out}"
    );
    assert_eq!(
        straight.count("SELECT count(*) FROM hypotheses WHERE status IN ('confirmed', 'refuted')"),
        20,
        "{out}"
    );
    assert_eq!(
        straight.strings("SELECT kind FROM models ORDER BY id"),
        vec!["ultra".to_string(), "ultra".to_string()],
        "zero-shot for ranking, then fine-tuned on the round's new version"
    );
    let expected = straight.strings("SELECT hash FROM graph_versions ORDER BY id DESC LIMIT 1");

    // The same workflow killed in the middle of its retraining (after the first step of
    // fine-tuning), then run again.
    let env = Env::new();
    let wf = ultra_workflow(&env);
    let wp = path(&wf);
    let crashed = env.run_with(&["run", wp], &[("HYPOGRAPH_CRASH_AT", "fine-tuning")]);
    assert!(!crashed.status.success());
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("HYPOGRAPH_CRASH_AT=fine-tuning"),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert_eq!(
        env.strings("SELECT state FROM rounds WHERE number = 1"),
        vec!["retraining".to_owned()]
    );
    let out = env.ok(&["run", wp]);
    assert!(out.contains("resuming round 1"), "{out}");
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE state = 'done'"),
        1
    );
    assert_eq!(
        env.strings("SELECT hash FROM graph_versions ORDER BY id DESC LIMIT 1"),
        expected,
        "a killed and resumed run ends with the straight run's graph"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM models"),
        2,
        "one model per training"
    );
}
