//! Plugins against real loopback servers (wiremock) and real programs, through the real
//! binary: every hypothesis ends answered, failed with a reason, or expired; none vanishes.

use crate::support::Env;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A small workflow whose single (or several) stages are given as YAML.
use crate::support::{mt_runtime as runtime, staged_workflow as workflow};

/// Answers every hypothesis of a batch with `verdict`.
struct AnswerAll(&'static str);

impl Respond for AnswerAll {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let results: Vec<Value> = body["hypotheses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| json!({ "key": h["key"], "verdict": self.0, "confidence": 0.9, "evidence": { "assay": "mock" } }))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({ "results": results }))
    }
}

fn statuses(env: &Env) -> Vec<String> {
    env.strings("SELECT status || ':' || coalesce(reason, '') FROM hypotheses ORDER BY id")
}

fn count(env: &Env, status: &str) -> i64 {
    env.count(&format!(
        "SELECT count(*) FROM hypotheses WHERE status = '{status}'"
    ))
}

/// Runs one round; returns stderr.
fn run_round(env: &Env, text: &str) -> String {
    let w = env.write("w.yaml", text);
    let out = env.run(&["run", w.to_str().expect("path"), "--wait", "0s"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn http_500_then_success_is_retried_to_one_verdict_each() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/assay"))
            .respond_with(ResponseTemplate::new(500).set_body_string("busy"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&s)
            .await;
        Mock::given(method("POST"))
            .and(path("/assay"))
            .respond_with(AnswerAll("confirmed"))
            .with_priority(2)
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n",
            server.uri()
        )),
    );
    assert_eq!(count(&env, "confirmed"), 10, "{:?}", statuses(&env));
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts"),
        10,
        "one verdict each"
    );
    let requests = rt.block_on(server.received_requests()).unwrap_or_default();
    assert_eq!(requests.len(), 2, "one failure, one retry");
    let body: Value = serde_json::from_slice(&requests[1].body).expect("json");
    let h = &body["hypotheses"][0];
    assert!(h["key"].as_str().is_some_and(|k| k.ends_with(":0")), "{h}");
    assert!(
        h["score"].as_f64().is_some() && h["context"]["head"].is_array(),
        "{h}"
    );
}

#[test]
fn http_400_is_not_retried_and_the_body_is_the_reason() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_string("relation `x` not assayable"))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n",
            server.uri()
        )),
    );
    assert_eq!(
        rt.block_on(server.received_requests())
            .unwrap_or_default()
            .len(),
        1
    );
    assert_eq!(count(&env, "failed"), 10);
    assert!(
        statuses(&env)[0].contains("HTTP 400"),
        "{:?}",
        statuses(&env)
    );
    assert!(
        statuses(&env)[0].contains("not assayable"),
        "{:?}",
        statuses(&env)
    );
    assert_eq!(
        env.strings("SELECT state FROM rounds"),
        vec!["done"],
        "the round went on"
    );
}

#[test]
fn a_hanging_service_times_out_and_fails_after_retries() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(10)))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    let started = std::time::Instant::now();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n    request_timeout: 300ms\n    retries: 1\n",
            server.uri()
        )),
    );
    assert!(started.elapsed().as_secs() < 60);
    assert_eq!(
        rt.block_on(server.received_requests())
            .unwrap_or_default()
            .len(),
        2
    );
    assert_eq!(count(&env, "failed"), 10);
    assert!(
        statuses(&env)[0].contains("timed out"),
        "{:?}",
        statuses(&env)
    );
}

#[test]
fn invalid_json_is_retried_then_failed() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n    retries: 1\n",
            server.uri()
        )),
    );
    assert_eq!(
        rt.block_on(server.received_requests())
            .unwrap_or_default()
            .len(),
        2
    );
    assert_eq!(count(&env, "failed"), 10);
    assert!(
        statuses(&env)[0].contains("invalid JSON"),
        "{:?}",
        statuses(&env)
    );
}

/// Answers with one wrong key and one unknown hypothesis among otherwise good answers.
struct Mixed;

impl Respond for Mixed {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut results: Vec<Value> = body["hypotheses"]
            .as_array()
            .into_iter()
            .flatten()
            .skip(1)
            .map(|h| json!({ "key": h["key"], "verdict": "refuted" }))
            .collect();
        results.push(json!({ "key": "999:999:0", "verdict": "confirmed" }));
        results.push(json!({ "hypothesis": 424242, "verdict": "confirmed" }));
        ResponseTemplate::new(200).set_body_json(json!({ "results": results }))
    }
}

#[test]
fn answers_for_unknown_hypotheses_or_wrong_keys_are_rejected_and_the_rest_kept() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(Mixed)
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    let stderr = run_round(
        &env,
        &workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n",
            server.uri()
        )),
    );
    assert_eq!(count(&env, "refuted"), 9, "{:?}", statuses(&env));
    assert_eq!(
        count(&env, "failed"),
        1,
        "the unanswered one fails with a reason"
    );
    assert!(
        statuses(&env)
            .iter()
            .any(|s| s.contains("did not answer it"))
    );
    assert!(stderr.contains("unknown key `999:999:0`"), "{stderr}");
    assert!(stderr.contains("unknown hypothesis 424242"), "{stderr}");
}

/// A chat-completions endpoint that replies with `replies[i]` on the i-th call (then the last).
struct Chat(Vec<&'static str>, std::sync::atomic::AtomicUsize);

impl Respond for Chat {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let content = self.0[i.min(self.0.len() - 1)];
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "message": { "role": "assistant", "content": content } }],
            "usage": { "prompt_tokens": 100, "completion_tokens": 20 },
        }))
    }
}

fn llm_round(replies: Vec<&'static str>) -> Env {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Chat(replies, Default::default()))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: triage\n    plugin: llm\n    endpoint: {}/v1\n    model: m\n    retries: 2\n    price_per_1k: [0.5, 1.5]\n    concurrency: 2\n",
            server.uri()
        )),
    );
    drop(server);
    env
}

const GOOD: &str = r#"{"verdict": "confirmed", "confidence": 0.8, "rationale": "shared pathway"}"#;

#[test]
fn llm_prose_is_rejected_after_retries() {
    let env = llm_round(vec!["I believe this is plausible."]);
    assert_eq!(count(&env, "failed"), 10);
    assert!(
        statuses(&env)[0].contains("no usable answer from m after 2 attempts"),
        "{:?}",
        statuses(&env)
    );
}

#[test]
fn llm_json_in_a_code_fence_is_accepted_with_tokens_and_cost() {
    let env = llm_round(vec![
        "```json\n{\"verdict\": \"confirmed\", \"confidence\": 0.8, \"rationale\": \"shared pathway\"}\n```",
    ]);
    assert_eq!(count(&env, "confirmed"), 10, "{:?}", statuses(&env));
    let evidence = env.strings("SELECT evidence FROM verdicts LIMIT 1");
    let e: Value = serde_json::from_str(&evidence[0]).expect("json");
    assert_eq!(e["rationale"], "shared pathway");
    assert_eq!(e["prompt_tokens"], 100);
    // 100 prompt tokens at 0.5 per 1k + 20 completion tokens at 1.5 per 1k.
    let cost: f64 = env.strings("SELECT CAST(cost AS TEXT) FROM verdicts LIMIT 1")[0]
        .parse()
        .expect("cost");
    assert!((cost - 0.08).abs() < 1e-9, "{cost}");
}

#[test]
fn llm_missing_field_is_asked_again() {
    let env = llm_round(vec![r#"{"verdict": "confirmed", "confidence": 0.8}"#, GOOD]);
    // The first hypothesis needed a second question; the others may have had the good reply.
    assert_eq!(count(&env, "confirmed"), 10, "{:?}", statuses(&env));
    assert!(
        env.count(&format!(
            "SELECT count(*) FROM verdicts WHERE {} = 2",
            env.json_num("evidence", "attempts")
        )) >= 1
    );
}

#[test]
fn llm_confidence_out_of_range_is_rejected() {
    let env = llm_round(vec![
        r#"{"verdict": "confirmed", "confidence": 7, "rationale": "sure"}"#,
    ]);
    assert_eq!(count(&env, "failed"), 10);
    assert!(
        statuses(&env)[0].contains("confidence 7"),
        "{:?}",
        statuses(&env)
    );
}

#[test]
fn a_command_that_crashes_mid_batch_fails_only_what_it_did_not_answer() {
    let env = Env::new();
    // Answers the first two lines it reads, then dies.
    let script = env.write(
        "assay.sh",
        "#!/bin/sh\nn=0\nwhile read -r line; do\n  n=$((n+1))\n  key=$(echo \"$line\" | sed 's/.*\"key\":\"\\([^\"]*\\)\".*/\\1/')\n  echo \"{\\\"key\\\": \\\"$key\\\", \\\"verdict\\\": \\\"confirmed\\\"}\"\n  if [ $n -eq 2 ]; then echo 'robot arm fault' >&2; exit 4; fi\ndone\n",
    );
    run_round(
        &env,
        &workflow(&format!(
            "  - name: assay\n    plugin: command\n    command: [sh, {}]\n",
            script.display()
        )),
    );
    assert_eq!(count(&env, "confirmed"), 2, "{:?}", statuses(&env));
    assert_eq!(count(&env, "failed"), 8);
    assert!(
        statuses(&env)
            .iter()
            .any(|s| s.contains("exit status: 4") && s.contains("robot arm fault"))
    );
}

#[test]
fn the_bundled_command_plugin_runs_from_its_manifest() {
    let env = Env::new();
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let text = workflow("  - name: triage\n    plugin: example-triage\n")
        + &format!("plugins_dir: {}\n", plugins.display());
    run_round(&env, &text);
    let answered = count(&env, "confirmed") + count(&env, "refuted") + count(&env, "inconclusive");
    assert_eq!(answered, 10, "{:?}", statuses(&env));
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM verdicts WHERE {} IS NOT NULL",
            env.json_text("evidence", "rule")
        )),
        10
    );
}

/// The demo graph as KGX with every entity named by `name_len` bytes, so that each
/// hypothesis (its names and its neighbours') is large on the wire.
fn graph_with_long_names(env: &Env, name_len: usize) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(crate::support::data("umls/demo-visible.tsv")).expect("read");
    let mut entities = std::collections::BTreeSet::new();
    let mut edges = String::from("subject\tpredicate\tobject\n");
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        entities.insert(f[0].to_owned());
        entities.insert(f[2].to_owned());
        edges.push_str(&format!("{}\t{}\t{}\n", f[0], f[1], f[2]));
    }
    let mut nodes = String::from("id\tcategory\tname\n");
    for e in &entities {
        nodes.push_str(&format!("{e}\tConcept\t{e} {}\n", "n".repeat(name_len)));
    }
    env.write("kg/nodes.tsv", nodes);
    env.write("kg/edges.tsv", edges);
    env.path("kg")
}

/// `hypograph run FILE --wait 0s`, which must end within `limit` (a hang fails the test
/// instead of holding the suite); returns its stderr.
fn run_within(env: &Env, file: &std::path::Path, limit: std::time::Duration) -> String {
    let log = env.path("run.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .args(["run", file.to_str().expect("path"), "--wait", "0s"])
        .envs(env.data_dir_var())
        .env_remove("RUST_LOG")
        .env_remove("HYPOGRAPH_DB")
        .env_remove("HYPOGRAPH_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run hypograph");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the run did not end within {limit:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{stderr}");
    stderr
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped by init).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A program that never reads its input (larger than any pipe buffer: 10 hypotheses whose
/// JSON lines total several MB) and starts a child of its own: the request timeout still
/// ends the round on time, and the child dies with the program.
#[cfg(target_os = "linux")]
#[test]
fn a_command_that_never_reads_a_large_batch_is_killed_on_time_with_its_children() {
    let env = Env::new();
    let kg = graph_with_long_names(&env, 20_000);
    let pids = env.path("pids");
    let script = env.write(
        "assay.sh",
        format!("sleep 60 &\necho $! >> {}\nexec sleep 60\n", pids.display()),
    );
    let w = env.write(
        "w.yaml",
        format!(
            "name: w\ngraph:\n  kgx: {}\n\
             model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n\
             generate:\n  top_k: 20\nrank:\n  batch: 10\n  max_per_entity: 3\n\
             stages:\n  - name: assay\n    plugin: command\n    command: [sh, {}]\n    request_timeout: 1s\n\
             seed: 5\n",
            kg.display(),
            script.display()
        ),
    );
    run_within(&env, &w, std::time::Duration::from_secs(45));
    assert_eq!(count(&env, "failed"), 10, "{:?}", statuses(&env));
    assert!(
        statuses(&env)[0].contains("timed out after 1s and was killed"),
        "{:?}",
        statuses(&env)
    );
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .expect("the program started")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty());
    // Killed with the program; the reaping by init is what may take a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pids.iter().all(|&p| ended(p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        pids.iter().all(|&p| ended(p)),
        "the program's child {pids:?} outlived it"
    );
}

/// A workflow whose LLM stage talks to `endpoint`, in batches of two, one request at a time,
/// one retry, the circuit opening after two failed batches (as the http breaker test has it).
fn llm_outage_round(endpoint: &str) -> (Env, String) {
    let env = Env::new();
    let w = env.write(
        "w.yaml",
        workflow(&format!(
            "  - name: triage\n    plugin: llm\n    endpoint: {endpoint}\n    model: m\n    retries: 1\n    breaker: 2\n    batch: 2\n    concurrency: 1\n"
        )),
    );
    let out = env.run(&["run", w.to_str().expect("path"), "--wait", "0s"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    (env, text)
}

/// The outage reached the engine: retried with backoff, two batches failed with the reason,
/// the circuit opened, and the rest wait queued in a round that is not done.
fn assert_paused(env: &Env, text: &str, reason: &str) {
    assert!(text.contains("retrying"), "the engine retried: {text}");
    assert!(text.contains("paused after repeated failures"), "{text}");
    assert_eq!(
        count(env, "failed"),
        4,
        "two batches of two: {:?}",
        statuses(env)
    );
    assert!(
        statuses(env)
            .iter()
            .filter(|s| s.starts_with("failed"))
            .all(|s| s.contains(reason)),
        "{:?}",
        statuses(env)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM stage_items WHERE status = 'queued'"),
        6
    );
    assert_eq!(env.strings("SELECT state FROM rounds"), vec!["dispatching"]);
}

#[test]
fn an_llm_on_a_closed_port_pauses_the_stage_through_the_engines_breaker() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (env, text) = llm_outage_round(&format!("http://127.0.0.1:{port}/v1"));
    assert_paused(&env, &text, "connection failed");
}

#[test]
fn an_llm_answering_503_is_retried_with_backoff_then_the_circuit_opens() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
            .mount(&s)
            .await;
        s
    });
    let (env, text) = llm_outage_round(&format!("{}/v1", server.uri()));
    assert_paused(&env, &text, "HTTP 503");
    // Two batches, each tried twice; a batch stops at its first 503.
    let requests = rt.block_on(server.received_requests()).unwrap_or_default();
    assert_eq!(requests.len(), 4);
}

/// `concurrency` bounds the requests in flight, not the batches: a batch of ten with
/// `concurrency: 2` never has more than two questions open at the model.
#[test]
fn llm_concurrency_bounds_requests_within_a_batch() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = runtime();
    let (active, peak) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let addr = {
        let (active, peak) = (active.clone(), peak.clone());
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/chat/completions",
                axum::routing::post(move || {
                    let (active, peak) = (active.clone(), peak.clone());
                    async move {
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        // Long enough that requests sent together overlap here.
                        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                        active.fetch_sub(1, Ordering::SeqCst);
                        axum::Json(json!({
                            "choices": [{ "message": { "role": "assistant", "content": GOOD } }],
                        }))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        })
    };
    let env = Env::new();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: triage\n    plugin: llm\n    endpoint: http://{addr}/v1\n    model: m\n    concurrency: 2\n"
        )),
    );
    assert_eq!(count(&env, "confirmed"), 10, "{:?}", statuses(&env));
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} requests were in flight at once");
}

/// Replies 200 with a good review, except the calls numbered in `fail` (from 0): 503.
struct FailingCalls(Vec<usize>, std::sync::atomic::AtomicUsize);

impl Respond for FailingCalls {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.0.contains(&i) {
            return ResponseTemplate::new(503).set_body_string("overloaded");
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "message": { "role": "assistant", "content": GOOD } }],
        }))
    }
}

/// A 503 mid-batch: the engine resends the batch after a backoff, and the hypothesis the
/// model had already answered is not asked (nor paid for) again.
#[test]
fn an_llm_batch_resent_after_an_outage_asks_only_what_was_not_answered() {
    let rt = runtime();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(FailingCalls(vec![1], Default::default()))
            .mount(&s)
            .await;
        s
    });
    let env = Env::new();
    run_round(
        &env,
        &workflow(&format!(
            "  - name: triage\n    plugin: llm\n    endpoint: {}/v1\n    model: m\n    retries: 1\n    batch: 2\n    concurrency: 1\n",
            server.uri()
        )),
    );
    assert_eq!(count(&env, "confirmed"), 10, "{:?}", statuses(&env));
    let requests = rt.block_on(server.received_requests()).unwrap_or_default();
    assert_eq!(requests.len(), 11, "ten reviews and the one that failed");
}
