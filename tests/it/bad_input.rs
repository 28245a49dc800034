//! Bad input gets a clear error, a non-zero exit, and changes nothing.

use crate::support::{Env, data};

fn assert_nothing_imported(env: &Env) {
    if env.db.exists() {
        let log = env.json(&["graph", "log"]);
        assert_eq!(log.as_array().map(Vec::len), Some(0), "{log}");
    }
}

#[test]
fn malformed_lines_name_file_and_line_and_import_nothing() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"a\tr\tb\na\tr\n",
            ":2: expected 3 tab-separated columns (head, relation, tail), found 2",
        ),
        (b"a\tr\tb\nb\tr\tc\n\t\tr\n", ":3: empty head field"),
        (
            b"a\tr\tb\nb\xff\tr\tc\n",
            ":2: invalid UTF-8 at byte 2 of the line",
        ),
        (
            b"a\tr\tb\tc\td\n",
            ":1: expected 3 tab-separated columns (head, relation, tail), found 5",
        ),
    ];
    for (content, want) in cases {
        let env = Env::new();
        let f = env.write("bad.tsv", content);
        let err = env.fail(&["import", f.to_str().expect("path")]);
        let expected = format!("{}{want}", f.display());
        assert!(err.contains(&expected), "want {expected:?} in {err:?}");
        assert_nothing_imported(&env);
        assert!(
            !env.db.exists(),
            "a failed parse must not create the database"
        );
    }
}

#[test]
fn skip_invalid_imports_the_rest_and_reports_each_line() {
    let env = Env::new();
    let f = env.write("bad.tsv", "a\tr\tb\nbroken line\nb\tr\tc\nx\t\ty\n");
    let out = env.run(&["import", f.to_str().expect("path"), "--skip-invalid"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(
        stderr.contains(&format!("skipped {}:2: expected 3", f.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("skipped {}:4: empty relation field", f.display())),
        "{stderr}"
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(stdout.contains("2 invalid lines skipped"), "{stdout}");
    assert_eq!(env.export("HEAD"), vec!["a\tr\tb", "b\tr\tc"]);
}

#[test]
fn kgx_edge_with_unknown_subject_is_named() {
    let env = Env::new();
    env.write("k/nodes.tsv", "id\tcategory\tname\nA\tX\ta\n");
    env.write(
        "k/edges.tsv",
        "subject\tpredicate\tobject\nA\tr\tA\nQ\tr\tA\n",
    );
    let err = env.fail(&["import", env.path("k").to_str().expect("path")]);
    assert!(
        err.contains("edges.tsv:3: subject `Q` is not in nodes.tsv"),
        "{err}"
    );
    assert_nothing_imported(&env);
}

#[test]
fn missing_file_is_a_clear_error() {
    let env = Env::new();
    let err = env.fail(&["import", "/nonexistent/triples.tsv"]);
    assert!(err.contains("/nonexistent/triples.tsv"), "{err}");
    assert!(err.contains("No such file"), "{err}");
    let err = env.fail(&["graph", "log"]);
    assert!(err.contains("no hypograph database at"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let env = Env::new();
    std::fs::write(&env.db, "this is a text file, not SQLite\n".repeat(200)).expect("write");
    let err = env.fail(&["graph", "log"]);
    assert!(err.contains("is not a hypograph database"), "{err}");
}

#[test]
fn another_programs_sqlite_database_is_refused() {
    let env = Env::new();
    env.sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)");
    let err = env.fail(&["graph", "log"]);
    assert!(
        err.contains("is not a hypograph database: it holds other tables (customers)"),
        "{err}"
    );
}

#[test]
fn a_database_from_a_newer_hypograph_is_refused() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\n");
    env.ok(&["import", f.to_str().expect("path")]);
    env.sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    );
    let err = env.fail(&["graph", "log"]);
    assert!(
        err.contains("written by a newer hypograph (schema version 9999"),
        "{err}"
    );
}

#[test]
fn bad_version_reference() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\n");
    env.ok(&["import", f.to_str().expect("path")]);
    let err = env.fail(&["graph", "show", "HEAD^"]);
    assert!(err.contains("`HEAD^` is not a version"), "{err}");
    let err = env.fail(&["graph", "show", "HEAD~5"]);
    assert!(err.contains("version HEAD~5 does not exist"), "{err}");
}

/// An empty file (or one with only blank lines) is a mistake to report, not a graph that is
/// "already imported": a non-zero exit, a message saying so, and no database created.
#[test]
fn an_empty_file_is_refused_and_creates_no_database() {
    for content in ["", "\n\n  \n"] {
        let env = Env::new();
        let f = env.write("empty.tsv", content);
        let stderr = env.fail(&["import", f.to_str().expect("path")]);
        assert!(stderr.contains("empty.tsv is empty"), "{stderr}");
        assert!(!stderr.contains("already in the graph"), "{stderr}");
        if env.pg.is_none() {
            assert!(!env.db.exists(), "no database was created");
        }
        assert_nothing_imported(&env);
    }
    // All lines invalid under --skip-invalid: nothing either.
    let env = Env::new();
    let f = env.write("bad.tsv", "a\tr\n");
    let stderr = env.fail(&["import", f.to_str().expect("path"), "--skip-invalid"]);
    assert!(stderr.contains("holds no valid triple"), "{stderr}");
}

/// A number far outside its range is a located validation error, and `run` refuses it before
/// any work, instead of a 16 PB top-k heap aborting the round at `generating` (or
/// `18446744073709551615` wrapping to 0).
#[test]
fn numbers_out_of_range_are_located_errors_before_any_work() {
    let env = Env::new();
    for top_k in ["1000000000000000", "18446744073709551615", "0"] {
        let w = env.write(
            "w.yaml",
            format!(
                "name: w\ngraph:\n  import: {}\ngenerate:\n  top_k: {top_k}\nmodel:\n  \
                 negatives: 100000000000000\nstages:\n  - name: s\n    plugin: human\n",
                data("umls/demo-visible.tsv").display()
            ),
        );
        let wp = w.to_str().expect("path");
        let out = env.run(&["validate", wp]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for want in [
            format!("{wp}:5:3: generate.top_k: {top_k} is out of range 1..=1000000"),
            format!("{wp}:7:3: model.negatives: 100000000000000 is out of range 1..=65536"),
        ] {
            assert!(stderr.contains(&want), "want {want:?} in {stderr}");
        }
        let out = env.run(&["run", wp]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "an error, not an abort: {stderr}"
        );
        assert!(stderr.contains("generate.top_k"), "{stderr}");
        assert_nothing_imported(&env);
    }
}

/// `train`'s flags have the workflow's ranges: a usage error naming the flag (exit 2), not
/// an abort in the middle of training; a saved config is checked before training too.
#[test]
fn training_settings_out_of_range_are_refused_before_training() {
    let env = Env::new();
    let g = env.write("g.tsv", "a\tr\tb\nb\tr\tc\nc\tr\ta\n");
    env.ok(&["import", g.to_str().expect("path")]);
    let out = env.run(&[
        "train",
        "--regime",
        "negatives",
        "--negatives",
        "100000000000000",
        "--epochs",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--negatives")
            && stderr.contains("100000000000000 is out of range 1..=65536"),
        "{stderr}"
    );
    let config = env.path("config.json");
    let saved = hypograph::model::TrainConfig::new()
        .with_regime(hypograph::model::Regime::Negatives)
        .with_negatives(100_000_000_000_000);
    std::fs::write(
        &config,
        serde_json::to_string(&saved).expect("serialize config"),
    )
    .expect("write config");
    let err = env.fail(&["train", "--config", config.to_str().expect("path")]);
    assert!(
        err.contains(&format!(
            "negatives in {}: 100000000000000 is out of range 1..=65536",
            config.display()
        )),
        "{err}"
    );
    assert_eq!(env.count("SELECT count(*) FROM models"), 0);
}
