//! `hypograph ask` through the binary: a small graph with categories and features, a trained
//! ensemble, and prompts about entities it has never seen.

use crate::support::{Env, data, run_now, staged_workflow, user};
use serde_json::Value;

/// Three clusters: compounds bind the genes of their cluster and treat its diseases; diseases
/// associate with its genes. Every entity has a feature vector that says its cluster.
pub fn import_clustered(env: &Env) {
    let mut nodes = String::from("id\tcategory\tname\n");
    let mut edges = String::from("subject\tpredicate\tobject\n");
    let mut feats = String::from("id\tf0\tf1\tf2\tf3\n");
    let (nc, ng, nd) = (24, 36, 12);
    let vector = |i: usize, salt: usize| {
        let c = i % 3;
        (0..4)
            .map(|j| {
                let noise = ((i * 7 + j * 13 + salt) % 11) as f32 / 40.0;
                let hot = if j == c { 1.0 } else { 0.0 };
                format!("{:.3}", hot + noise)
            })
            .collect::<Vec<_>>()
            .join("\t")
    };
    for i in 0..nc {
        nodes.push_str(&format!("C{i}\tCompound\tcompound {i}\n"));
        feats.push_str(&format!("C{i}\t{}\n", vector(i, 1)));
    }
    for i in 0..ng {
        nodes.push_str(&format!("G{i}\tGene\tgene {i}\n"));
        feats.push_str(&format!("G{i}\t{}\n", vector(i, 2)));
    }
    for i in 0..nd {
        nodes.push_str(&format!("D{i}\tDisease\tdisease {i}\n"));
        feats.push_str(&format!("D{i}\t{}\n", vector(i, 3)));
    }
    for c in 0..nc {
        for g in (0..ng).filter(|g| g % 3 == c % 3 && (g + c) % 2 == 0) {
            edges.push_str(&format!("C{c}\tbinds\tG{g}\n"));
        }
        for d in (0..nd).filter(|d| d % 3 == c % 3 && (d + c) % 4 != 1) {
            edges.push_str(&format!("C{c}\ttreats\tD{d}\n"));
        }
    }
    for d in 0..nd {
        for g in (0..ng).filter(|g| g % 3 == d % 3 && (g + d) % 3 != 2) {
            edges.push_str(&format!("D{d}\tassociates\tG{g}\n"));
        }
    }
    let n = env.write("nodes.tsv", nodes);
    let e = env.write("edges.tsv", edges);
    let f = env.write("features.tsv", feats);
    env.ok(&[
        "import",
        e.to_str().expect("path"),
        "--nodes",
        n.to_str().expect("path"),
        "--features",
        f.to_str().expect("path"),
    ]);
}

fn clustered(env: &Env) {
    import_clustered(env);
    env.ok(&[
        "train",
        "--epochs",
        "30",
        "--dim",
        "16",
        "--ensemble",
        "2",
        "--eval-every",
        "0",
    ]);
}

fn ask_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["ask"];
    all.extend_from_slice(args);
    env.json(&all)
}

#[test]
fn answers_about_a_new_compound_with_edges_evidence_and_priors() {
    let env = Env::new();
    clustered(&env);
    // A cluster-0 compound: binds two cluster-0 genes; its features say cluster 0.
    let a = ask_json(
        &env,
        &[
            "--entity",
            "new-mol",
            "--category",
            "Compound",
            "--name",
            "New <b>mol</b>",
            "--vector",
            "1.0,0.05,0.1,0.0",
            "--edge",
            "new-mol binds G0",
            "--edge",
            "new-mol binds G6",
            "--predict",
            "new-mol treats ?",
            "--top",
            "4",
        ],
    );
    let rows = a["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{a}");
    let p: Vec<f64> = rows
        .iter()
        .map(|r| r["probability"].as_f64().expect("p"))
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "sorted: {p:?}");
    for r in rows {
        assert_eq!(r["head"], "new-mol");
        assert_eq!(r["relation"], "treats");
        assert_eq!(r["no_edges"], false);
        assert!(r["tail"].as_str().expect("tail").starts_with('D'), "{r}");
        assert!(r["spread"].as_f64().expect("spread") >= 0.0);
    }
    // Most of the top diseases are cluster 0 (D0, D3, D6, D9).
    let cluster0 = rows
        .iter()
        .filter(|r| {
            r["tail"]
                .as_str()
                .and_then(|t| t[1..].parse::<usize>().ok())
                .is_some_and(|d| d % 3 == 0)
        })
        .count();
    assert!(cluster0 >= 3, "{a}");
    // Evidence runs through the claims: new-mol -binds-> G0 <-associates- D...
    let paths = rows[0]["paths"].as_array().expect("paths");
    assert!(!paths.is_empty(), "{a}");
    assert_eq!(paths[0]["steps"][0]["claim"], true, "{a}");
    let e = &a["entities"][0];
    assert_eq!(e["basis"], "edges");
    assert_eq!(e["edges"], 2);
    assert_eq!(
        e["prior"], "vector",
        "a vector map was fitted at training: {a}"
    );
    assert_eq!(e["similar"].as_array().expect("similar").len(), 5);
    assert_eq!(a["claims"].as_array().expect("claims").len(), 2);
    // Claims carry the names of their ends, as rows do.
    assert_eq!(a["claims"][0]["tail_name"], "gene 0", "{a}");

    // No edges: a prior, flagged as such; the features still place it in cluster 0.
    let bare = [
        "--entity",
        "bare",
        "--category",
        "Compound",
        "--vector",
        "1.0,0.0,0.1,0.05",
        "--predict",
        "bare treats ?",
        "--top",
        "3",
    ];
    let b = ask_json(&env, &bare);
    assert_eq!(b["entities"][0]["basis"], "features", "{b}");
    for r in b["rows"].as_array().expect("rows") {
        assert_eq!(r["no_edges"], true, "{r}");
    }
    // Neither edges nor features: the category mean, flagged.
    let c = ask_json(
        &env,
        &["--entity", "blank", "--category", "Compound", "--top", "3"],
    );
    assert_eq!(c["entities"][0]["basis"], "category-mean", "{c}");
    // Every relation of the category in both directions when nothing is named.
    let rels: std::collections::HashSet<&str> = c["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["relation"].as_str())
        .collect();
    assert!(rels.iter().all(|r| ["binds", "treats"].contains(r)), "{c}");

    // The same prompt twice: the same answer (seeded fold-in), and the human form names.
    let again = ask_json(&env, &bare);
    assert_eq!(b["rows"], again["rows"]);
    // `predict` names known entities as `ask` does.
    let c = env.write("c.tsv", "C0\tbinds\tG3\n");
    let p = env.json(&["predict", c.to_str().expect("path")]);
    assert_eq!(p[0]["head_name"], "compound 0", "{p}");
    assert_eq!(p[0]["tail_name"], "gene 3", "{p}");
    let text = env.ok(&["predict", c.to_str().expect("path")]);
    assert!(
        text.contains("C0 (compound 0)\tbinds\tG3 (gene 3)"),
        "{text}"
    );
    let text = env.ok(&[
        "ask",
        "--entity",
        "x",
        "--category",
        "Compound",
        "--edge",
        "x binds G3",
        "--top",
        "2",
    ]);
    assert!(
        text.contains("placed on claimed edges, 1 claimed edge(s)"),
        "{text}"
    );
    assert!(text.contains("behaves like: C"), "{text}");
    // People read `KEY (name)` wherever the graph names the entity.
    assert!(text.contains(" (compound "), "{text}");
    assert!(text.contains("x binds G3 (gene 3)"), "{text}");
}

#[test]
fn bad_prompts_are_located_errors() {
    let env = Env::new();
    clustered(&env);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--entity", "m", "--category", "Planet"],
            "--category 'Planet': unknown category `Planet`; the graph has: Compound, Disease, Gene",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--edge",
                "m inhibits G1",
            ],
            "--edge 'm inhibits G1': unknown relation `inhibits`",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--edge",
                "m binds G999",
            ],
            "--edge 'm binds G999': unknown entity `G999`",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--edge",
                "m binds D1",
            ],
            "Compound -binds-> Disease is outside the relation's domain and range (Compound -> Gene)",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--predict",
                "m associates ?",
            ],
            "Compound is outside the domain of `associates` (Disease)",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--predict",
                "? treats m",
            ],
            "Compound is outside the range of `treats` (Disease)",
        ),
        (
            &["--entity", "C1", "--category", "Compound"],
            "`C1` is already in the graph",
        ),
        (
            &["--entity", "m", "--category", "Compound", "--vector", "1,2"],
            "has 2 values; this model's Compound vector features have 4",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--smiles",
                "C1CC(",
            ],
            "--smiles 'C1CC(': m: invalid SMILES at position",
        ),
        (
            &[
                "--entity",
                "m",
                "--category",
                "Compound",
                "--edge",
                "m binds",
            ],
            "--edge 'm binds': expected three words",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["ask"];
        all.extend_from_slice(args);
        let err = env.fail(&all);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A prompt file: line and column of the offending edge.
    let prompt = env.write(
        "prompt.yaml",
        "entities:\n  - id: m\n    category: Compound\nedges:\n  - [m, binds, G1]\n  - [m, binds, Nowhere]\npredict:\n  - [m, treats, \"?\"]\n",
    );
    let err = env.fail(&["ask", prompt.to_str().expect("path")]);
    assert!(err.contains("prompt.yaml:6:"), "{err}");
    assert!(
        err.contains("edges[1][2]: unknown entity `Nowhere`"),
        "{err}"
    );
    let ok = env.json(&["ask", env.write("good.yaml", "entities:\n  - id: m\n    category: Compound\nedges:\n  - [m, binds, G1]\npredict:\n  - [m, treats, \"?\"]\ntop: 2\n").to_str().expect("path")]);
    assert_eq!(ok["rows"].as_array().expect("rows").len(), 2, "{ok}");
}

/// `--submit` sends the rows and the claims into a workflow; its next round takes them.
#[test]
fn submitted_rows_join_the_next_round() {
    let env = Env::new();
    let w = env.write(
        "w.yaml",
        staged_workflow(&format!(
            "  - name: assay\n    plugin: oracle\n    truth: {}\n",
            data("umls/demo-hidden.tsv").display()
        )),
    );
    run_now(&env, &w);
    let alice = user(&env, "alice", "reviewer");
    let service = user(&env, "svc", "service");
    let args = |token: &str| {
        vec![
            "ask".to_owned(),
            "--entity".into(),
            "new-bug".into(),
            "--vector".into(),
            "0.5,1.5".into(),
            "--edge".into(),
            "new-bug isa bacterium".into(),
            "--predict".into(),
            "new-bug ? ?".into(),
            "--top".into(),
            "3".into(),
            "--submit".into(),
            w.display().to_string(),
            "--pick".into(),
            "1,2".into(),
            "--token".into(),
            token.to_owned(),
        ]
    };
    let refused = env.fail(
        &args(&service)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(refused.contains("the token is refused"), "{refused}");
    let out = env.json(&args(&alice).iter().map(String::as_str).collect::<Vec<_>>());
    let s = &out["submitted"];
    assert_eq!(s["entities_added"], 1, "{out}");
    assert_eq!(
        s["pinned"].as_array().expect("pinned").len(),
        3,
        "two rows and one claim: {out}"
    );
    let list = env.json(&["pinned", "list"]);
    let rows = list.as_array().expect("list");
    assert_eq!(rows.len(), 3, "{list}");
    assert!(
        rows.iter()
            .all(|r| r["status"] == "waiting" && r["asker"] == "alice"),
        "{list}"
    );
    // The next round takes them (batch 10: up to 5 pinned).
    run_now(&env, &w);
    let list = env.json(&["pinned", "list"]);
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|r| r["status"] == "claimed"),
        "{list}"
    );
    // The new entity entered the graph in the submission's version, provenance `ask`.
    let log = env.ok(&["graph", "log"]);
    assert!(log.contains("ask by alice"), "{log}");
    // With its features, in the same version.
    let blame = env.json(&["graph", "blame", "new-bug", "--feature", "vector"]);
    assert!(blame.to_string().contains("0.5"), "{blame}");
}

/// Categories may carry vectors of different widths (embeddings from different models); one
/// category keeps one width unless an import replaces all of its vectors.
#[test]
fn each_category_keeps_its_own_vector_width() {
    let env = Env::new();
    import_clustered(&env);
    let some = env.write("d2.tsv", "id\tf0\tf1\nD0\t1\t2\n");
    let err = env.fail(&["import", "--features", some.to_str().expect("path")]);
    assert!(
        err.contains("2 values, but the graph's Disease vectors have 4"),
        "{err}"
    );
    let all: String = std::iter::once("id\tf0\tf1\n".to_owned())
        .chain((0..12).map(|d| format!("D{d}\t{d}\t1\n")))
        .collect();
    let all = env.write("d-all.tsv", all);
    env.ok(&["import", "--features", all.to_str().expect("path")]);
    let stats = env.json(&["stats"]);
    assert_eq!(stats["features"]["vector"], 72, "{stats}");
}

/// An ask creates entities; it never redeclares one the graph has. Here the entity came in
/// an import after the model was trained, so the model does not know it and the answer is
/// computed, but the submission is refused at the entity's flag and its features stay.
#[test]
fn an_ask_cannot_replace_an_entity_the_graph_has() {
    let env = Env::new();
    clustered(&env);
    let e = env.write("late.tsv", "subject\tpredicate\tobject\nC99\tbinds\tG0\n");
    let n = env.write(
        "late-nodes.tsv",
        "id\tcategory\tname\nC99\tCompound\tlate compound\nG0\tGene\tgene 0\n",
    );
    let f = env.write("late-features.tsv", "id\tf0\tf1\tf2\tf3\nC99\t1\t0\t0\t0\n");
    let path = |p: &std::path::Path| p.to_str().expect("path").to_owned();
    env.ok(&[
        "import",
        &path(&e),
        "--nodes",
        &path(&n),
        "--features",
        &path(&f),
    ]);
    let w = env.write(
        "w.yaml",
        staged_workflow("  - name: experts\n    plugin: human\n    quorum: 1\n"),
    );
    let alice = user(&env, "alice", "reviewer");
    let versions = || env.count("SELECT count(*) FROM graph_versions");
    let before = versions();
    let err = env.fail(&[
        "ask",
        "--entity",
        "C99",
        "--category",
        "Compound",
        "--vector",
        "9,9,9,9",
        "--edge",
        "C99 binds G1",
        "--top",
        "2",
        "--submit",
        &path(&w),
        "--token",
        &alice,
    ]);
    assert!(err.contains("--entity"), "located at the flag: {err}");
    assert!(
        err.contains("`C99` is already in the graph (since version 2)"),
        "{err}"
    );
    assert_eq!(versions(), before, "nothing written");
    assert_eq!(env.count("SELECT count(*) FROM ask_submissions"), 0);
    let blame = env.json(&["graph", "blame", "C99", "--feature", "vector"]);
    assert_eq!(blame.as_array().map(Vec::len), Some(1), "{blame}");
    assert_eq!(
        blame[0]["value"]["vector"],
        serde_json::json!([1.0, 0.0, 0.0, 0.0]),
        "{blame}"
    );
}

/// The CLI holds a prompt to the server's limits: counts before anything is resolved, and
/// the candidates the queries would score (here 32 bare entities, every relation, on a graph
/// of 6,000 entities: over a million) before any is scored.
#[test]
fn the_cli_refuses_prompts_over_the_limits() {
    let env = Env::new();
    let mut edges = String::from("subject\tpredicate\tobject\n");
    for i in 0..6000 {
        edges.push_str(&format!("n{i}\tr{}\tn{}\n", i % 3, (i * 7 + 1) % 6000));
    }
    let e = env.write("chain.tsv", edges);
    env.ok(&["import", e.to_str().expect("path")]);
    env.ok(&[
        "train",
        "--epochs",
        "1",
        "--dim",
        "8",
        "--ensemble",
        "1",
        "--eval-every",
        "0",
    ]);
    let mut flags = vec!["ask", "--entity", "x"];
    flags.extend(std::iter::repeat_n(["--edge", "x r0 n1"], 257).flatten());
    let err = env.fail(&flags);
    assert!(
        err.contains("257 claimed edges: at most 256 per ask"),
        "{err}"
    );
    let entities: String = (0..32).map(|i| format!("  - id: x{i}\n")).collect();
    let p = env.write("many.yaml", format!("entities:\n{entities}"));
    let err = env.fail(&["ask", p.to_str().expect("path")]);
    assert!(
        err.contains("candidate triples to score: at most 1000000 per ask"),
        "{err}"
    );
    assert!(err.contains("many.yaml:1"), "located at `entities`: {err}");
    // Under the limit, the same graph answers.
    let p = env.write("few.yaml", "entities:\n  - id: x\ntop: 3\n");
    let ok = env.json(&["ask", p.to_str().expect("path")]);
    assert_eq!(ok["rows"].as_array().map(Vec::len), Some(3), "{ok}");
    assert_eq!(ok["candidates"], 36000, "{ok}");
}
