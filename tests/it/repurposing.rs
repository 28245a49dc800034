//! `workflows/drug-repurposing.yaml`, the file users run, end to end on a Hetionet-format
//! fixture: an OpenAI-compatible fake triages, two reviewers vote through the API, and the
//! bundled example assay service answers by callback to the real server.

use crate::support::{Env, Server, data, get_json, mt_runtime, post_json, user};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Confirms the first triage request's items and refutes every third call, so both branches
/// of the stage happen.
struct Triage(AtomicUsize);

impl Respond for Triage {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.0.fetch_add(1, Ordering::SeqCst);
        let verdict = if i % 3 == 2 { "refuted" } else { "confirmed" };
        let content = format!(
            r#"{{"verdict": "{verdict}", "confidence": 0.7, "rationale": "shared targets"}}"#
        );
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "message": { "role": "assistant", "content": content } }],
            "usage": { "prompt_tokens": 120, "completion_tokens": 30 },
        }))
    }
}

#[test]
fn drug_repurposing_runs_end_to_end_on_a_hetionet_fixture() {
    let rt = mt_runtime();
    let llm = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Triage(AtomicUsize::new(0)))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let lab = env
        .ok(&[
            "user",
            "add",
            "lab",
            "--role",
            "service",
            "--workflow",
            "drug-repurposing",
        ])
        .trim()
        .to_owned();
    let server = Server::start(&env, &[]);
    let assay = crate::support::ExampleAssay::start(
        &[
            "--mode",
            "callback",
            "--delay",
            "0.2",
            "--token-env",
            "ASSAY_CALLBACK_TOKEN",
        ]
        .map(std::ffi::OsStr::new),
        &[("ASSAY_CALLBACK_TOKEN", lab.as_str())],
    );
    let workflow = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/drug-repurposing.yaml");
    // The fixture stands in for Hetionet's download: fetched into a private cache under a
    // catalog that knows its sums, as `hypograph fetch hetionet` would leave it.
    let hetionet = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/hetionet");
    let catalog = crate::support::hetionet_fixture_catalog(env.dir.path());
    let cache = env.path("cache");
    let fetch_vars = [
        ("HYPOGRAPH_CACHE", cache.to_str().expect("path")),
        ("HYPOGRAPH_FETCH_CATALOG", catalog.to_str().expect("path")),
    ];
    let out = env.run_with(
        &[
            "fetch",
            "hetionet",
            "--no-import",
            "--from",
            hetionet.to_str().expect("path"),
        ],
        &fetch_vars,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let llm_url = format!("{}/v1", llm.uri());
    let assay_url = format!("{}/assay", assay.base);
    let vars = [
        fetch_vars[0],
        fetch_vars[1],
        ("LLM_BASE_URL", llm_url.as_str()),
        ("LLM_MODEL", "m"),
        ("ASSAY_URL", assay_url.as_str()),
        ("HYPOGRAPH_URL", server.base.as_str()),
        // A quick trial of the same file: a small model, a small batch.
        ("MODEL_DIM", "16"),
        ("MODEL_EPOCHS", "3"),
        ("RETRAIN_EPOCHS", "1"),
        ("ENSEMBLE", "2"),
        ("TOP_K", "100"),
        ("BATCH", "6"),
    ];
    let run = |wait: &str| {
        let out = env.run_with(
            &["run", workflow.to_str().expect("path"), "--wait", wait],
            &vars,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };

    // Import (one version naming the Hetionet files), train, propose, triage; then wait for
    // the experts.
    let out = run("0s");
    assert!(out.contains("awaiting answers at stage `expert`"), "{out}");
    let log = env.json(&["graph", "log"]);
    assert_eq!(log[0]["source"]["kind"], "workflow-fetch", "{log}");
    assert!(
        log[0]["message"].as_str().is_some_and(
            |m| m.starts_with("workflow drug-repurposing: fetch hetionet v1.0-fixture: ")
        ),
        "{log}"
    );
    let hypotheses = env.strings(
        "SELECT he.category || ' ' || r.key || ' ' || te.category FROM hypotheses h \
         JOIN entities he ON he.id = h.head JOIN relations r ON r.id = h.relation \
         JOIN entities te ON te.id = h.tail",
    );
    assert_eq!(hypotheses.len(), 6, "{hypotheses:?}");
    for h in &hypotheses {
        assert!(
            h == "Compound CtD Disease" || h == "Compound CpD Disease",
            "only treats/palliates between compounds and diseases: {h}"
        );
    }
    let triaged =
        env.count("SELECT count(*) FROM verdicts WHERE reviewer LIKE 'llm:%' OR client = 'llm'");
    let llm_calls = rt.block_on(llm.received_requests()).map_or(0, |r| r.len());
    assert!(
        llm_calls >= 6,
        "every hypothesis was triaged ({llm_calls} calls, {triaged} verdicts)"
    );

    // Both experts confirm everything the triage let through; the queue shows names.
    let (status, queue) = get_json(&format!("{}/api/v1/queue", server.base), &alice);
    assert_eq!(status, 200, "{queue}");
    let items = queue["items"].as_array().expect("items").clone();
    assert!(
        !items.is_empty() && items.len() < 6,
        "the LLM refuted some: {queue}"
    );
    for item in &items {
        assert!(
            item["head_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Compound ")),
            "{item}"
        );
        for token in [&alice, &bob] {
            let (status, body) = post_json(
                &format!("{}/api/v1/hypotheses/{}/verdict", server.base, item["id"]),
                token,
                &json!({ "verdict": "confirmed" }),
            );
            assert_eq!(status, 200, "{body}");
        }
    }

    // The quorum closes the stage; the assay gets the batch and calls back; the round ends.
    let out = run("120s");
    assert!(out.contains("round 1:"), "{out}");
    let sent_to_assay = items.len() as i64;
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE reviewer = 'lab'"),
        sent_to_assay,
        "every expert-approved hypothesis has the assay's verdict: {out}"
    );
    let open = env.count(
        "SELECT count(*) FROM hypotheses WHERE status NOT IN ('confirmed', 'refuted', 'inconclusive')",
    );
    assert_eq!(open, 0, "{out}");
    let confirmed = env.count("SELECT count(*) FROM hypotheses WHERE status = 'confirmed'");
    let ingested = env
        .count("SELECT count(*) FROM edges WHERE added_in = (SELECT max(id) FROM graph_versions)");
    assert_eq!(
        confirmed, ingested,
        "confirmed edges join the graph in the round's version"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE state = 'done'"),
        1,
        "{out}"
    );
    drop(assay);
}

/// A newcomer's first `validate` (the README's command, after its demo filled the default
/// database, with the variables the file names set and Hetionet not downloaded) passes, with
/// notes; once the dataset is in the cache its relations are checked against it; and a run
/// on the demo's database stops at the relation check, before any training.
#[test]
fn validate_needs_no_download_and_notes_what_it_cannot_check_yet() {
    let env = Env::new();
    env.ok(&[
        "import",
        data("umls/demo-visible.tsv").to_str().expect("path"),
    ]);
    let catalog = crate::support::hetionet_fixture_catalog(env.dir.path());
    let cache = env.path("cache");
    let vars = [
        ("HYPOGRAPH_CACHE", cache.to_str().expect("path")),
        ("HYPOGRAPH_FETCH_CATALOG", catalog.to_str().expect("path")),
        ("LLM_BASE_URL", "http://127.0.0.1:9/v1"),
        ("LLM_MODEL", "m"),
        ("ASSAY_URL", "http://127.0.0.1:9/assay"),
        ("HYPOGRAPH_URL", "http://127.0.0.1:9"),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("workflows")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.to_str().expect("path").to_owned())
        .collect();
    files.sort();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = env.run_with(&args, &vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let file = dir.join("drug-repurposing.yaml");
    for want in [
        format!(
            "{}: note: graph.fetch `hetionet` is not downloaded yet",
            file.display()
        ),
        "checked at the first run, before any training".to_owned(),
        "the database already holds a graph, without `CtD`, `CpD`".to_owned(),
    ] {
        assert!(stderr.contains(&want), "want {want:?} in {stderr}");
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("drug-repurposing.yaml: ok"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Downloaded (the fixture stands in), the dataset's relations are checked: a misspelt
    // one is a located error.
    let hetionet = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/hetionet");
    let out = env.run_with(
        &[
            "fetch",
            "hetionet",
            "--no-import",
            "--from",
            hetionet.to_str().expect("path"),
        ],
        &vars,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("workflow");
    let bad = env.write(
        "bad.yaml",
        text.replace("relations: [CtD, CpD]", "relations: [CtD, CxD]"),
    );
    let out = env.run_with(&["validate", bad.to_str().expect("path")], &vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("generate.relations[1]: relation `CxD` is not in the `hetionet` graph"),
        "{stderr}"
    );
    assert!(!stderr.contains("not downloaded yet"), "{stderr}");

    // A run on the demo's database stops at the relation check, before any training.
    let out = env.run_with(
        &["run", file.to_str().expect("path"), "--wait", "0s"],
        &vars,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("relation `CtD` is not in the graph"),
        "{stderr}"
    );
    assert_eq!(env.count("SELECT count(*) FROM models"), 0);
    assert_eq!(env.count("SELECT count(*) FROM rounds"), 0);
}
