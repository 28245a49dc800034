//! Edge sources: an edge given by several sources is one edge with every source recorded,
//! versioned and hashed with its version's delta, blamed, diffed, removed with its edge and
//! restored by a revert, exported as KGX `primary_knowledge_source` and read back, verified.

use crate::support::Env;
use serde_json::{Value, json};

const NODES: &str =
    "id\tcategory\tname\nC:1\tCompound\taspirin\nD:1\tDisease\tpain\nG:1\tGene\tPTGS2\n";

/// `treats` given on two rows by two sources, `targets` by one, `causes` by none.
const EDGES: &str = "subject\tpredicate\tobject\tprimary_knowledge_source\n\
    C:1\ttreats\tD:1\tinfores:drugcentral\n\
    C:1\ttargets\tG:1\tinfores:chembl\n\
    C:1\ttreats\tD:1\tinfores:ctd\n\
    G:1\tcauses\tD:1\t\n";

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A database with NODES and EDGES imported as version 1.
fn imported() -> Env {
    let env = Env::new();
    env.write("v1/nodes.tsv", NODES);
    env.write("v1/edges.tsv", EDGES);
    let out = env.ok(&["import", path(&env.path("v1")), "-m", "kgx"]);
    assert!(
        out.contains("as version 1: +3 triples, 3 new entities, 3 new relations, +3 edge sources"),
        "{out}"
    );
    env
}

/// The live sources of a triple that `graph blame` shows, with the version that added each.
fn sources(env: &Env, triple: [&str; 3]) -> Vec<(String, i64)> {
    let blame = env.json(&["graph", "blame", triple[0], triple[1], triple[2]]);
    blame["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| {
            (
                s["source"].as_str().expect("name").to_owned(),
                s["added_in"]["id"].as_i64().expect("version"),
            )
        })
        .collect()
}

fn owned(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(s, v)| (s.to_string(), *v)).collect()
}

const TREATS: [&str; 3] = ["C:1", "treats", "D:1"];

#[test]
fn one_edge_on_two_rows_is_one_edge_with_both_sources() {
    let env = imported();
    assert_eq!(env.count("SELECT count(*) FROM edges"), 3);
    assert_eq!(
        sources(&env, TREATS),
        owned(&[("infores:ctd", 1), ("infores:drugcentral", 1)])
    );
    let text = env.ok(&["graph", "blame", "C:1", "treats", "D:1"]);
    assert!(
        text.contains("  source     infores:ctd  version 1 ("),
        "{text}"
    );
    assert!(
        text.contains("  source     infores:drugcentral  version 1 ("),
        "{text}"
    );
    assert!(sources(&env, ["G:1", "causes", "D:1"]).is_empty());

    let stats = env.json(&["stats"]);
    assert_eq!(stats["triples_with_sources"], 2, "{stats}");
    assert_eq!(stats["triples_with_several_sources"], 1, "{stats}");
    let v1 = env.json(&["graph", "show", "1"]);
    assert_eq!(v1["version"]["n_sources"], 3);
    assert_eq!(v1["version"]["hash_format"], 5);
    let ok = env.ok(&["graph", "verify"]);
    assert!(
        ok.starts_with("ok: 1 versions, 3 edges and 3 edge sources match"),
        "{ok}"
    );

    // The same files again change nothing.
    let again = env.ok(&["import", path(&env.path("v1"))]);
    assert!(again.starts_with("nothing to import"), "{again}");
}

#[test]
fn a_new_source_for_a_live_edge_is_a_version_of_its_own() {
    let env = imported();
    env.write("v2/nodes.tsv", NODES);
    env.write(
        "v2/edges.tsv",
        "subject\tpredicate\tobject\tprimary_knowledge_source\n\
         C:1\ttreats\tD:1\tinfores:ctd|infores:semmeddb\n",
    );
    let out = env.ok(&["import", path(&env.path("v2")), "-m", "third source"]);
    assert!(
        out.contains("as version 2: +0 triples, 0 new entities, 0 new relations, +1 edge sources"),
        "{out}"
    );
    let v2 = env.json(&["graph", "show", "2"]);
    assert_eq!(v2["added"], json!([]), "{v2}");
    assert_eq!(v2["removed"], json!([]), "{v2}");
    assert_eq!(
        v2["sources"],
        json!([{ "triple": TREATS, "source": "infores:semmeddb", "added": true }]),
        "the delta is exactly the new source"
    );
    assert_eq!(
        (
            &v2["version"]["n_sources"],
            &v2["version"]["n_sources_removed"]
        ),
        (&json!(1), &json!(0))
    );
    let text = env.ok(&["graph", "show", "2"]);
    assert!(
        text.contains("changes  +0 -0 (0 new entities), sources +1 -0"),
        "{text}"
    );
    assert!(
        text.contains("+ source infores:semmeddb\tC:1\ttreats\tD:1"),
        "{text}"
    );
    let log = env.ok(&["graph", "log"]);
    assert!(log.contains("[sources +1 -0] third source"), "{log}");
    assert_eq!(
        sources(&env, TREATS),
        owned(&[
            ("infores:ctd", 1),
            ("infores:drugcentral", 1),
            ("infores:semmeddb", 2)
        ])
    );
    // A diff backwards reads the other way.
    let back = env.json(&["graph", "diff", "2", "1"]);
    assert_eq!(back["sources"][0]["added"], false, "{back}");
    env.ok(&["graph", "verify"]);

    // The source is part of the version's hash: dropping its row is caught.
    env.sql("DELETE FROM edge_sources WHERE added_in = 2");
    let err = env.fail(&["graph", "verify"]);
    assert!(
        err.contains("version 2 does not verify: stored source counts (+1 -0)"),
        "{err}"
    );
}

#[test]
fn replace_removes_an_edges_sources_and_revert_restores_them() {
    let env = imported();
    // v2: `treats` is gone from the file; `targets` keeps its edge with another source.
    env.write("v2/nodes.tsv", NODES);
    env.write(
        "v2/edges.tsv",
        "subject\tpredicate\tobject\tprimary_knowledge_source\n\
         C:1\ttargets\tG:1\tinfores:drugbank\n\
         G:1\tcauses\tD:1\t\n",
    );
    let out = env.ok(&["import", "--replace", path(&env.path("v2"))]);
    assert!(
        out.contains("as version 2: +0 triples, -1 triples, 0 new entities, 0 new relations, +1 -3 edge sources"),
        "{out}"
    );
    assert!(sources(&env, TREATS).is_empty());
    assert_eq!(
        sources(&env, ["C:1", "targets", "G:1"]),
        owned(&[("infores:drugbank", 2)])
    );
    let v2 = env.json(&["graph", "show", "2"]);
    let removed: Vec<&str> = v2["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter(|s| s["added"] == false)
        .map(|s| s["source"].as_str().expect("name"))
        .collect();
    assert_eq!(
        removed,
        ["infores:chembl", "infores:ctd", "infores:drugcentral"]
    );
    env.ok(&["graph", "verify"]);

    let out = env.ok(&["graph", "revert", "2"]);
    assert!(
        out.contains("version 3 reverts version 2: +1 -0 triples, sources +3 -1"),
        "{out}"
    );
    assert_eq!(
        sources(&env, TREATS),
        owned(&[("infores:ctd", 3), ("infores:drugcentral", 3)])
    );
    assert_eq!(
        sources(&env, ["C:1", "targets", "G:1"]),
        owned(&[("infores:chembl", 3)])
    );
    let diff = env.json(&["graph", "diff", "1", "3"]);
    assert_eq!(diff["sources"], json!([]), "{diff}");
    assert_eq!(diff["added"], json!([]), "{diff}");
    env.ok(&["graph", "verify"]);
}

#[test]
fn kgx_export_writes_sources_and_reads_back() {
    let env = imported();
    let out = env.path("out");
    env.ok(&["graph", "export", "--format", "kgx", path(&out)]);
    let edges = std::fs::read_to_string(out.join("edges.tsv")).expect("edges.tsv");
    assert!(
        edges.starts_with("subject\tpredicate\tobject\tprimary_knowledge_source\n"),
        "{edges}"
    );
    assert!(
        edges.contains("C:1\ttreats\tD:1\tinfores:ctd|infores:drugcentral\n"),
        "{edges}"
    );
    assert!(edges.contains("G:1\tcauses\tD:1\t\n"), "{edges}");

    let copy = Env::new();
    copy.ok(&["import", path(&out)]);
    assert_eq!(copy.export("HEAD"), env.export("HEAD"));
    for triple in [TREATS, ["C:1", "targets", "G:1"], ["G:1", "causes", "D:1"]] {
        assert_eq!(sources(&copy, triple), sources(&env, triple), "{triple:?}");
    }
    let stats: Value = copy.json(&["stats"]);
    assert_eq!(stats["triples_with_several_sources"], 1);
    copy.ok(&["graph", "verify"]);
    // The copy's export is the same file.
    let again = copy.path("again");
    copy.ok(&["graph", "export", "--format", "kgx", path(&again)]);
    assert_eq!(
        std::fs::read_to_string(again.join("edges.tsv")).expect("edges.tsv"),
        edges
    );
}
