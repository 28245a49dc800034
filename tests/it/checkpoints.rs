//! Checkpoints live in the database: a model trained with one data directory loads with
//! another (another host) or after its directory is gone, from `checkpoint_files`, through a
//! verified cache; altered bytes in the database are refused.

use crate::on_both;
use crate::support::{Env, data};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Trains a small ComplEx model on UMLS (with a validation file, so the checkpoint holds
/// `valid.tsv`) and returns the recorded model.
fn train_umls(env: &Env) -> Value {
    env.ok(&["import", data("umls/train.txt").to_str().expect("path")]);
    env.json(&[
        "train",
        "--epochs",
        "2",
        "--dim",
        "16",
        "--eval-every",
        "0",
        "--valid",
        data("umls/valid.txt").to_str().expect("path"),
    ])
}

/// `eval` on the UMLS test split with `data_dir` as the data directory: the metrics.
fn eval_with(env: &Env, data_dir: &Path) -> Value {
    env.json(&[
        "--data-dir",
        data_dir.to_str().expect("path"),
        "eval",
        "--test",
        data("umls/test.txt").to_str().expect("path"),
    ])["metrics"]
        .clone()
}

/// Every file under `dir`, relative and '/'-separated, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                pending.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under dir");
                out.push(rel.to_str().expect("utf-8").replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

fn cache_of(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join("cache/models").join(id.to_string())
}

fn checkpoint_moves_to_another_host(env: Env) {
    let model = train_umls(&env);
    assert_eq!(model["storage"], "database", "{model}");
    let recorded = PathBuf::from(model["path"].as_str().expect("path"));
    // Every file of the checkpoint directory is in the database, with its checksum.
    let on_disk = files_under(&recorded);
    for f in [
        "member-0/weights.bpk",
        "calibration.json",
        "valid.tsv",
        "curve.csv",
    ] {
        assert!(
            on_disk.iter().any(|x| x == f),
            "{f} not written: {on_disk:?}"
        );
    }
    let stored = env.strings("SELECT name FROM checkpoint_files WHERE model_id = 1 ORDER BY name");
    assert_eq!(stored, on_disk);
    let sum = env
        .strings("SELECT checksum FROM checkpoint_files WHERE model_id = 1 AND name = 'valid.tsv'");
    let valid = std::fs::read(recorded.join("valid.tsv")).expect("valid.tsv");
    assert_eq!(sum, [blake3::hash(&valid).to_hex().to_string()]);

    // On the training host: read where it was written, nothing cached.
    let here = env.path("training-host");
    let before = eval_with(&env, &here);
    assert!(!here.join("cache").exists());

    // The training host's files are out of reach: another host with its own data directory
    // writes the cache from the database and scores the same (the filtered ranks depend on
    // the checkpoint's valid.tsv too).
    let away = env.path("unreachable");
    std::fs::rename(&recorded, &away).expect("move the checkpoint away");
    let other = env.path("serving-host");
    assert_eq!(eval_with(&env, &other), before);
    let cache = cache_of(&other, 1);
    assert_eq!(files_under(&cache), on_disk);
    let leftovers: Vec<_> = std::fs::read_dir(other.join("cache/models"))
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["1"], "no temporary directory left behind");
    let c = env.write("c.tsv", "cell\tlocation_of\tcell\n");
    let p = env.json(&[
        "--data-dir",
        other.to_str().expect("path"),
        "predict",
        c.to_str().expect("path"),
    ]);
    assert!(p[0]["probability"].as_f64().is_some(), "{p}");

    // A cache file damaged on disk is noticed and written again.
    let weights = cache.join("member-0/weights.bpk");
    let good = std::fs::read(&weights).expect("read");
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&weights, bad).expect("write");
    assert_eq!(eval_with(&env, &other), before);
    assert_eq!(std::fs::read(&weights).expect("read"), good);

    // The default data directory (the checkpoint directory deleted): its own cache.
    let default_dir = match env.data_dir_var() {
        Some((_, dir)) => dir,
        None => env.path("hypograph-data"),
    };
    assert!(!recorded.exists());
    let report = env.json(&[
        "eval",
        "--test",
        data("umls/test.txt").to_str().expect("path"),
    ]);
    assert_eq!(report["metrics"], before);
    assert_eq!(files_under(&cache_of(&default_dir, 1)), on_disk);
}
on_both!(
    a_checkpoint_loads_with_another_data_dir_or_after_its_directory_is_deleted,
    checkpoint_moves_to_another_host
);

fn altered_bytes(env: Env) {
    let model = train_umls(&env);
    let recorded = PathBuf::from(model["path"].as_str().expect("path"));
    // Portable SQL: one file's bytes replaced by another's, its checksum left as recorded.
    env.sql(
        "UPDATE checkpoint_files SET bytes = \
         (SELECT bytes FROM checkpoint_files WHERE model_id = 1 AND name = 'calibration.json') \
         WHERE model_id = 1 AND name = 'member-0/config.json'",
    );
    let test = data("umls/test.txt");
    let test = test.to_str().expect("path");
    // The directory it was written to still matches: the database's copy is not read.
    let other = env.path("other-host");
    let other_arg = other.to_str().expect("path");
    env.ok(&["--data-dir", other_arg, "eval", "--test", test]);
    assert!(!other.join("cache").exists());

    std::fs::remove_dir_all(&recorded).expect("delete the checkpoint");
    let err = env.fail(&["--data-dir", other_arg, "eval", "--test", test]);
    assert!(
        err.contains(
            "model 1: checkpoint file `member-0/config.json` in the database does not match"
        ),
        "{err}"
    );
    // Nothing half-written is left to be mistaken for a cache.
    let cached: Vec<_> = std::fs::read_dir(other.join("cache/models"))
        .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "{cached:?}");
    let c = env.write("c.tsv", "cell\tlocation_of\tcell\n");
    let err = env.fail(&[
        "--data-dir",
        other_arg,
        "predict",
        c.to_str().expect("path"),
    ]);
    assert!(err.contains("`member-0/config.json`"), "{err}");
}
on_both!(
    altered_checkpoint_bytes_in_the_database_are_refused,
    altered_bytes
);

/// `ask` reads the members and the feature priors (`priors.json`) from the database too.
fn ask_from_the_database(env: Env) {
    crate::ask::import_clustered(&env);
    let model = env.json(&[
        "train",
        "--epochs",
        "5",
        "--dim",
        "8",
        "--ensemble",
        "2",
        "--eval-every",
        "0",
    ]);
    let recorded = PathBuf::from(model["path"].as_str().expect("path"));
    assert!(recorded.join("priors.json").is_file());
    let prompt = [
        "ask",
        "--entity",
        "new-mol",
        "--category",
        "Compound",
        "--vector",
        "1.0,0.05,0.1,0.0",
        "--predict",
        "new-mol treats ?",
        "--top",
        "3",
    ];
    let before = env.json(&prompt);
    std::fs::remove_dir_all(&recorded).expect("delete the checkpoint");
    let other = env.path("other-host");
    let mut moved = vec!["--data-dir", other.to_str().expect("path")];
    moved.extend_from_slice(&prompt);
    let after = env.json(&moved);
    assert_eq!(after["rows"], before["rows"]);
    assert_eq!(after["entities"], before["entities"]);
    assert_eq!(after["entities"][0]["basis"], "features", "{after}");
    assert!(cache_of(&other, 1).join("priors.json").is_file());
}
on_both!(
    ask_loads_members_and_priors_from_the_database,
    ask_from_the_database
);
