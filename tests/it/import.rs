//! Importing triples and KGX files through the binary.

use crate::support::{Env, data, file_lines};

#[test]
fn umls_import_log_and_stats() {
    let env = Env::new();
    let train = data("umls/train.txt");
    let out = env.ok(&["import", train.to_str().expect("utf-8 path")]);
    assert!(out.contains("as version 1: +5216 triples"), "{out}");
    let stats = env.json(&["stats"]);
    assert_eq!(stats["triples"], 5216);
    assert_eq!(stats["entities"], 135);
    assert_eq!(stats["relations"], 46);
    assert_eq!(stats["categories"][""], 135);
    assert_eq!(
        stats["by_relation"]["isa"].as_u64().map(|n| n > 0),
        Some(true)
    );
    let log = env.json(&["graph", "log"]);
    assert_eq!(log.as_array().map(Vec::len), Some(1));
    assert_eq!(log[0]["source"]["kind"], "import");
    assert_eq!(log[0]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(env.export("HEAD"), file_lines(&train));
}

#[test]
fn reimport_adds_nothing_and_says_so() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\nb\tr\tc\n");
    env.ok(&["import", f.to_str().expect("path")]);
    let again = env.ok(&["import", f.to_str().expect("path")]);
    assert!(again.starts_with("nothing to import"), "{again}");
    assert_eq!(
        env.json(&["graph", "log"]).as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn messy_file_equals_clean_file() {
    let env = Env::new();
    let clean = env.write("clean.tsv", "a\tr\tb\nb\tr\tc\nc\ts\ta\n");
    let messy = env.write(
        "messy.tsv",
        "\u{feff}head\trelation\ttail\r\na\tr\tb  \r\n\r\nb\tr\tc\t\r\na\tr\tb\r\nc\ts\ta",
    );
    let out = env.ok(&["import", messy.to_str().expect("path"), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["duplicates"], 1);
    assert_eq!(report["outcome"]["added"], 3);
    assert_eq!(env.export("HEAD"), file_lines(&clean));
    let again = env.ok(&["import", clean.to_str().expect("path")]);
    assert!(again.starts_with("nothing to import"), "{again}");
}

#[test]
fn kgx_import_keeps_categories_names_attributes_and_round_trips() {
    let env = Env::new();
    env.write(
        "kgx/nodes.tsv",
        "category\tid\tname\tsource\nCompound\tC:1\taspirin\tdrugbank\nDisease\tD:1\tpain\t\nGene\tG:1\tPTGS2\t\n",
    );
    env.write(
        "kgx/edges.tsv",
        "subject\tobject\tpredicate\nC:1\tD:1\ttreats\nC:1\tG:1\tbinds\n",
    );
    let dir = env.path("kgx");
    let out = env.ok(&["import", dir.to_str().expect("path")]);
    assert!(out.contains("+2 triples, 3 new entities"), "{out}");
    let stats = env.json(&["stats"]);
    assert_eq!(stats["categories"]["Compound"], 1);
    assert_eq!(stats["categories"]["Gene"], 1);
    assert_eq!(
        env.export("HEAD"),
        vec![
            "C:1\tbinds\tG:1".to_string(),
            "C:1\ttreats\tD:1".to_string()
        ]
    );

    let out_dir = env.path("exported");
    env.ok(&[
        "graph",
        "export",
        "--format",
        "kgx",
        out_dir.to_str().expect("path"),
    ]);
    let nodes = std::fs::read_to_string(out_dir.join("nodes.tsv")).expect("nodes");
    assert!(nodes.starts_with("id\tcategory\tname\tsource\n"), "{nodes}");
    assert!(
        nodes.contains("C:1\tCompound\taspirin\tdrugbank\n"),
        "{nodes}"
    );

    // The export imports into a fresh database as the same graph.
    let fresh = Env::new();
    fresh.ok(&["import", out_dir.to_str().expect("path")]);
    assert_eq!(fresh.export("HEAD"), env.export("HEAD"));
    assert_eq!(fresh.json(&["stats"])["categories"], stats["categories"]);
}

#[test]
fn kgx_edges_file_with_sibling_nodes_is_detected() {
    let env = Env::new();
    env.write("k/nodes.tsv", "id\tcategory\nA\tX\nB\tY\n");
    let edges = env.write("k/edges.tsv", "subject\tpredicate\tobject\nA\tr\tB\n");
    env.ok(&["import", edges.to_str().expect("path")]);
    assert_eq!(env.json(&["stats"])["categories"]["X"], 1);
}

#[test]
fn db_path_from_environment() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\n");
    let db = env.path("from-env.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .args(["import", f.to_str().expect("path")])
        .env("HYPOGRAPH_DB", &db)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(db.exists());
}

#[test]
fn json_logs_on_stderr() {
    let env = Env::new();
    let f = env.write("a.tsv", "a\tr\tb\n");
    let out = env.run(&[
        "-v",
        "--log-format",
        "json",
        "import",
        f.to_str().expect("path"),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let line = stderr
        .lines()
        .find(|l| l.contains("graph version committed"))
        .expect("a commit log line");
    let parsed: serde_json::Value = serde_json::from_str(line).expect("json log line");
    assert_eq!(parsed["fields"]["version"], 1);
    assert_eq!(parsed["level"], "INFO");
}

#[test]
fn log_lines_on_a_pipe_carry_no_colour_codes() {
    let env = Env::new();
    let f = env.write("g.tsv", "a\tr\tb\n");
    // Not through `Env::run`: NO_COLOR from the caller's environment would hide the bug.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["-v", "import"])
        .arg(&f)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .output()
        .expect("run hypograph");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("import finished"), "an info line: {stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "ANSI codes on a pipe: {stderr:?}"
    );
}

/// Compressed files are read directly (gzip, including several members as `bgzip` writes;
/// bzip2; zstd), CSV features inside `.csv.gz` too, and a corrupt stream names the file.
#[test]
fn compressed_files_import_like_plain_ones() {
    use std::io::Write;
    let plain = std::fs::read(data("umls/train.txt")).expect("read");
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    };
    let env = Env::new();
    // Two gzip members back to back: the whole file, not just the first.
    let half = &plain[..plain.len() / 2];
    let cut = half.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    let (first, rest) = plain.split_at(cut);
    let mut two = gz(first);
    two.extend(gz(rest));
    let f = env.write("train.tsv.gz", two);
    env.ok(&["import", f.to_str().expect("path")]);
    let stats = env.json(&["stats"]);
    assert_eq!(stats["triples"], 5216, "{stats}");

    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&plain).expect("bzip2");
        e.finish().expect("bzip2")
    };
    let env2 = Env::new();
    let f = env2.write("train.tsv.bz2", bz);
    env2.ok(&["import", f.to_str().expect("path")]);
    assert_eq!(env2.json(&["stats"])["triples"], 5216);

    let zst = ruzstd::encoding::compress_to_vec(
        plain.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let env3 = Env::new();
    let f = env3.write("train.tsv.zst", zst);
    env3.ok(&["import", f.to_str().expect("path")]);
    assert_eq!(env3.json(&["stats"])["triples"], 5216);
    // The same graph whatever the container.
    assert_eq!(env.export("HEAD"), env3.export("HEAD"));

    // Features in a gzipped CSV: commas, because the inner name says .csv.
    let feats = env.write("f.csv.gz", gz(b"id,f0,f1\nalga,1,2\n"));
    env.ok(&["import", "--features", feats.to_str().expect("path")]);
    assert_eq!(env.json(&["stats"])["features"]["vector"], 1);

    // Not gzip at all: an error naming the file, nothing imported.
    let bad = env2.write("bad.tsv.gz", b"alga\tisa\tentity\n");
    let err = env2.fail(&["import", bad.to_str().expect("path")]);
    assert!(err.contains("bad.tsv.gz: not a valid gzip file"), "{err}");
    assert_eq!(env2.count("SELECT count(*) FROM graph_versions"), 1);
}
