//! `hypograph entity search`: by id prefix or any part of a name, through the trigram index.

use crate::on_both;
use crate::support::Env;

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| h["key"].as_str().expect("key").to_owned())
        .collect()
}

#[test]
fn finds_entities_by_id_prefix_and_name() {
    let env = Env::new();
    let nodes = env.write(
        "nodes.tsv",
        "id\tcategory\tname\n\
         DB00945\tCompound\tAcetylsalicylic acid\n\
         DB01050\tCompound\tIbuprofen\n\
         DOID:9352\tDisease\ttype 2 diabetes mellitus\n\
         Gene::1017\tGene\tCDK2\n\
         X%1\tGene\tpercent_sign\n",
    );
    let edges = env.write(
        "edges.tsv",
        "subject\tpredicate\tobject\nDB00945\ttreats\tDOID:9352\nDB01050\tbinds\tGene::1017\nX%1\tbinds\tGene::1017\n",
    );
    env.ok(&[
        "import",
        edges.to_str().expect("path"),
        "--nodes",
        nodes.to_str().expect("path"),
    ]);
    let search = |text: &str| env.json(&["entity", "search", text]);
    // An id prefix, the ids that start with it first.
    assert_eq!(keys(&search("DB0")), ["DB00945", "DB01050"]);
    // Any part of a name, whatever the case.
    let hits = search("SALICYL");
    assert_eq!(keys(&hits), ["DB00945"]);
    assert_eq!(hits[0]["name"], "Acetylsalicylic acid");
    assert_eq!(hits[0]["category"], "Compound");
    assert_eq!(keys(&search("diabetes")), ["DOID:9352"]);
    // Short text: a prefix of an id or a name.
    assert_eq!(keys(&search("ib")), ["DB01050"]);
    // Wildcards and quotes are text, not syntax.
    assert_eq!(keys(&search("X%1")), ["X%1"]);
    // (Short text is a prefix: no id or name starts with a literal `%`.)
    assert_eq!(keys(&search("%")), Vec::<String>::new());
    assert_eq!(keys(&search("\"cdk")), Vec::<String>::new());
    // Nothing found: exit 1, as grep does.
    let out = env.run(&["entity", "search", "no such thing"]);
    assert_eq!(out.status.code(), Some(1));
    // Entities added later are found too (the index follows the table).
    let more = env.write("more.tsv", "DB09999\ttreats\tDOID:9352\n");
    env.ok(&["import", more.to_str().expect("path")]);
    assert_eq!(keys(&search("DB099")), ["DB09999"]);
    let text = env.ok(&["entity", "search", "ibuprofen"]);
    assert_eq!(text.trim(), "DB01050\tCompound\tIbuprofen");
}

#[test]
fn kgx_export_carries_names_and_tsv_stays_triples() {
    let env = Env::new();
    let nodes = env.write(
        "nodes.tsv",
        "id\tcategory\tname\nDB1\tCompound\tAspirin\nD1\tDisease\theadache\n",
    );
    let edges = env.write("edges.tsv", "subject\tpredicate\tobject\nDB1\ttreats\tD1\n");
    env.ok(&[
        "import",
        edges.to_str().expect("path"),
        "--nodes",
        nodes.to_str().expect("path"),
    ]);
    let dir = env.path("out");
    env.ok(&[
        "graph",
        "export",
        "--format",
        "kgx",
        dir.to_str().expect("path"),
    ]);
    let exported = std::fs::read_to_string(dir.join("nodes.tsv")).expect("nodes");
    let mut lines = exported.lines();
    assert_eq!(lines.next(), Some("id\tcategory\tname"), "{exported}");
    assert!(exported.contains("DB1\tCompound\tAspirin\n"), "{exported}");
    assert!(exported.contains("D1\tDisease\theadache\n"), "{exported}");
    // The triples format has three columns and no names.
    let tsv = env.ok(&["graph", "export", "-"]);
    assert_eq!(tsv, "DB1\ttreats\tD1\n");
}

/// Case folds beyond ASCII on both engines for text of three or more characters (the indexed
/// searches): SQLite's FTS5 trigram table folds Unicode, PostgreSQL's search lowers under
/// ICU's root collation where the server has ICU (Debian's does). Shorter text is a prefix
/// match that SQLite folds for ASCII only.
fn search_folds_case_beyond_ascii(env: Env) {
    if matches!(env.location(), hypograph::store::Location::Postgres(_))
        && env.count("SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'") == 0
    {
        eprintln!("skipped: this PostgreSQL server has no ICU (search folds ASCII only)");
        return;
    }
    let nodes = env.write(
        "nodes.tsv",
        "id\tcategory\tname\nG:1\tGene\tΔFosB\nG:2\tGene\tÄrztekammer protein\nG:3\tGene\tplain\n",
    );
    let edges = env.write(
        "edges.tsv",
        "subject\tpredicate\tobject\nG:1\tr\tG:2\nG:2\tr\tG:3\n",
    );
    env.ok(&[
        "import",
        edges.to_str().expect("path"),
        "--nodes",
        nodes.to_str().expect("path"),
    ]);
    for (text, key) in [
        ("δfosb", "G:1"),
        ("ΔFOSB", "G:1"),
        ("Δfosb", "G:1"),
        ("ärzte", "G:2"),
        ("ÄRZTEKAMMER", "G:2"),
    ] {
        assert_eq!(
            keys(&env.json(&["entity", "search", text])),
            [key],
            "searching {text}"
        );
    }
}

on_both!(
    search_folds_case_beyond_ascii,
    search_folds_case_beyond_ascii
);
