//! The walk transformer (`model: walks`) wherever a model is used: `train`, `eval`, `predict`,
//! warm start, checkpoints, `simulate`, `ask` and a workflow's rounds, through the binary.

use crate::support::{Env, data, run_now};
use hypograph::model::{ModelKind, TrainConfig, WalkConfig};
use serde_json::Value;

/// A small, fast walk model: what the tests can afford to train in seconds.
fn small_config(env: &Env) -> String {
    let config = TrainConfig::new()
        .with_model(ModelKind::Walks)
        .with_walks(Some(
            WalkConfig::new()
                .with_d_model(32)
                .with_heads(2)
                .with_d_ff(64)
                .with_layers(1)
                .with_context_walks(2)
                .with_walk_length(2)
                .with_batch_size(128)
                .with_lr(0.005),
        ));
    let text = serde_json::to_string_pretty(&config).expect("config");
    env.write("walks.json", text)
        .to_str()
        .expect("path")
        .to_owned()
}

/// The directory of the one model trained in `env`.
fn model_dir(env: &Env) -> std::path::PathBuf {
    let models = env.dir.path().join("hypograph-data/models");
    std::fs::read_dir(&models)
        .expect("models")
        .next()
        .expect("one model")
        .expect("entry")
        .path()
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("path")
}

#[test]
fn walk_model_trains_evaluates_predicts_reloads_and_warm_starts() {
    let env = Env::new();
    env.ok(&["import", path(&data("umls/train.txt"))]);
    let config = small_config(&env);
    let out = env.ok(&[
        "train",
        "--config",
        &config,
        "--epochs",
        "6",
        "--eval-every",
        "3",
        "--valid",
        path(&data("umls/valid.txt")),
    ]);
    assert!(
        out.starts_with("model 1: walks d_model 32, 1 layer on version 1, 6 epochs"),
        "{out}"
    );
    let dir = model_dir(&env);
    for f in [
        "member-0/weights.bpk",
        "member-0/walks.json",
        "member-0/config.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(
        dir.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("-walks-")),
        "{dir:?}"
    );

    // Evaluation reloads the checkpoint (checksum checked) and reads the graph as context.
    let report = env.json(&["eval", "--test", path(&data("umls/test.txt"))]);
    assert_eq!(report["metrics"]["both"]["count"], 2 * 661);
    let mrr = report["metrics"]["both"]["mrr"].as_f64().expect("mrr");
    assert!(
        mrr > 0.25,
        "6 epochs of the walk model should be far above random (0.04): {mrr}"
    );
    // The same question twice gives the same answer (context walks seeded by the query).
    let again = env.json(&["eval", "--test", path(&data("umls/test.txt"))]);
    assert_eq!(again["metrics"], report["metrics"]);

    let c = env.write(
        "c.tsv",
        "acquired_abnormality\tlocation_of\texperimental_model_of_disease\ncell\tisa\tcell\n",
    );
    let rows = env.json(&["predict", path(&c)]);
    for row in rows.as_array().expect("rows") {
        let p = row["probability"].as_f64().expect("p");
        assert!((0.0..=1.0).contains(&p), "{row}");
    }

    // A new entity in the graph: the next training grows the model from the checkpoint.
    let extra = env.write("extra.tsv", "new_entity\tisa\tcell\n");
    env.ok(&["import", path(&extra)]);
    let warm = env.json(&["train", "--config", &config, "--epochs", "1"]);
    assert_eq!(warm["parent_id"], 1);
    assert_eq!(warm["kind"], "walks");
    // A shallow model cannot warm-start from it: trained from scratch.
    let other = env.json(&["train", "--epochs", "1", "--dim", "16"]);
    assert!(other["parent_id"].is_null(), "{other}");
}

#[test]
fn simulate_runs_with_walk_members() {
    let env = Env::new();
    let out = env.path("sim");
    let config = small_config(&env);
    let stdout = env.ok(&[
        "simulate",
        path(&data("umls/train.txt")),
        "--test",
        path(&data("umls/test.txt")),
        "--model",
        "walks",
        "--config",
        &config,
        "--rounds",
        "2",
        "--seeds",
        "1",
        "--batch",
        "10",
        "--strategies",
        "greedy",
        "--epochs",
        "3",
        "--retrain-epochs",
        "1",
        "--ensemble",
        "2",
        "--out",
        path(&out),
    ]);
    assert!(stdout.contains("| greedy |"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("rounds.csv")).expect("csv");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let mrr_col = header
        .iter()
        .position(|c| *c == "test_mrr")
        .expect("test_mrr column");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for r in &rows {
        let mrr: f64 = r[mrr_col].parse().expect("mrr");
        assert!(mrr > 0.1, "{csv}");
    }
}

/// Mean probability of the `treats` rows whose disease is in `cluster`, among all rows.
/// `ask` about a new compound claimed to bind `genes` on the clustered graph: its top 12
/// `treats` answers.
pub fn ask_new_compound(env: &Env, genes: [&str; 2]) -> Value {
    env.json(&[
        "ask",
        "--entity",
        "new-mol",
        "--category",
        "Compound",
        "--edge",
        &format!("new-mol binds {}", genes[0]),
        "--edge",
        &format!("new-mol binds {}", genes[1]),
        "--predict",
        "new-mol treats ?",
        "--top",
        "12",
    ])
}

/// An answer's 12 row probabilities, checked to come best first.
pub fn sorted_probabilities(answer: &Value) -> Vec<f64> {
    let rows = answer["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 12, "{answer}");
    let p: Vec<f64> = rows
        .iter()
        .map(|r| r["probability"].as_f64().expect("p"))
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "sorted: {p:?}");
    p
}

pub fn cluster_mean(answer: &Value, cluster: usize) -> f64 {
    let rows = answer["rows"].as_array().expect("rows");
    let p: Vec<f64> = rows
        .iter()
        .filter(|r| {
            r["tail"]
                .as_str()
                .and_then(|t| t[1..].parse::<usize>().ok())
                .is_some_and(|d| d % 3 == cluster)
        })
        .map(|r| r["probability"].as_f64().expect("p"))
        .collect();
    p.iter().sum::<f64>() / p.len().max(1) as f64
}

#[test]
fn ask_reads_the_prompt_as_context_without_fitting() {
    let env = Env::new();
    // Three clusters (`ask.rs`); the walk model reads the edges, not the features.
    crate::ask::import_clustered(&env);
    let config = small_config(&env);
    env.ok(&[
        "train",
        "--config",
        &config,
        "--epochs",
        "40",
        "--eval-every",
        "0",
        "--ensemble",
        "2",
    ]);
    let ask = |genes: [&str; 2]| ask_new_compound(&env, genes);
    let zero = ask(["G0", "G6"]);
    let p = sorted_probabilities(&zero);
    assert!(p.iter().all(|x| (0.0..=1.0).contains(x)), "{p:?}");
    assert_eq!(zero["entities"][0]["basis"], "edges");
    assert_eq!(zero["entities"][0]["edges"], 2);
    assert!(
        !zero["entities"][0]["similar"]
            .as_array()
            .expect("similar")
            .is_empty(),
        "{zero}"
    );
    // Claims' probabilities before they were read.
    for c in zero["claims"].as_array().expect("claims") {
        let p = c["prior_probability"].as_f64().expect("prior");
        assert!((0.0..=1.0).contains(&p), "{c}");
    }
    // The context decides: genes of cluster 0 favour cluster-0 diseases, genes of cluster 1
    // cluster-1 diseases.
    let one = ask(["G1", "G7"]);
    assert!(
        cluster_mean(&zero, 0) > cluster_mean(&zero, 1),
        "cluster-0 genes: {zero}"
    );
    assert!(
        cluster_mean(&one, 1) > cluster_mean(&one, 0),
        "cluster-1 genes: {one}"
    );
    // No edges, only features (the graph's feature vectors say the cluster): read through the
    // feature map the model learned for compounds.
    let featured = env.json(&[
        "ask",
        "--entity",
        "feat-mol",
        "--category",
        "Compound",
        "--vector",
        "0.0,1.0,0.05,0.1",
        "--predict",
        "feat-mol treats ?",
        "--top",
        "12",
    ]);
    assert_eq!(featured["entities"][0]["basis"], "features", "{featured}");
    assert_eq!(featured["entities"][0]["prior"], "vector", "{featured}");
    assert!(
        cluster_mean(&featured, 1) > cluster_mean(&featured, 0),
        "cluster-1 features: {featured}"
    );
}

#[test]
fn a_workflow_round_trains_and_ranks_with_the_walk_model() {
    let env = Env::new();
    let visible = data("umls/demo-visible.tsv");
    let hidden = data("umls/demo-hidden.tsv");
    let wf = env.write(
        "walks.yaml",
        format!(
            "name: walks-demo
graph:
  import: {}
model:
  kind: walks
  epochs: 12
  retrain_epochs: 1
  ensemble: 1
  walks: {{d_model: 32, heads: 2, d_ff: 64, layers: 1, context_walks: 2, batch_size: 128, lr: 0.005}}
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
            visible.display(),
            hidden.display()
        ),
    );
    let out = run_now(&env, &wf);
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE state = 'done'"),
        1,
        "{out}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM hypotheses WHERE status IN ('confirmed', 'refuted')"),
        20,
        "{out}"
    );
    // Greedy on the walk model's probabilities finds true edges (random finds ~0 of 20).
    assert!(
        env.count("SELECT count(*) FROM hypotheses WHERE status = 'confirmed'") >= 2,
        "{out}"
    );
    assert_eq!(
        env.strings("SELECT kind FROM models ORDER BY id"),
        vec!["walks".to_string(), "walks".to_string()]
    );
}

#[test]
fn walk_settings_out_of_range_are_located_errors() {
    let env = Env::new();
    let wf = env.write(
        "bad.yaml",
        "name: w
graph:
  import: g.tsv
model:
  kind: walks
  walks:
    d_model: 30
    heads: 4
    id_dropout: 1.5
stages:
  - name: assay
    plugin: oracle
    truth: g.tsv
",
    );
    env.write("g.tsv", "a\tr\tb\n");
    let err = env.fail(&["validate", path(&wf)]);
    assert!(
        err.contains("model.walks.d_model: 30 must be a positive multiple of heads (4)"),
        "{err}"
    );
    assert!(
        err.contains("model.walks.id_dropout: 1.5 is out of range [0, 1)"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:7:"),
        "the d_model line is named: {err}"
    );
    let shallow = env.write(
        "shallow.yaml",
        std::fs::read_to_string(&wf)
            .expect("text")
            .replace("kind: walks", "kind: complex")
            .replace(
                "    d_model: 30\n    heads: 4\n    id_dropout: 1.5\n",
                "    layers: 2\n",
            ),
    );
    let err = env.fail(&["validate", path(&shallow)]);
    assert!(
        err.contains("model.walks: is read only with `kind: walks`, not `complex`"),
        "{err}"
    );
}

/// The walk model at scale, through the binary: a fixed query budget per epoch and a sampled
/// softmax over each relation's range (flags saved in the checkpoint's config), and a scorer
/// that ranks only the range: a compound "treats" a gene scores below every disease.
#[test]
fn a_sampled_softmax_walk_model_trains_and_ranks_only_the_range() {
    let env = Env::new();
    // 12 compounds, 6 diseases, 8 genes (categories from the keys); compound i treats
    // disease i % 6 and binds genes i % 8 and (i + 1) % 8.
    let mut graph = String::new();
    for i in 0..12 {
        graph += &format!("Compound::{i}\ttreats\tDisease::{}\n", i % 6);
        graph += &format!("Compound::{i}\tbinds\tGene::{}\n", i % 8);
        graph += &format!("Compound::{i}\tbinds\tGene::{}\n", (i + 1) % 8);
    }
    let file = env.write("g.tsv", graph);
    env.ok(&[
        "import",
        path(&file),
        "--no-header",
        "--delimiter",
        "tab",
        "--map",
        "subject=1,predicate=2,object=3,category_from_key=::",
    ]);
    let config = small_config(&env);
    let out = env.json(&[
        "train",
        "--config",
        &config,
        "--epochs",
        "3",
        "--queries-per-epoch",
        "40",
        "--sampled-negatives",
        "4",
        "--entity-lr",
        "0.02",
    ]);
    assert_eq!(out["kind"], "walks", "{out}");
    let dir = model_dir(&env);
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("member-0/config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(saved["walks"]["queries_per_epoch"], 40, "{saved}");
    assert_eq!(saved["walks"]["sampled_negatives"], 4, "{saved}");
    assert_eq!(saved["walks"]["entity_lr"], 0.02, "{saved}");

    let c = env.write(
        "c.tsv",
        "Compound::0\ttreats\tDisease::3\nCompound::0\ttreats\tGene::5\n",
    );
    let rows = env.json(&["predict", path(&c)]);
    let p = |i: usize| rows[i]["probability"].as_f64().expect("probability");
    assert!(
        p(1) < p(0) && p(1) < 1e-3,
        "a gene is outside treats' range: {rows}"
    );

    // A bad budget is refused with the flag's range.
    let bad = env.run(&["train", "--model", "walks", "--sampled-negatives", "0"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("sampled-negatives"), "{err}");
}
