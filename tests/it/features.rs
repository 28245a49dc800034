//! Entity features as graph data: imported (alone, with a graph file, from a workflow),
//! versioned and hashed, diffed, blamed, exported and read back, verified.

use crate::support::{Env, data};
use hypograph::graph::{EntityRecord, FeatureRecord, FeatureValue, TripleBatch};
use hypograph::store::{ImportOptions, OpenMode, Outcome, Store, StoreError};

const GRAPH: &str = "a\tr\tb\nb\tr\tc\nc\ts\td\n";
const VECTORS: &str = "id\tf0\tf1\tf2\na\t1\t-2.5\t0.125\nb\t0.1\t0\t3e-4\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A database holding GRAPH and VECTORS in version 1.
fn with_vectors() -> Env {
    let env = Env::new();
    let g = env.write("g.tsv", GRAPH);
    let f = env.write("f.tsv", VECTORS);
    let out = env.ok(&["import", path(&g), "--features", path(&f), "-m", "graph"]);
    assert!(
        out.contains("as version 1: +3 triples, 4 new entities, 2 new relations, 2 feature values set (0 replaced)"),
        "{out}"
    );
    env
}

fn hash(env: &Env, version: &str) -> String {
    env.json(&["graph", "show", version])["version"]["hash"]
        .as_str()
        .expect("hash")
        .to_owned()
}

#[test]
fn a_features_import_is_a_version_whose_hash_covers_the_values() {
    let env = with_vectors();
    // The same graph with one float changed hashes differently from the first version on.
    let other = Env::new();
    let g = other.write("g.tsv", GRAPH);
    let f = other.write("f.tsv", VECTORS.replace("0.125", "0.25"));
    other.ok(&["import", path(&g), "--features", path(&f), "-m", "graph"]);
    assert_eq!(env.export("1"), other.export("1"), "same edges");
    assert_ne!(hash(&env, "1"), hash(&other, "1"));

    // Features alone: a version of their own, with only the changed value in it.
    let s = env.write("s.tsv", "id\tsmiles\nd\tCCO\n");
    let out = env.ok(&["import", "--features", path(&s), "-m", "smiles"]);
    assert!(
        out.contains("as version 2: 1 values set, 0 replaced"),
        "{out}"
    );
    let again = env.ok(&["import", "--features", path(&s)]);
    assert!(
        again.starts_with("nothing to import: every feature of"),
        "{again}"
    );
    let again = env.ok(&[
        "import",
        path(&env.path("g.tsv")),
        "--features",
        path(&env.path("f.tsv")),
    ]);
    assert!(again.starts_with("nothing to import"), "{again}");
    assert_eq!(env.count("SELECT count(*) FROM graph_versions"), 2);
    assert_eq!(
        env.json(&["stats"])["features"],
        serde_json::json!({ "smiles": 1, "vector": 2 })
    );
    assert_eq!(
        env.json(&["stats", "--version", "1"])["features"],
        serde_json::json!({ "vector": 2 })
    );

    let changed = env.write(
        "f2.tsv",
        "id\tf0\tf1\tf2\nb\t0.1\t0\t3e-4\na\t1\t-2.5\t0.5\n",
    );
    let before = hash(&env, "2");
    let out = env.json(&["import", "--features", path(&changed), "-m", "new a"]);
    assert_eq!(out["outcome"]["version"], 3);
    assert_eq!(out["outcome"]["features_set"], 1, "b is unchanged: {out}");
    assert_eq!(
        out["outcome"]["features_removed"], 1,
        "a's old vector: {out}"
    );
    let v3 = env.json(&["graph", "show", "3"]);
    assert_eq!(v3["version"]["parent_id"], 2);
    assert_ne!(v3["version"]["hash"].as_str(), Some(before.as_str()));
    assert_eq!(v3["version"]["n_features"], 1);
    assert_eq!(v3["version"]["n_features_removed"], 1);
    assert_eq!(
        v3["features"],
        serde_json::json!([{ "entity": "a", "kind": "vector", "change": "changed" }])
    );
    let log = env.ok(&["graph", "log"]);
    assert!(log.contains("[features +1 -1] new a"), "{log}");
    assert!(log.contains("[features +2 -0] graph"), "{log}");

    let diff = env.json(&["graph", "diff", "1", "3"]);
    assert_eq!(
        diff["features"],
        serde_json::json!([
            { "entity": "a", "kind": "vector", "change": "changed" },
            { "entity": "d", "kind": "smiles", "change": "added" },
        ])
    );
    let back = env.ok(&["graph", "diff", "3", "1"]);
    assert!(back.contains("~ feature a\tvector\n"), "{back}");
    assert!(back.contains("- feature d\tsmiles\n"), "{back}");
    assert!(
        back.contains("features: 0 added, 1 changed, 1 removed\n"),
        "{back}"
    );
    // A revert restores the replaced value: the graph's features equal version 2's again.
    let out = env.ok(&["graph", "revert", "3"]);
    assert!(out.contains("features +1 -1"), "{out}");
    assert_eq!(
        env.json(&["graph", "diff", "2", "4"])["features"],
        serde_json::json!([])
    );
    env.ok(&["graph", "verify"]);
}

#[test]
fn bad_features_are_located_and_write_nothing() {
    let env = with_vectors();
    let unknown = env.write("u.tsv", "id\tsmiles\na\tCC\nzz\tCCO\n");
    let err = env.fail(&["import", "--features", path(&unknown)]);
    assert!(
        err.contains(&format!("{}:3: unknown entity `zz`", path(&unknown))),
        "{err}"
    );
    let bad = env.write("b.tsv", "id\tf0\tf1\tf2\na\t1\t2\t3\nb\t1\tx\t3\n");
    let err = env.fail(&["import", "--features", path(&bad)]);
    assert!(
        err.contains(&format!(
            "{}:3:5: field 3 (`f1`): `x` is not a number",
            path(&bad)
        )),
        "{err}"
    );
    let nan = env.write("n.csv", "id,f0,f1,f2\na,1,2,NaN\n");
    let err = env.fail(&["import", "--features", path(&nan)]);
    assert!(
        err.contains(&format!(
            "{}:2:7: field 4 (`f2`): `NaN` is not a finite number",
            path(&nan)
        )),
        "{err}"
    );
    let twice = env.write("t.tsv", "id\tsmiles\nc\tC\nb\tN\nc\tO\n");
    let err = env.fail(&["import", "--features", path(&twice)]);
    assert!(
        err.contains(&format!(
            "{}:4: `c` already appears on line 2",
            path(&twice)
        )),
        "{err}"
    );
    // Every vector of a category keeps one width (these entities have no category).
    let narrow = env.write("w.tsv", "id\tf0\nc\t1\n");
    let err = env.fail(&["import", "--features", path(&narrow)]);
    assert!(
        err.contains(
            "feature `vector` of `c`: 1 values, but the graph's uncategorized vectors have 3"
        ),
        "{err}"
    );
    // A graph file and features whose entity is in neither: nothing of either is written.
    let g = env.write("g2.tsv", "x\tr\ty\n");
    let err = env.fail(&["import", path(&g), "--features", path(&unknown)]);
    assert!(err.contains("unknown entity `zz`"), "{err}");
    assert_eq!(env.count("SELECT count(*) FROM graph_versions"), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM entities WHERE key = 'x'"),
        0
    );
}

#[test]
fn a_graph_file_and_its_features_are_one_version_and_blame_names_it() {
    let env = with_vectors();
    // New entities arrive with their features in the same version.
    let g = env.write("g2.tsv", "d\tr\te\n");
    let f = env.write("f2.tsv", "id\tsmiles\tsequence\ne\tCCO\t\nd\t\tMKV\n");
    let out = env.ok(&["import", path(&g), "--features", path(&f), "-m", "e and d"]);
    assert!(
        out.contains("as version 2: +1 triples, 1 new entities"),
        "{out}"
    );
    assert!(out.contains("2 feature values set (0 replaced)"), "{out}");

    let b = env.json(&["graph", "blame", "e", "--feature", "smiles"]);
    assert_eq!(b[0]["added_in"]["id"], 2);
    assert_eq!(b[0]["added_in"]["message"], "e and d");
    assert_eq!(b[0]["value"], serde_json::json!({ "smiles": "CCO" }));
    assert!(b[0]["removed_in"].is_null());
    let files = b[0]["added_in"]["source"]["files"]
        .as_array()
        .expect("files");
    assert!(files.iter().any(|x| x["path"] == path(&f)), "{b}");

    let changed = env.write("f3.tsv", "id\tf0\tf1\tf2\na\t9\t9\t9\n");
    env.ok(&["import", "--features", path(&changed), "-m", "new a"]);
    let text = env.ok(&["graph", "blame", "a", "--feature", "vector"]);
    assert!(text.contains("set in     version 1 ("), "{text}");
    assert!(text.contains("replaced in version 3 ("), "{text}");
    assert!(
        text.contains("set in     version 3 (") && text.contains("new a"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("live"), "{text}");
    let err = env.fail(&["graph", "blame", "c", "--feature", "smiles"]);
    assert!(err.contains("c never had a smiles feature"), "{err}");
    let err = env.fail(&["graph", "blame", "zz", "--feature", "smiles"]);
    assert!(err.contains("unknown entity `zz`"), "{err}");
}

#[test]
fn exported_features_import_back_equal() {
    let env = with_vectors();
    let s = env.write(
        "s.tsv",
        "id\tsmiles\tsequence\nd\tC[C@H](N)O\tMKV\nb\tCC\t\n",
    );
    env.ok(&["import", "--features", path(&s)]);
    // Values whose shortest text is long, and a negative zero, survive the trip.
    let odd = env.write("o.tsv", "id\tf0\tf1\tf2\nc\t0.1\t-0\t16777217\n");
    env.ok(&["import", "--features", path(&odd)]);

    let out = env.path("out.tsv");
    let feats = env.path("out-features.tsv");
    env.ok(&["graph", "export", path(&out), "--features", path(&feats)]);
    let written = std::fs::read_to_string(&feats).expect("features written");
    assert!(
        written.starts_with("id\tsmiles\tsequence\tf0\tf1\tf2\n"),
        "{written}"
    );

    let copy = Env::new();
    copy.ok(&["import", path(&out), "--features", path(&feats)]);
    let again = copy.path("again.tsv");
    copy.ok(&[
        "graph",
        "export",
        path(&copy.path("e.tsv")),
        "--features",
        path(&again),
    ]);
    assert_eq!(written, std::fs::read_to_string(&again).expect("read back"));
    assert_eq!(features_at(&env, 3), features_at(&copy, 1));

    // KGX: features.tsv beside nodes and edges.
    let dir = env.path("kgx");
    env.ok(&["graph", "export", "--format", "kgx", path(&dir)]);
    let kgx = Env::new();
    kgx.ok(&[
        "import",
        path(&dir),
        "--features",
        path(&dir.join("features.tsv")),
    ]);
    assert_eq!(features_at(&env, 3), features_at(&kgx, 1));
    // An older version exports the features it had.
    let v1 = env.path("v1.tsv");
    env.ok(&[
        "graph",
        "export",
        "--version",
        "1",
        "-",
        "--features",
        path(&v1),
    ]);
    assert_eq!(
        std::fs::read_to_string(&v1).expect("v1"),
        "id\tf0\tf1\tf2\na\t1\t-2.5\t0.125\nb\t0.1\t0\t0.0003\n"
    );
}

fn features_at(env: &Env, v: i64) -> Vec<FeatureRecord> {
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let f = store.features_at(v).await.expect("features");
        store.close().await;
        f
    })
}

/// The hash a build with format 3 wrote for a version (see `store::hash`), computed here
/// from the definition, so that such a chain can be made without that build.
fn format_3_hash(
    parent: &str,
    message: &str,
    source: &str,
    entities: &[(&str, &str)],
    added: &[[&str; 3]],
) -> String {
    let mut buf = Vec::new();
    let mut field = |s: &[u8]| {
        buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        buf.extend_from_slice(s);
    };
    field(b"hypograph-version-3");
    field(parent.as_bytes());
    field(message.as_bytes());
    field(source.as_bytes());
    field(b"");
    field(&(entities.len() as u64).to_le_bytes());
    for (k, c) in entities {
        field(k.as_bytes());
        field(c.as_bytes());
    }
    let empty: &[[&str; 3]] = &[];
    for list in [added, empty, empty, empty] {
        field(&(list.len() as u64).to_le_bytes());
        for t in list {
            for part in t {
                field(part.as_bytes());
            }
        }
    }
    blake3::hash(&buf).to_hex().to_string()
}

#[test]
fn verify_covers_features_after_format_3_versions() {
    let env = Env::new();
    let g = env.write("g.tsv", "a\tr\tb\nb\tr\tc\n");
    env.ok(&["import", path(&g), "-m", "old"]);
    // Make version 1 what a format-3 build wrote.
    let source = env
        .strings("SELECT source FROM graph_versions WHERE id = 1")
        .remove(0);
    let source = serde_json::from_str::<serde_json::Value>(&source)
        .expect("json")
        .to_string();
    let h = format_3_hash(
        &"0".repeat(64),
        "old",
        &source,
        &[("a", ""), ("b", ""), ("c", "")],
        &[["a", "r", "b"], ["b", "r", "c"]],
    );
    env.sql(&format!(
        "UPDATE graph_versions SET hash_format = 3, hash = '{h}' WHERE id = 1"
    ));
    env.ok(&["graph", "verify"]);

    let f = env.write("f.tsv", "id\tf0\tf1\na\t1\t2\nc\t3\t4\n");
    env.ok(&["import", "--features", path(&f), "-m", "vectors"]);
    let s = env.write("s.tsv", "id\tf0\tf1\na\t1\t2.5\n");
    env.ok(&["import", "--features", path(&s), "-m", "a again"]);
    assert_eq!(
        env.strings("SELECT CAST(hash_format AS TEXT) FROM graph_versions ORDER BY id"),
        vec!["3", "5", "5"],
        "new versions are written in the newest format, features covered from 4 on"
    );
    let ok = env.ok(&["graph", "verify"]);
    assert!(
        ok.starts_with("ok: 3 versions, 2 edges and 3 feature values match"),
        "{ok}"
    );

    // A value changed behind the store's back ([3, 4] -> [2, 4]) breaks the chain at the
    // version that set it; restored, it verifies again.
    env.sql(
        "UPDATE entity_features SET vector = x'0000004000008040' \
         WHERE entity = (SELECT id FROM entities WHERE key = 'c')",
    );
    let err = env.fail(&["graph", "verify"]);
    assert!(
        err.contains("version 2 does not verify: hash mismatch"),
        "{err}"
    );
    env.sql(
        "UPDATE entity_features SET vector = x'0000404000008040' \
         WHERE entity = (SELECT id FROM entities WHERE key = 'c')",
    );
    env.ok(&["graph", "verify"]);
    // So does a count edited behind its back.
    env.sql("UPDATE graph_versions SET n_features_removed = 0 WHERE id = 3");
    let err = env.fail(&["graph", "verify"]);
    assert!(
        err.contains(
            "version 3 does not verify: stored feature counts (+1 -0) differ from the feature \
             rows found (+1 -1)"
        ),
        "{err}"
    );
}

#[test]
fn a_workflow_imports_its_features_with_the_graph_in_version_1() {
    let env = Env::new();
    let f = env.write("features.tsv", "id\tf0\tf1\nalga\t0.5\t1\nentity\t-1\t2\n");
    let text = format!(
        "name: nightly\nretrain:\n  schedule: \"0 0 2 * * *\"\ngraph:\n  import: {}\n  features: {}\n\
         model:\n  dim: 8\n  epochs: 1\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n",
        data("umls/demo-visible.tsv").display(),
        f.file_name().and_then(|n| n.to_str()).expect("name"),
    );
    let w = env.write("nightly.yaml", text);
    env.ok(&["validate", path(&w)]);
    env.ok(&["run", path(&w)]);
    let v1 = env.json(&["graph", "show", "1"]);
    assert_eq!(v1["version"]["n_features"], 2, "{v1}");
    assert_eq!(env.count("SELECT count(*) FROM graph_versions"), 1);
    assert_eq!(
        features_at(&env, 1),
        vec![
            FeatureRecord {
                entity: "alga".into(),
                value: FeatureValue::Vector(vec![0.5, 1.0])
            },
            FeatureRecord {
                entity: "entity".into(),
                value: FeatureValue::Vector(vec![-1.0, 2.0])
            },
        ]
    );
    env.ok(&["graph", "verify"]);

    // Features without a graph file to ride with are refused before anything runs.
    let lonely = env.write(
        "lonely.yaml",
        "name: w\ngraph:\n  features: features.tsv\nstages:\n  - name: s\n    plugin: human\n",
    );
    let err = env.fail(&["validate", path(&lonely)]);
    assert!(
        err.contains(
            "graph.features: features are imported with the graph: give `import` or `kgx` too"
        ),
        "{err}"
    );
}

#[test]
fn the_library_imports_features_with_a_batch_and_reads_them_at_a_version() {
    let env = with_vectors();
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing).await.expect("open");
        let opts = ImportOptions {
            message: "m".into(),
            ..ImportOptions::default()
        };
        // An entity with no edges and its features, as an ask submission adds one.
        let batch = TripleBatch {
            entities: vec![EntityRecord {
                key: "new".into(),
                category: "Compound".into(),
                ..EntityRecord::default()
            }],
            features: vec![
                (0, FeatureValue::Smiles("CCN".into())),
                (0, FeatureValue::Vector(vec![1.0, 2.0, 3.0])),
            ],
            ..TripleBatch::default()
        };
        let Outcome::Committed(c) = store.import(&batch, &opts).await.expect("import") else {
            panic!("a new entity is a change");
        };
        assert_eq!((c.version, c.entities_added, c.features_set), (2, 1, 2));
        let graph = store.load_graph(2).await.expect("graph");
        assert!(graph.entity_id("new").is_some(), "an entity with no edges is in the graph");
        let at2 = store.features_at(2).await.expect("features");
        assert_eq!(at2.len(), 4);
        assert_eq!(at2[2].entity, "new");
        assert_eq!(at2[2].value, FeatureValue::Smiles("CCN".into()));
        assert_eq!(at2[3].value, FeatureValue::Vector(vec![1.0, 2.0, 3.0]));
        assert_eq!(store.features_at(1).await.expect("at 1").len(), 2);

        let same = [FeatureRecord {
            entity: "new".into(),
            value: FeatureValue::Smiles("CCN".into()),
        }];
        let again = store.import_features(&same, &opts).await.expect("same");
        assert!(matches!(again, Outcome::Unchanged { .. }), "{again:?}");
        let unknown = [FeatureRecord {
            entity: "ghost".into(),
            value: FeatureValue::Smiles("C".into()),
        }];
        let err = store.import_features(&unknown, &opts).await;
        assert!(matches!(err, Err(StoreError::UnknownEntity(k)) if k == "ghost"));
        let nan = [FeatureRecord {
            entity: "a".into(),
            value: FeatureValue::Vector(vec![1.0, f32::NAN, 0.0]),
        }];
        let err = store.import_features(&nan, &opts).await.expect_err("NaN");
        assert_eq!(err.to_string(), "feature `vector` of `a`: vector value 2 is NaN");
        let twice = [same[0].clone(), FeatureRecord {
            entity: "new".into(),
            value: FeatureValue::Smiles("CCO".into()),
        }];
        let err = store.import_features(&twice, &opts).await.expect_err("twice");
        assert_eq!(err.to_string(), "feature `smiles` of `new`: given twice in one import");
        // A new width is fine when it replaces every vector at once.
        let wide: Vec<FeatureRecord> = ["a", "b", "new"]
            .into_iter()
            .map(|e| FeatureRecord {
                entity: e.into(),
                value: FeatureValue::Vector(vec![0.5; 4]),
            })
            .collect();
        let out = store.import_features(&wide, &opts).await.expect("new width");
        assert!(matches!(out, Outcome::Committed(ref c) if c.features_set == 3 && c.features_removed == 3), "{out:?}");
        assert_eq!(store.head().await.expect("head"), Some(3));
        store.close().await;
    });
    env.ok(&["graph", "verify"]);
}

#[test]
fn reading_a_versions_features_is_fast() {
    let env = Env::new();
    let n = 47_000;
    let mut graph = String::new();
    let mut features = String::from("id");
    for i in 0..32 {
        features.push_str(&format!("\tf{i}"));
    }
    features.push('\n');
    for e in 0..n {
        graph.push_str(&format!("e{e}\tr\te{}\n", (e + 1) % n));
        features.push_str(&format!("e{e}"));
        for i in 0..32 {
            features.push_str(&format!("\t{}", (e * 32 + i) as f32 / 7.0));
        }
        features.push('\n');
    }
    let g = env.write("g.tsv", graph);
    let f = env.write("f.tsv", features);
    env.ok(&["import", path(&g), "--features", path(&f)]);
    runtime().block_on(async {
        let store = Store::open(env.location(), OpenMode::Existing)
            .await
            .expect("open");
        let started = std::time::Instant::now();
        let all = store.features_at(1).await.expect("features");
        let took = started.elapsed();
        assert_eq!(all.len(), n);
        assert_eq!(all[5].entity, "e5");
        assert_eq!(
            all[5].value,
            FeatureValue::Vector((0..32).map(|i| (5 * 32 + i) as f32 / 7.0).collect())
        );
        // A test build takes about 0.25 s for this.
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        store.close().await;
    });
}

/// Embeddings kept as columns of a KGX nodes file, named in the workflow, enter version 1 with
/// the graph; a bad cell is located by file, line and column name.
#[test]
fn a_workflow_reads_features_from_kgx_node_columns() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("kg")).expect("mkdir");
    env.write(
        "kg/nodes.tsv",
        "id\tcategory\temb0\temb1\tsmiles\n\
         C1\tCompound\t0.5\t1\tCCO\n\
         C2\tCompound\t\t\t\n\
         G1\tGene\t-1\t2\t\n",
    );
    env.write(
        "kg/edges.tsv",
        "subject\tpredicate\tobject\nC1\tbinds\tG1\nC2\tbinds\tG1\n",
    );
    let workflow = |columns: &str| {
        format!(
            "name: kgx\nretrain:\n  schedule: \"0 0 2 * * *\"\ngraph:\n  kgx: kg\n  node_features: {columns}\n\
             model:\n  dim: 8\n  epochs: 1\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n"
        )
    };
    let w = env.write(
        "kgx.yaml",
        workflow("{vector: [emb0, emb1], smiles: smiles}"),
    );
    env.ok(&["validate", path(&w)]);
    env.ok(&["run", path(&w)]);
    assert_eq!(
        features_at(&env, 1),
        vec![
            FeatureRecord {
                entity: "C1".into(),
                value: FeatureValue::Smiles("CCO".into())
            },
            FeatureRecord {
                entity: "C1".into(),
                value: FeatureValue::Vector(vec![0.5, 1.0])
            },
            FeatureRecord {
                entity: "G1".into(),
                value: FeatureValue::Vector(vec![-1.0, 2.0])
            },
        ]
    );

    // A column the header lacks, and a half-empty vector, are located errors.
    let env2 = Env::new();
    std::fs::create_dir_all(env2.path("kg")).expect("mkdir");
    env2.write(
        "kg/nodes.tsv",
        "id\tcategory\temb0\temb1\nC1\tCompound\t0.5\t\n",
    );
    env2.write(
        "kg/edges.tsv",
        "subject\tpredicate\tobject\nC1\tbinds\tC1\n",
    );
    let w2 = env2.write("kgx.yaml", workflow("{vector: [emb0, emb1]}"));
    let err = env2.fail(&["validate", path(&w2)]);
    assert!(
        err.contains("nodes.tsv:2: column `emb1`: empty, but other vector columns of `C1` are set"),
        "{err}"
    );
    let w3 = env2.write("kgx3.yaml", workflow("{vector: [emb9]}"));
    let err = env2.fail(&["validate", path(&w3)]);
    assert!(err.contains("no column `emb9` for node features"), "{err}");
    assert!(
        !env2.path("hypograph.db").exists()
            || env2.count("SELECT count(*) FROM graph_versions") == 0
    );
}
