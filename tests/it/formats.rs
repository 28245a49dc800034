//! The published graphs' formats (fixture slices written from their documentation, see
//! tests/fixtures/formats/make.py) and mapped tables, imported through the binary.

use crate::support::Env;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn first_hit(env: &Env, text: &str) -> serde_json::Value {
    env.json(&["entity", "search", text])[0].clone()
}

#[test]
fn hetionet_directory_imports_with_names_kinds_and_metaedges() {
    let env = Env::new();
    let dir = fixture("hetionet");
    let report = env.json(&["import", s(&dir), "--format", "hetionet"]);
    let edges = {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(dir.join("hetionet-v1.0-edges.sif.gz")).expect("fixture"),
        )
        .read_to_string(&mut text)
        .expect("gzip");
        text.lines().count() as u64 - 1
    };
    assert_eq!(report["outcome"]["added"].as_u64(), Some(edges));
    let stats = env.json(&["stats"]);
    assert!(stats["by_relation"]["CtD"].as_u64() > Some(0), "{stats}");
    assert!(
        stats["categories"]["Side Effect"].as_u64() > Some(0),
        "{stats}"
    );
    // Names from the nodes file are searchable; the kind is the category.
    let hit = first_hit(&env, "Compound::DB00001");
    assert_eq!(hit["name"], "Compound 0");
    assert_eq!(hit["category"], "Compound");
    // The version names the format and every file read.
    let log = env.json(&["graph", "log"]);
    assert_eq!(log[0]["source"]["format"], "hetionet");
    assert_eq!(log[0]["source"]["files"].as_array().map(Vec::len), Some(2));
}

#[test]
fn hetionet_files_given_separately_need_the_nodes_file() {
    let env = Env::new();
    let edges = fixture("hetionet/hetionet-v1.0-edges.sif.gz");
    let err = env.fail(&["import", s(&edges), "--format", "hetionet"]);
    assert!(err.contains("needs its nodes file"), "{err}");
    assert!(!env.db.exists(), "a failed import creates no database");
    let nodes = fixture("hetionet/hetionet-v1.0-nodes.tsv");
    env.ok(&[
        "import",
        s(&edges),
        "--nodes",
        s(&nodes),
        "--format",
        "hetionet",
    ]);
}

#[test]
fn primekg_keys_names_and_quoted_fields() {
    let env = Env::new();
    let kg = fixture("primekg/kg.csv");
    let report = env.json(&["import", s(&kg), "--format", "primekg"]);
    assert_eq!(report["lines"], 14);
    assert_eq!(report["outcome"]["added"], 14);
    let hit = first_hit(&env, "tension-type");
    assert_eq!(hit["key"], "disease:MONDO_grouped:5044");
    assert_eq!(hit["name"], "headache, tension-type");
    assert_eq!(hit["category"], "disease");
    let stats = env.json(&["stats"]);
    assert_eq!(stats["categories"]["gene/protein"], 2);
}

#[test]
fn drkg_and_monarch_tarballs_import_directly() {
    let env = Env::new();
    let report = env.json(&[
        "import",
        s(&fixture("drkg/drkg.tar.gz")),
        "--format",
        "drkg",
    ]);
    assert_eq!(report["outcome"]["added"], 10);
    let stats = env.json(&["stats"]);
    assert_eq!(stats["categories"]["Compound"], 3);
    assert_eq!(stats["categories"]["Side Effect"], 1);

    let env = Env::new();
    let report = env.json(&[
        "import",
        s(&fixture("monarch/monarch-kg.tar.gz")),
        "--format",
        "monarch",
    ]);
    // Two rows give the same gene-disease edge (OMIM and Orphanet): one triple.
    assert_eq!(report["lines"].as_u64(), Some(10));
    assert_eq!(report["outcome"]["added"], 4);
    assert_eq!(first_hit(&env, "PTGS2")["category"], "biolink:Gene");
}

#[test]
fn mapped_csv_with_nodes_file_and_composite_keys() {
    let env = Env::new();
    let nodes = env.write(
        "nodes.csv",
        "kind,src,local,label\ndrug,DrugBank,DB1,\"Aspirin, 81 mg\"\ndisease,MONDO,7,flu\n",
    );
    let edges = env.write(
        "edges.csv",
        "a_src,a_id,rel,b_src,b_id\nDrugBank,DB1,treats,MONDO,7\n",
    );
    let out = env.ok(&[
        "import",
        s(&edges),
        "--nodes",
        s(&nodes),
        "--map",
        "subject=a_src+a_id,object=b_src+b_id,predicate=rel,id=src+local,name=label,category=kind",
    ]);
    assert!(out.contains("+1 triples, 2 new entities"), "{out}");
    let hit = first_hit(&env, "DrugBank:DB1");
    assert_eq!(hit["name"], "Aspirin, 81 mg");
    assert_eq!(hit["category"], "drug");

    // A headerless TSV, columns by number.
    let env = Env::new();
    let t = env.write("t.tsv", "x\tA\tr\tB\n");
    env.ok(&[
        "import",
        s(&t),
        "--no-header",
        "--map",
        "subject=2,predicate=3,object=4",
    ]);
    assert_eq!(env.export("HEAD"), ["A\tr\tB"]);
}

#[test]
fn bad_rows_and_category_conflicts_are_located_and_write_nothing() {
    let env = Env::new();
    let nodes = env.write("nodes.csv", "id,category\nA,drug\nB,disease\n");
    let edges = env.write("edges.csv", "s,p,o,oc\nA,r,B,disease\nA,r,B,gene\n");
    let map = "subject=s,predicate=p,object=o,object_category=oc";
    let err = env.fail(&["import", s(&edges), "--nodes", s(&nodes), "--map", map]);
    assert!(
        err.contains(&format!(
            "{}:3:7: entity `B` has category `gene` here but `disease` at {}:3",
            edges.display(),
            nodes.display()
        )),
        "{err}"
    );
    assert!(!env.db.exists());

    let edges = env.write("e2.csv", "s,p,o\nA,r,B\nA,,B\n");
    let err = env.fail(&[
        "import",
        s(&edges),
        "--map",
        "subject=s,predicate=p,object=o",
    ]);
    assert!(
        err.contains(&format!("{}:3:3: empty predicate", edges.display())),
        "{err}"
    );
    let err = env.fail(&["import", s(&edges), "--map", "subject=s,verb=p"]);
    assert!(err.contains("--map: unknown map key `verb`"), "{err}");
    let err = env.fail(&[
        "import",
        s(&edges),
        "--map",
        "subject=s,predicate=q,object=o",
    ]);
    assert!(
        err.contains("names column `q`, which the header lacks (columns: s, p, o)"),
        "{err}"
    );
    // Skipped instead, with the reason.
    let out = env.run(&[
        "import",
        s(&edges),
        "--map",
        "subject=s,predicate=p,object=o",
        "--skip-invalid",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("column 3: empty predicate"), "{stderr}");
    assert_eq!(env.export("HEAD"), ["A\tr\tB"]);
}

#[test]
fn a_workflow_graph_block_reads_a_preset_and_a_map() {
    let env = Env::new();
    let kg = fixture("primekg/kg.csv");
    let w = env.write(
        "w.yaml",
        format!(
            "name: w\ngraph:\n  import: {}\n  format: primekg\ngenerate:\n  relations: [indication]\nstages:\n  - name: s\n    plugin: human\n",
            kg.display()
        ),
    );
    let out = env.ok(&["validate", s(&w)]);
    assert!(out.contains("ok") || out.contains("valid"), "{out}");
    let bad = env.write(
        "bad.yaml",
        format!(
            "name: w\ngraph:\n  import: {}\n  map:\n    subjekt: x_id\ngenerate:\n  relations: [indication]\nstages:\n  - name: s\n    plugin: human\n",
            kg.display()
        ),
    );
    let err = env.fail(&["validate", s(&bad)]);
    assert!(
        err.contains("bad.yaml:5:5: graph.map.subjekt: unknown map key `subjekt`"),
        "{err}"
    );
    // A relation the preset's file lacks is found before anything is imported.
    let wrong = env.write(
        "wrong.yaml",
        format!(
            "name: w\ngraph:\n  import: {}\n  format: primekg\ngenerate:\n  relations: [treats]\nstages:\n  - name: s\n    plugin: human\n",
            kg.display()
        ),
    );
    let err = env.fail(&["run", s(&wrong), "--rounds", "1"]);
    assert!(
        err.contains("relation `treats` is not in the graph"),
        "{err}"
    );
}

#[test]
fn a_category_that_differs_from_the_graphs_is_refused() {
    let env = Env::new();
    let first = env.write("a.csv", "s,sc,p,o,oc\nA,drug,r,B,disease\n");
    let map = "subject=s,subject_category=sc,predicate=p,object=o,object_category=oc";
    env.ok(&["import", s(&first), "--map", map]);
    let second = env.write("b.csv", "s,sc,p,o,oc\nC,drug,r,B,gene\n");
    let err = env.fail(&["import", s(&second), "--map", map]);
    assert!(
        err.contains("entity `B` has category `gene` in this import but `disease` in the graph (since version 1)"),
        "{err}"
    );
    assert_eq!(
        env.json(&["graph", "log"]).as_array().map(Vec::len),
        Some(1)
    );
    // The same category, or none, is fine.
    let third = env.write("c.tsv", "C\tr\tB\n");
    env.ok(&["import", s(&third)]);
}

#[test]
fn simulate_reads_a_published_layout_and_proposes_only_the_named_relation() {
    let env = Env::new();
    let out = env.path("sim");
    env.ok(&[
        "simulate",
        s(&fixture("hetionet")),
        "--format",
        "hetionet",
        "--relations",
        "DaG",
        "--hide",
        "0.5",
        "--strategies",
        "random,greedy",
        "--rounds",
        "2",
        "--batch",
        "4",
        "--seeds",
        "1",
        "--ensemble",
        "1",
        "--dim",
        "8",
        "--epochs",
        "2",
        "--retrain-epochs",
        "1",
        "--regime",
        "negatives",
        "--out",
        s(&out),
    ]);
    let proposed = std::fs::read_to_string(out.join("proposed.tsv")).expect("proposed");
    let rows: Vec<Vec<&str>> = proposed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2 * 2 * 4, "{proposed}");
    assert!(
        rows.iter()
            .all(|r| r[4] == "DaG" && r[3].starts_with("Disease::") && r[5].starts_with("Gene::")),
        "{proposed}"
    );
}

/// The members of the Monarch fixture tarball, as (name, bytes).
fn monarch_members() -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let file = std::fs::File::open(fixture("monarch/monarch-kg.tar.gz")).expect("fixture");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("name").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("member");
        out.push((name, bytes));
    }
    out
}

/// Writes a `.tar.gz` of `members`.
fn tarball(path: &Path, members: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).expect("create"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes.as_slice())
            .expect("append");
    }
    tar.into_inner().expect("tar").finish().expect("gz");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn compressed_members_of_a_tarball_are_decompressed_by_their_own_name() {
    let env = Env::new();
    let members: Vec<(String, Vec<u8>)> = monarch_members()
        .into_iter()
        .map(|(name, bytes)| (format!("kg/{name}.gz"), gzip(&bytes)))
        .collect();
    let path = env.path("monarch-kg.tar.gz");
    tarball(&path, &members);
    let report = env.json(&["import", s(&path), "--format", "monarch"]);
    assert_eq!(report["lines"].as_u64(), Some(10));
    assert_eq!(report["outcome"]["added"], 4);
    assert_eq!(first_hit(&env, "PTGS2")["category"], "biolink:Gene");
}

#[test]
fn several_matching_members_are_refused_as_in_a_directory() {
    let env = Env::new();
    let mut members = monarch_members();
    let edges = members
        .iter()
        .find(|(n, _)| n.contains("edges"))
        .cloned()
        .expect("edges member");
    members.push((format!("old/{}", edges.0), edges.1.clone()));
    let path = env.path("monarch-kg.tar.gz");
    tarball(&path, &members);
    let stderr = env.fail(&["import", s(&path), "--format", "monarch"]);
    assert!(
        stderr.contains("several members match")
            && stderr.contains("monarch-kg_edges.tsv, old/monarch-kg_edges.tsv"),
        "{stderr}"
    );

    // The same files side by side in a directory: refused the same way.
    let dir = env.path("dir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, bytes) in &members {
        let name = name.replace("old/", "old-");
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    let stderr = env.fail(&["import", s(&dir), "--format", "monarch"]);
    assert!(stderr.contains("several files match"), "{stderr}");
}
