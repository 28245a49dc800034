//! Versions, diffs, exports at old versions, revert, blame and verify through the binary.

//! Each runs on SQLite and on PostgreSQL (`NAME::sqlite`, `NAME::postgres`).

use crate::on_both;
use crate::support::{Env, file_lines, sorted_lines};

/// Three versions: v1 = {ab, bc}, v2 adds {cd, de}, v3 (replace) = {ab, cd, ef}.
fn three_versions(env: Env) -> Env {
    let v1 = env.write("v1.tsv", "a\tr\tb\nb\tr\tc\n");
    let v2 = env.write("v2.tsv", "c\tr\td\nd\ts\te\n");
    let v3 = env.write("v3.tsv", "a\tr\tb\nc\tr\td\ne\ts\tf\n");
    env.ok(&["import", v1.to_str().expect("path"), "-m", "first"]);
    env.ok(&["import", v2.to_str().expect("path"), "-m", "second"]);
    let out = env.ok(&[
        "import",
        v3.to_str().expect("path"),
        "--replace",
        "-m",
        "third",
    ]);
    assert!(out.contains("+1 triples, -2 triples"), "{out}");
    env
}

fn lines(v: &[&str]) -> Vec<String> {
    sorted_lines(&v.join("\n"))
}

fn export_at_each_version_is_the_graph_then(env: Env) {
    let env = three_versions(env);
    assert_eq!(env.export("1"), file_lines(&env.path("v1.tsv")));
    assert_eq!(
        env.export("2"),
        lines(&["a\tr\tb", "b\tr\tc", "c\tr\td", "d\ts\te"])
    );
    assert_eq!(env.export("HEAD"), file_lines(&env.path("v3.tsv")));
    assert_eq!(env.export("HEAD~1"), env.export("2"));
    let err = env.fail(&["graph", "export", "--version", "9", "-"]);
    assert!(err.contains("version 9 does not exist"), "{err}");
}

fn log_and_show(env: Env) {
    let env = three_versions(env);
    let log = env.ok(&["graph", "log"]);
    let messages: Vec<&str> = log
        .lines()
        .map(|l| l.rsplit("  ").next().unwrap_or(""))
        .collect();
    assert_eq!(messages, vec!["third", "second", "first"]);
    let show = env.json(&["graph", "show", "3"]);
    assert_eq!(show["version"]["parent_id"], 2);
    assert_eq!(show["added"], serde_json::json!([["e", "s", "f"]]));
    assert_eq!(
        show["removed"],
        serde_json::json!([["b", "r", "c"], ["d", "s", "e"]])
    );
}

fn diff_both_directions(env: Env) {
    let env = three_versions(env);
    let d = env.json(&["graph", "diff", "1", "3"]);
    assert_eq!(
        d["added"],
        serde_json::json!([["c", "r", "d"], ["e", "s", "f"]])
    );
    assert_eq!(d["removed"], serde_json::json!([["b", "r", "c"]]));
    let back = env.json(&["graph", "diff", "3", "1"]);
    assert_eq!(back["added"], d["removed"]);
    assert_eq!(back["removed"], d["added"]);
    let text = env.ok(&["graph", "diff", "1", "3"]);
    assert!(text.contains("+ e\ts\tf\n"), "{text}");
    assert!(text.contains("- b\tr\tc\n"), "{text}");
    assert!(
        text.ends_with("2 added, 1 removed between versions 1 and 3\n"),
        "{text}"
    );
}

fn revert_undoes_a_version_and_is_itself_a_version(env: Env) {
    let env = three_versions(env);
    let out = env.ok(&["graph", "revert", "3"]);
    assert!(out.contains("version 4 reverts version 3: +2 -1"), "{out}");
    assert_eq!(env.export("4"), env.export("2"));
    let again = env.ok(&["graph", "revert", "3"]);
    assert!(again.starts_with("nothing to revert"), "{again}");
    // Reverting the first version removes what it added and is still live.
    env.ok(&["graph", "revert", "1"]);
    assert_eq!(env.export("HEAD"), lines(&["c\tr\td", "d\ts\te"]));
    env.ok(&["graph", "verify"]);
}

fn blame_names_versions_that_added_and_removed(env: Env) {
    let env = three_versions(env);
    let b = env.json(&["graph", "blame", "b", "r", "c"]);
    assert_eq!(b["history"][0]["added_in"]["id"], 1);
    assert_eq!(b["history"][0]["added_in"]["message"], "first");
    assert_eq!(b["history"][0]["removed_in"]["id"], 3);
    env.ok(&["graph", "revert", "3"]);
    let b = env.json(&["graph", "blame", "b", "r", "c"]);
    assert_eq!(b["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(b["history"][1]["added_in"]["id"], 4);
    assert_eq!(b["history"][1]["provenance"]["revert_of"], 3);
    assert!(b["history"][1]["removed_in"].is_null());
    let text = env.ok(&["graph", "blame", "a", "r", "b"]);
    assert!(text.contains("added in   version 1"), "{text}");
    assert!(text.contains("live"), "{text}");
    let err = env.fail(&["graph", "blame", "a", "s", "b"]);
    assert!(err.contains("a s b was never in the graph"), "{err}");
    let err = env.fail(&["graph", "blame", "zz", "r", "b"]);
    assert!(err.contains("unknown entity `zz`"), "{err}");
}

fn verify_passes_then_catches_edits_behind_the_stores_back(env: Env) {
    let env = three_versions(env);
    let ok = env.ok(&["graph", "verify"]);
    assert!(ok.starts_with("ok: 3 versions and 5 edges"), "{ok}");

    // Point one edge of version 2 at another entity.
    env.sql(
        "UPDATE edges SET tail = (SELECT id FROM entities WHERE key = 'a') \
         WHERE id = (SELECT min(id) FROM edges WHERE added_in = 2)",
    );
    let err = env.fail(&["graph", "verify"]);
    assert!(
        err.contains("version 2 does not verify: hash mismatch"),
        "{err}"
    );
    let report = serde_json::from_slice::<serde_json::Value>(
        &env.run(&["graph", "verify", "--json"]).stdout,
    )
    .expect("json");
    assert_eq!(report["first_mismatch"]["version"], 2);
}

fn verify_catches_a_deleted_edge_and_an_edited_message(env: Env) {
    let env = three_versions(env);
    env.sql("UPDATE graph_versions SET message = 'forged' WHERE id = 3");
    let err = env.fail(&["graph", "verify"]);
    assert!(err.contains("version 3 does not verify"), "{err}");
    // Undone, it verifies again; then one edge goes missing.
    env.sql("UPDATE graph_versions SET message = 'third' WHERE id = 3");
    env.ok(&["graph", "verify"]);
    env.sql("DELETE FROM edges WHERE id = (SELECT min(id) FROM edges)");
    let err = env.fail(&["graph", "verify"]);
    assert!(
        err.contains("version 1 does not verify: stored counts"),
        "{err}"
    );
}

/// A first import of at least 100,000 edges and 10,000 entities takes the bulk path (on
/// PostgreSQL: indexes dropped, rows numbered by the load, indexes rebuilt). Afterwards the
/// tables carry exactly the indexes a fresh database has, the live-triple index still refuses
/// a duplicate, later small imports number their rows after the bulk ones, removals find the
/// bulk rows, and entity search sees the bulk entities.
fn bulk_import_rebuilds_what_it_dropped(env: Env) {
    use std::fmt::Write;
    let mut text = String::new();
    for k in 0..120_000u32 {
        let (h, r) = (k % 12_000, k % 3);
        let t = (h + k / 12_000 + 1) % 12_000;
        let _ = writeln!(text, "n{h}\tr{r}\tn{t}");
    }
    let big = env.write("big.tsv", &text);
    // On PostgreSQL a rebuilt index is a new relation: its identity tells the bulk path ran.
    let on_postgres = matches!(env.location(), hypograph::store::Location::Postgres(_));
    let identities = "SELECT CAST(oid AS TEXT) FROM pg_class \
                      WHERE relname IN ('edges_live', 'entities_key_trgm') ORDER BY relname";
    let before = on_postgres.then(|| {
        env.ok(&["graph", "log"]);
        env.strings(identities)
    });
    let out = env.ok(&["import", big.to_str().expect("path"), "-m", "bulk"]);
    assert!(out.contains("+120000 triples, 12000 new entities"), "{out}");
    if let Some(before) = before {
        let after = env.strings(identities);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(
            before.iter().zip(&after).all(|(b, a)| b != a),
            "indexes not rebuilt: {before:?} -> {after:?}"
        );
    }

    let indexes = match env.location() {
        hypograph::store::Location::Postgres(_) => {
            "SELECT indexdef FROM pg_indexes WHERE tablename IN ('edges', 'entities') \
             ORDER BY indexdef"
        }
        hypograph::store::Location::Sqlite(_) => {
            "SELECT sql FROM sqlite_master WHERE type = 'index' \
             AND tbl_name IN ('edges', 'entities') ORDER BY name"
        }
    };
    let fresh = match env.location() {
        hypograph::store::Location::Postgres(_) => Env::postgres().expect("PostgreSQL"),
        hypograph::store::Location::Sqlite(_) => Env::sqlite(),
    };
    let tiny = fresh.write("tiny.tsv", "a\tr\tb\n");
    fresh.ok(&["import", tiny.to_str().expect("path")]);
    assert_eq!(env.strings(indexes), fresh.strings(indexes));
    let duplicate = "INSERT INTO edges (head, relation, tail, added_in) \
                     SELECT head, relation, tail, added_in FROM edges WHERE id = 1";
    assert!(
        env.try_sql(duplicate).is_err(),
        "a second live copy of a triple"
    );

    let small = env.write("small.tsv", "n1\tr9\tfresh\nn2\tr9\tn3\n");
    env.ok(&["import", small.to_str().expect("path")]);
    assert_eq!(env.count("SELECT count(DISTINCT id) FROM edges"), 120_002);
    // (The refused row above may have drawn an id from PostgreSQL's sequence.)
    assert_eq!(
        env.count("SELECT max(id) FROM edges WHERE added_in = 1"),
        120_000
    );
    assert!(env.count("SELECT min(id) FROM edges WHERE added_in = 2") > 120_000);
    // The bulk file without its first 1,000 lines, as a replacement.
    let rest: String = text.lines().skip(1_000).map(|l| format!("{l}\n")).collect();
    let rest = env.write("rest.tsv", rest);
    let out = env.ok(&["import", rest.to_str().expect("path"), "--replace"]);
    assert!(out.contains("+0 triples, -1002 triples"), "{out}");
    let ok = env.ok(&["graph", "verify"]);
    assert!(ok.starts_with("ok: 3 versions and 120002 edges"), "{ok}");
    let hits = env.json(&["entity", "search", "n1199"]);
    let keys: Vec<&str> = hits
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["key"].as_str())
        .collect();
    assert!(keys.contains(&"n11999"), "{keys:?}");
}

on_both!(
    export_at_each_version_is_the_graph_then,
    export_at_each_version_is_the_graph_then
);
on_both!(log_and_show, log_and_show);
on_both!(
    bulk_import_rebuilds_what_it_dropped,
    bulk_import_rebuilds_what_it_dropped
);
on_both!(diff_both_directions, diff_both_directions);
on_both!(
    revert_undoes_a_version_and_is_itself_a_version,
    revert_undoes_a_version_and_is_itself_a_version
);
on_both!(
    blame_names_versions_that_added_and_removed,
    blame_names_versions_that_added_and_removed
);
on_both!(
    verify_passes_then_catches_edits_behind_the_stores_back,
    verify_passes_then_catches_edits_behind_the_stores_back
);
on_both!(
    verify_catches_a_deleted_edge_and_an_edited_message,
    verify_catches_a_deleted_edge_and_an_edited_message
);

/// The same imports give the same version hashes on both engines: a graph's history is
/// comparable across a SQLite file and a PostgreSQL database. (The files are the same paths:
/// a version's source, which the hash covers, names them.)
#[test]
fn both_backends_give_the_same_hash_per_version() {
    let Some(pg) = Env::postgres() else { return };
    let sqlite = Env::new();
    let files = [
        sqlite.write("v1.tsv", "a\tr\tb\nb\tr\tc\n"),
        sqlite.write("v2.tsv", "c\tr\td\nd\ts\te\n"),
        sqlite.write("v3.tsv", "a\tr\tb\nc\tr\td\ne\ts\tf\n"),
    ];
    let hashes = |env: &Env| -> Vec<String> {
        for (i, f) in files.iter().enumerate() {
            let f = f.to_str().expect("path");
            let msg = format!("v{}", i + 1);
            if i == 2 {
                env.ok(&["import", f, "--replace", "-m", &msg]);
            } else {
                env.ok(&["import", f, "-m", &msg]);
            }
        }
        env.ok(&["graph", "revert", "2", "-m", "undo v2"]);
        let log = env.json(&["graph", "log"]);
        let hashes: Vec<String> = log
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v["hash"].as_str().expect("hash").to_owned())
            .collect();
        assert_eq!(hashes.len(), 4);
        hashes
    };
    assert_eq!(hashes(&sqlite), hashes(&pg));
}
