//! `hypograph schema`: the JSON Schemas editors use agree with the files we ship, reject what
//! the parser rejects structurally, and are the ones committed beside the examples.

use crate::support::Env;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The schema `hypograph schema FORMAT` prints.
fn printed(format: &str) -> Value {
    serde_json::from_str(&Env::new().ok(&["schema", format])).expect("the schema is JSON")
}

struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: Value) -> Self {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let url = "mem:///schema.json";
        compiler.add_resource(url, schema).expect("add schema");
        // Compiling checks the schema against the draft-07 meta-schema, regexes included.
        let index = compiler
            .compile(url, &mut schemas)
            .unwrap_or_else(|e| panic!("not a valid schema: {e:#}"));
        Self { schemas, index }
    }

    /// The problems with a YAML document, as the validator words them (empty: valid).
    fn problems(&self, yaml: &str) -> String {
        let doc: Value = serde_yaml::from_str(yaml).expect("YAML");
        match self.schemas.validate(&doc, self.index) {
            Ok(()) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_workflow_and_manifest_matches_its_schema() {
    for (format, dirs) in [
        ("workflow", &["workflows", "benches"][..]),
        ("manifest", &["plugins"][..]),
    ] {
        let v = Validator::new(printed(format));
        let files: Vec<PathBuf> = dirs.iter().flat_map(|d| yaml_files(d)).collect();
        assert!(files.len() >= 2, "{format}: {files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            let problems = v.problems(&text);
            assert!(problems.is_empty(), "{}:\n{problems}", f.display());
        }
    }
}

#[test]
fn the_schema_rejects_what_the_parser_rejects_and_allows_variables() {
    let v = Validator::new(printed("workflow"));
    let base = "name: w\nmodel:\n  dim: 8\n  kind: complex\nstages:\n  - name: a\n    plugin: oracle\n    truth: t.tsv\n    timeout: 72h\n    advance: [confirmed]\n";
    assert_eq!(v.problems(base), "");
    let check = |from: &str, to: &str, valid: bool| {
        let doc = base.replace(from, to);
        assert_ne!(doc, base, "`{from}` not in the base document");
        let problems = v.problems(&doc);
        assert_eq!(problems.is_empty(), valid, "{to:?}:\n{problems}");
    };
    // Unknown keys, at the top and inside a section and a stage.
    check("name: w\n", "name: w\nnmae: x\n", false);
    check("  dim: 8\n", "  dim: 8\n  dimension: 8\n", false);
    check(
        "    truth: t.tsv\n",
        "    truth: t.tsv\n    truht: t.tsv\n",
        false,
    );
    // Wrong types and words.
    check("dim: 8", "dim: eight", false);
    check("kind: complex", "kind: complx", false);
    check("timeout: 72h", "timeout: 3 weeks", false);
    check("advance: [confirmed]", "advance: [accepted]", false);
    check("name: w\n", "", false);
    // Interpolation where the parser allows it, durations as written.
    check("dim: 8", "dim: ${DIM}", true);
    check("kind: complex", "kind: ${MODEL_KIND}", true);
    check(
        "advance: [confirmed]",
        "advance: [confirmed, \"${ALSO}\"]",
        true,
    );
    check("timeout: 72h", "timeout: ${REVIEW_TIMEOUT}", true);
    check("timeout: 72h", "timeout: 500ms", true);
    check("timeout: 72h", "timeout: \"2\"", true);
    check("truth: t.tsv", "truth: ${DATA}/t.tsv", true);
    check("name: w\n", "name: w\nseed: ${SEED}\n", true);
    // Numbers outside their ranges, as `validate` rejects them.
    check("dim: 8", "dim: 5000", false);
    check("dim: 8", "dim: 0", false);
    check(
        "name: w\n",
        "name: w\ngenerate:\n  top_k: 1000000000000000\n",
        false,
    );
    check(
        "    timeout: 72h\n",
        "    timeout: 72h\n    retries: 21\n",
        false,
    );
}

/// Every number a workflow takes has a documented range in the schema (`crate::limits`).
#[test]
fn every_number_in_the_workflow_schema_has_a_range() {
    fn walk(v: &Value, path: &str, missing: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                let numeric = match o.get("type") {
                    Some(Value::String(t)) => t == "integer" || t == "number",
                    Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer" || t == "number"),
                    _ => false,
                };
                let low = o.contains_key("minimum") || o.contains_key("exclusiveMinimum");
                let high = o.contains_key("maximum") || o.contains_key("exclusiveMaximum");
                if numeric && !(low && high) {
                    missing.push(path.to_owned());
                }
                for (k, child) in o {
                    walk(child, &format!("{path}/{k}"), missing);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}/{i}"), missing);
                }
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(&printed("workflow"), "", &mut missing);
    assert!(missing.is_empty(), "numbers without a range: {missing:#?}");
}

#[test]
fn the_committed_schemas_are_current() {
    for (format, file) in [
        ("workflow", "workflows/workflow.schema.json"),
        ("manifest", "plugins/manifest.schema.json"),
    ] {
        let committed: Value = std::fs::read_to_string(repo(file))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        assert!(
            committed == printed(format),
            "{file} is out of date: cargo run -- schema {format} > {file}"
        );
    }
}
