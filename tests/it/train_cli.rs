//! `hypograph train` and `hypograph eval` through the binary.

use crate::support::{Env, data};

/// The single entry of a directory (a models directory after one training).
fn only_entry(dir: &std::path::Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.remove(0)
}

fn trained() -> Env {
    let env = Env::new();
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    let out = env.ok(&[
        "train",
        "--epochs",
        "8",
        "--dim",
        "32",
        "--eval-every",
        "4",
        "--valid",
        data("umls/valid.txt").to_str().expect("path"),
    ]);
    assert!(
        out.starts_with("model 1: complex dim 32 on version 1, 8 epochs"),
        "{out}"
    );
    env
}

#[test]
fn train_then_eval_umls() {
    let env = trained();
    let models = env.dir.path().join("hypograph-data/models");
    let dir = only_entry(&models);
    for f in [
        "member-0/weights.bpk",
        "member-0/config.json",
        "member-0/vocab.json",
        "calibration.json",
        "reliability.svg",
        "curve.csv",
        "curve.svg",
        "valid.tsv",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("curve.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(
        csv.lines()
            .nth(4)
            .is_some_and(|l| l.split(',').nth(2).is_some_and(|m| !m.is_empty()))
    );

    let report = env.json(&[
        "eval",
        "--test",
        data("umls/test.txt").to_str().expect("path"),
    ]);
    assert_eq!(report["metrics"]["both"]["count"], 2 * 661);
    let mrr = report["metrics"]["both"]["mrr"].as_f64().expect("mrr");
    assert!(
        mrr > 0.5,
        "8 epochs of ComplEx should be far above random (0.04): {mrr}"
    );
    assert_eq!(report["skipped_unknown"], 0);
    // The popularity baseline on the same protocol stands beside the model.
    let pop = report["popularity"]["both"]["mrr"]
        .as_f64()
        .expect("pop mrr");
    assert_eq!(report["popularity"]["both"]["count"], 2 * 661);
    assert!(pop > 0.05 && pop < mrr, "popularity {pop}, model {mrr}");
    let ratio = report["ratio_to_popularity"].as_f64().expect("ratio");
    assert!((ratio - mrr / pop).abs() < 1e-9, "{ratio}");
    assert!(report.get("by_relation").is_none(), "only when asked");

    let report = env.json(&[
        "eval",
        "--by-relation",
        "--test",
        data("umls/test.txt").to_str().expect("path"),
    ]);
    let rows = report["by_relation"].as_array().expect("rows");
    let counted: u64 = rows
        .iter()
        .map(|r| r["test_triples"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted, 661, "every test triple in exactly one relation");
    let below: Vec<&str> = rows
        .iter()
        .filter(|r| r["below_popularity"] == true)
        .map(|r| r["relation"].as_str().expect("name"))
        .collect();
    for r in rows {
        let (m, p) = (
            r["metrics"]["both"]["mrr"].as_f64().expect("mrr"),
            r["popularity"]["both"]["mrr"].as_f64().expect("pop"),
        );
        assert_eq!(r["below_popularity"] == true, m < p, "{r}");
    }
    let listed: Vec<&str> = report["below_popularity"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert_eq!(listed, below);
}

#[test]
fn eval_says_where_a_model_is_below_popularity() {
    // One epoch at a negligible learning rate: a model that learned nothing, so counting
    // answers beats it, and eval must say so without being asked for the per-relation table.
    let env = Env::new();
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    env.ok(&["train", "--epochs", "1", "--dim", "8", "--lr", "1e-6"]);
    let test = data("umls/test.txt");
    let out = env.ok(&["eval", "--test", test.to_str().expect("path")]);
    assert!(out.contains("\npopularity  "), "{out}");
    assert!(
        out.contains("model / popularity (MRR, both sides): 0."),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("below popularity on "))
        .unwrap_or_else(|| panic!("no below-popularity line: {out}"));
    assert!(line.contains("isa ("), "{line}");
    let out = env.ok(&[
        "eval",
        "--by-relation",
        "--test",
        test.to_str().expect("path"),
    ]);
    let isa = out
        .lines()
        .find(|l| l.starts_with("isa "))
        .unwrap_or_else(|| panic!("no isa row: {out}"));
    assert!(isa.ends_with("BELOW POPULARITY"), "{isa}");
}

#[test]
fn eval_skips_and_counts_unknown_entities() {
    let env = trained();
    let test = env.write(
        "t.tsv",
        "cell\tlocation_of\tcell\nnot_an_entity\tisa\tcell\ncell\tnot_a_relation\tcell\n",
    );
    let report = env.json(&["eval", "--test", test.to_str().expect("path")]);
    assert_eq!(report["test_triples"], 1);
    assert_eq!(report["skipped_unknown"], 2);
}

#[test]
fn second_training_warm_starts_and_cold_does_not() {
    let env = trained();
    let extra = env.write("extra.tsv", "new_entity\tisa\tcell\n");
    env.ok(&["import", extra.to_str().expect("path")]);
    let warm = env.json(&["train", "--epochs", "1", "--dim", "32"]);
    assert_eq!(warm["parent_id"], 1);
    assert_eq!(warm["graph_version"], 2);
    let cold = env.json(&["train", "--epochs", "1", "--dim", "32", "--cold"]);
    assert!(cold["parent_id"].is_null());
    // A different dimension cannot grow from the old checkpoint: trained from scratch.
    let other = env.json(&["train", "--epochs", "1", "--dim", "16"]);
    assert!(other["parent_id"].is_null());
}

#[test]
fn corrupted_or_foreign_checkpoints_are_refused() {
    let env = trained();
    let test = data("umls/test.txt");
    let models = env.dir.path().join("hypograph-data/models");
    let dir = only_entry(&models);
    let weights = dir.join("member-0/weights.bpk");
    let mut bytes = std::fs::read(&weights).expect("read");
    bytes[100] ^= 1;
    std::fs::write(&weights, bytes).expect("write");
    // The database holds the checkpoint too: the damaged directory is passed over for a
    // cache written from it.
    env.ok(&["eval", "--test", test.to_str().expect("path")]);
    assert!(
        env.dir
            .path()
            .join("hypograph-data/cache/models/1/member-0/weights.bpk")
            .is_file()
    );
    // A model whose files are only on disk (recorded before checkpoints were stored) is
    // refused.
    env.sql("UPDATE models SET storage = 'directory'");
    let err = env.fail(&["eval", "--test", test.to_str().expect("path")]);
    assert!(err.contains("is corrupted: checksum"), "{err}");

    // A checkpoint trained on another graph.
    let other = Env::new();
    let f = other.write("g.tsv", "a\tr\tb\nb\tr\tc\n");
    other.ok(&["import", f.to_str().expect("path")]);
    other.ok(&["train", "--epochs", "1", "--dim", "8"]);
    let foreign = other.dir.path().join("hypograph-data/models");
    let foreign = only_entry(&foreign);
    let sum = other.json(&["eval", "--test", f.to_str().expect("path")])["model"].clone();
    assert_eq!(sum, 1);
    let sum: String = {
        let sums = hypograph::model::checkpoint::checksum(&foreign.join("member-0/weights.bpk"))
            .expect("sum");
        blake3::hash(format!("{sums}\n").as_bytes())
            .to_hex()
            .to_string()
    };
    env.sql(&format!(
        "UPDATE models SET path = '{}', checksum = '{sum}', storage = 'directory'",
        foreign.display()
    ));
    let err = env.fail(&["eval", "--test", test.to_str().expect("path")]);
    assert!(err.contains("was trained on another graph"), "{err}");
}

#[test]
fn training_needs_a_graph() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\n");
    env.ok(&["import", f.to_str().expect("path")]);
    env.ok(&["graph", "revert", "1"]);
    let err = env.fail(&["train", "--epochs", "1"]);
    assert!(err.contains("no triples to train on"), "{err}");
    let err = env.fail(&["eval", "--test", f.to_str().expect("path")]);
    assert!(err.contains("no trained model yet"), "{err}");
}

#[test]
fn ensemble_with_calibration() {
    let env = Env::new();
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    let out = env.ok(&[
        "train",
        "--epochs",
        "6",
        "--dim",
        "16",
        "--ensemble",
        "3",
        "--calibration",
        "isotonic",
        "--valid",
        data("umls/valid.txt").to_str().expect("path"),
    ]);
    assert!(out.contains("3 members"), "{out}");
    assert!(out.contains("calibration (Isotonic): ECE"), "{out}");
    let info = env.json(&[
        "eval",
        "--test",
        data("umls/test.txt").to_str().expect("path"),
    ]);
    let cal = &info["calibration"];
    let (before, after) = (
        cal["before"]["ece"].as_f64().expect("ece"),
        cal["after"]["ece"].as_f64().expect("ece"),
    );
    assert!(
        after < before,
        "isotonic calibration should lower test ECE: {before} -> {after}"
    );
    let svg = env.path("rel.svg");
    env.ok(&[
        "eval",
        "--test",
        data("umls/test.txt").to_str().expect("path"),
        "--reliability",
        svg.to_str().expect("path"),
    ]);
    let text = std::fs::read_to_string(&svg).expect("svg");
    assert!(text.contains("calibrated (ECE"), "{text}");
    let models = env.dir.path().join("hypograph-data/models");
    let dir = only_entry(&models);
    assert!(dir.join("member-2/weights.bpk").is_file());
}

#[test]
fn predict_reports_probability_spread_and_bald() {
    let env = Env::new();
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    env.ok(&[
        "train",
        "--epochs",
        "4",
        "--dim",
        "16",
        "--ensemble",
        "2",
        "--valid",
        data("umls/valid.txt").to_str().expect("path"),
    ]);
    let c = env.write(
        "c.tsv",
        "acquired_abnormality\tlocation_of\texperimental_model_of_disease\ncell\tisa\tcell\nnope\tisa\tcell\n",
    );
    let rows = env.json(&["predict", c.to_str().expect("path")]);
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["known"], true);
    for row in &rows[..2] {
        let p = row["probability"].as_f64().expect("p");
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(row["members"].as_array().map(Vec::len), Some(2));
        assert!(row["std"].as_f64().expect("std") >= 0.0);
        assert!(row["mutual_information"].as_f64().expect("mi") >= -1e-12);
    }
    assert!(rows[2]["probability"].is_null());
    assert_eq!(rows[2]["error"], "unknown entity or relation");
}

#[test]
fn simulate_writes_csv_summary_and_plot() {
    let env = Env::new();
    let out = env.path("sim");
    let stdout = env.ok(&[
        "simulate",
        data("umls/train.txt").to_str().expect("path"),
        "--test",
        data("umls/test.txt").to_str().expect("path"),
        "--rounds",
        "2",
        "--seeds",
        "2",
        "--batch",
        "10",
        "--strategies",
        "random,greedy,ucb",
        "--epochs",
        "5",
        "--retrain-epochs",
        "1",
        "--dim",
        "16",
        "--ensemble",
        "2",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(
        stdout.contains("| greedy |")
            && stdout.contains("| random |")
            && stdout.contains("| ucb |"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("rounds.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 3 * 2 * 2, "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').nth(3) == Some("10")),
        "{csv}"
    );
    // Calibration where decisions are made: each round's best candidates against the truth.
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).expect(name);
    let (ece, predicted, observed) = (col("top_ece"), col("top_predicted"), col("top_observed"));
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        for c in [ece, predicted, observed] {
            let v: f64 = f[c].parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!((0.0..=1.0).contains(&v), "{line}");
        }
    }
    let md = std::fs::read_to_string(out.join("summary.md")).expect("md");
    assert!(
        md.starts_with("| strategy | discoveries after 2 rounds"),
        "{md}"
    );
    assert!(md.contains("top-200 ECE (predicted / observed)"), "{md}");
    let svg = std::fs::read_to_string(out.join("curves.svg")).expect("svg");
    // Series lines are drawn 2 px wide; axes and ticks are polylines too.
    assert_eq!(
        svg.matches(r#"stroke-width="2" points="#).count(),
        2 * 3,
        "two panels, three strategies"
    );
    // The database is never created.
    assert!(!env.db.exists());
    let err = env.fail(&[
        "simulate",
        data("umls/train.txt").to_str().expect("path"),
        "--test",
        data("umls/test.txt").to_str().expect("path"),
        "--strategies",
        "magic",
    ]);
    assert!(err.contains("unknown strategy `magic`"), "{err}");
}

#[test]
fn simulate_reads_kgx_with_categories() {
    let env = Env::new();
    let mut nodes = String::from("id\tcategory\n");
    let mut edges = String::from("subject\tpredicate\tobject\n");
    let mut hidden = String::new();
    for i in 0..12 {
        nodes.push_str(&format!("drug{i}\tDrug\ndis{i}\tDisease\n"));
        let line = format!("drug{i}\ttreats\tdis{}\n", (i + 1) % 12);
        if i % 3 == 0 {
            hidden.push_str(&line)
        } else {
            edges.push_str(&line)
        }
    }
    env.write("kg/nodes.tsv", nodes);
    env.write("kg/edges.tsv", edges);
    let hidden = env.write("hidden.tsv", &hidden);
    let out = env.path("sim");
    let stdout = env.ok(&[
        "simulate",
        env.path("kg").to_str().expect("path"),
        "--hidden",
        hidden.to_str().expect("path"),
        "--test",
        hidden.to_str().expect("path"),
        "--rounds",
        "1",
        "--seeds",
        "1",
        "--batch",
        "4",
        "--strategies",
        "greedy",
        "--epochs",
        "3",
        "--retrain-epochs",
        "1",
        "--dim",
        "8",
        "--ensemble",
        "1",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(stdout.contains("| greedy |"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("rounds.csv")).expect("csv");
    // Every candidate is Drug -> Disease, so 4 hypotheses can always be found.
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.split(',').nth(3) == Some("4")),
        "{csv}"
    );
}

#[test]
fn simulate_relations_hides_and_proposes_only_those() {
    let env = Env::new();
    let out = env.path("sim");
    let train = data("umls/train.txt");
    let stdout = env.ok(&[
        "simulate",
        train.to_str().expect("path"),
        "--relations",
        "isa",
        "--rounds",
        "2",
        "--seeds",
        "1",
        "--batch",
        "10",
        "--strategies",
        "random,greedy",
        "--epochs",
        "5",
        "--retrain-epochs",
        "1",
        "--dim",
        "16",
        "--ensemble",
        "1",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(stdout.contains("| greedy |"), "{stdout}");
    let proposed = std::fs::read_to_string(out.join("proposed.tsv")).expect("proposed");
    let rows: Vec<Vec<&str>> = proposed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2 * 2 * 10, "{proposed}");
    assert!(rows.iter().all(|r| r[4] == "isa"), "{proposed}");
    let truth = std::fs::read_to_string(out.join("truth.tsv")).expect("truth");
    let isa = std::fs::read_to_string(&train)
        .expect("train")
        .lines()
        .filter(|l| l.split('\t').nth(1) == Some("isa"))
        .count();
    // Half of isa hidden, then a tenth of that for test and a tenth of the rest for valid.
    let hidden = (isa as f64 * 0.5).round() as usize;
    let after_test = hidden - hidden / 10;
    assert_eq!(
        truth.lines().count(),
        after_test - after_test / 10,
        "{truth}"
    );
    assert!(
        truth.lines().all(|l| l.split('\t').nth(1) == Some("isa")),
        "{truth}"
    );
    // A confirmed proposal is in the truth; the truth never names another relation.
    for r in rows.iter().filter(|r| r[6] == "1") {
        assert!(
            truth.contains(&format!("{}\t{}\t{}\n", r[3], r[4], r[5])),
            "{r:?}"
        );
    }

    let err = env.fail(&[
        "simulate",
        train.to_str().expect("path"),
        "--relations",
        "isa,treats_Disease",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(
        err.contains("unknown relation `treats_Disease`")
            && err.contains("affects")
            && err.contains("isa"),
        "{err}"
    );
}

/// Off a terminal (stderr a pipe, as in a daemon, CI or `train > log`), training writes one
/// `info` line per epoch with the model, the epoch, its loss, the validation MRR where it was
/// computed and its seconds: with `-v`, and without it (progress lines are on by default
/// there, as there is no bar to show that the work moves).
#[test]
fn epochs_are_logged_when_stderr_is_not_a_terminal() {
    let env = Env::new();
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    let valid = data("umls/valid.txt");
    for verbose in [true, false] {
        let mut args = if verbose { vec!["-v"] } else { Vec::new() };
        args.extend([
            "train",
            "--epochs",
            "3",
            "--dim",
            "16",
            "--eval-every",
            "2",
            "--valid",
            valid.to_str().expect("path"),
        ]);
        let out = env.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        for epoch in 1..=3 {
            let head = format!("complex dim 16 epoch {epoch}/3: loss ");
            let line = stderr
                .lines()
                .find(|l| l.contains(&head))
                .unwrap_or_else(|| panic!("no line for epoch {epoch} (-v: {verbose}):\n{stderr}"));
            assert!(line.contains("INFO"), "{line}");
            assert!(line.contains("hypograph::progress"), "{line}");
            let loss = line
                .split(&head)
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|l| l.parse::<f64>().ok());
            assert!(loss.is_some_and(f64::is_finite), "{line}");
            let seconds = line
                .rsplit(", ")
                .next()
                .and_then(|s| s.strip_suffix('s'))
                .and_then(|s| s.parse::<f64>().ok());
            assert!(seconds.is_some_and(|s| s >= 0.0), "{line}");
            assert_eq!(
                line.contains("valid MRR 0."),
                epoch >= 2,
                "validated at epochs 2 and 3: {line}"
            );
        }
        assert!(
            !stderr.contains("\x1b["),
            "no bar or colour on a pipe: {stderr:?}"
        );
    }
}
