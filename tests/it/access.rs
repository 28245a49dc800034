//! Who may do what, through the real binary and server: callbacks only for stages that take
//! them, reviewers answering blind, `/metrics` for admins (or everyone with
//! `--metrics-public`), the terminal reviewer and `retract` only with the user's own token,
//! and paging numbers that would overflow.

use crate::on_both;

use crate::support::{
    Env, Server, data, get_json, get_text as get, mt_runtime as runtime, post_json,
    request as call, run_now as run, staged_workflow as workflow, user,
};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The `round:hypothesis:stage` keys of a workflow's waiting hypotheses: what callback keys
/// were before they were random.
fn keys(env: &Env, workflow: &str) -> Vec<String> {
    env.strings(&format!(
        "SELECT h.round_id || ':' || h.id || ':' || h.stage FROM hypotheses h \
         JOIN rounds r ON r.id = h.round_id WHERE r.workflow = '{workflow}' ORDER BY h.id"
    ))
}

/// The callback keys a workflow's waiting items were sent with.
fn callback_keys(env: &Env, workflow: &str) -> Vec<String> {
    env.strings(&format!(
        "SELECT s.callback_key FROM stage_items s JOIN hypotheses h ON h.id = s.hypothesis_id \
         JOIN rounds r ON r.id = h.round_id WHERE r.workflow = '{workflow}' \
         AND s.callback_key IS NOT NULL ORDER BY h.id"
    ))
}

fn callbacks_answer_only_stages_that_take_them(env: Env) {
    let rt = runtime();
    let assay = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({ "results": [] })))
            .mount(&s)
            .await;
        s
    });
    let svc = env
        .ok(&["user", "add", "lab", "--role", "service", "--workflow", "v"])
        .trim()
        .to_owned();
    env.ok(&["user", "scope", "lab", "--workflow", "w"]);
    let admin = user(&env, "carol", "admin");
    let server = Server::start(&env, &[]);
    // Workflow `w` waits for people (a quorum of two); workflow `v` for an assay's callbacks.
    let human = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    quorum: 2\n    timeout: 72h\n"),
    );
    let http = env.write(
        "v.yaml",
        workflow(&format!(
            "  - name: assay\n    plugin: http\n    url: {}/assay\n    callback_url: {}\n    timeout: 1h\n",
            assay.uri(),
            server.base
        ))
        .replacen("name: w\n", "name: v\n", 1),
    );
    run(&env, &human);
    run(&env, &http);
    let (people, assayed) = (keys(&env, "w"), callback_keys(&env, "v"));
    assert_eq!((people.len(), assayed.len()), (10, 10));
    let url = format!("{}/api/v1/results", server.base);
    let results = |ks: &[String]| json!({ "results": ks.iter().map(|k| json!({ "key": k, "verdict": "confirmed" })).collect::<Vec<_>>() });

    // One request with both: the human stage's keys are refused one by one, with the reason;
    // the assay's keys count.
    let mixed: Vec<String> = people[..3].iter().chain(&assayed[..4]).cloned().collect();
    let (status, body) = post_json(&url, &svc, &results(&mixed));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");
    let rejected = body["rejected"].as_array().expect("rejected");
    let refused: Vec<&str> = rejected.iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(
        refused,
        people[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    for r in rejected {
        let why = r["error"].as_str().expect("a reason");
        assert!(
            why.contains("`experts` is a human review (quorum 2)"),
            "{why}"
        );
    }
    // Not even an admin's callback answers for the reviewers.
    let (status, body) = post_json(&url, &admin, &results(&people[3..]));
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(0)),
        "{body}"
    );
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(7));
    assert_eq!(
        env.count(
            "SELECT count(*) FROM verdicts v JOIN hypotheses h ON h.id = v.hypothesis_id \
             JOIN rounds r ON r.id = h.round_id WHERE r.workflow = 'w'"
        ),
        0,
        "no verdict reached the human stage"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM stage_items WHERE status = 'answered'"),
        4
    );
    // A stage a round does not have.
    let round = people[0].split(':').next().expect("round");
    let (_, body) = post_json(
        &url,
        &svc,
        &results(&[format!(
            "{round}:{}:7",
            people[0].split(':').nth(1).expect("id")
        )]),
    );
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("has no stage 7")),
        "{body}"
    );
}

fn reviewers_see_other_verdicts_only_after_answering(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let dave = user(&env, "dave", "reviewer");
    let erin = user(&env, "erin", "admin");
    let server = Server::start(&env, &[]);
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    quorum: 3\n    timeout: 72h\n"),
    );
    run(&env, &w);
    let id = env.count("SELECT min(id) FROM hypotheses");
    let detail = |token: &str| {
        let (status, d) = get_json(&format!("{}/api/v1/hypotheses/{id}", server.base), token);
        assert_eq!(status, 200, "{d}");
        let mut who: Vec<String> = d["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .map(|v| v["reviewer"].as_str().unwrap_or("").to_owned())
            .collect();
        who.sort();
        who
    };
    let answer = |token: &str, verdict: &str| {
        let (status, body) = post_json(
            &format!("{}/api/v1/hypotheses/{id}/verdict", server.base),
            token,
            &json!({ "verdict": verdict }),
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    answer(&alice, "confirmed");
    assert_eq!(detail(&alice), ["alice"], "her own verdict");
    assert!(detail(&bob).is_empty(), "bob has not answered yet");
    answer(&bob, "refuted");
    assert_eq!(
        detail(&bob),
        ["alice", "bob"],
        "after answering, the others"
    );
    assert!(detail(&dave).is_empty(), "dave has not answered yet");
    assert_eq!(detail(&erin), ["alice", "bob"], "an admin sees all");
    // Bob takes his answer back: until he answers again, he is blind again.
    let undone = env.count(&format!(
        "SELECT id FROM verdicts WHERE hypothesis_id = {id} AND reviewer = 'bob'"
    ));
    let (status, _) = post_json(
        &format!("{}/api/v1/verdicts/{undone}/retract", server.base),
        &erin,
        &json!({ "reason": "wrong card" }),
    );
    assert_eq!(status, 200);
    assert_eq!(
        detail(&bob),
        ["bob"],
        "a withdrawn answer does not count: only his own is shown"
    );
    answer(&bob, "confirmed");
    let closing = answer(&dave, "confirmed");
    assert_eq!(closing["answered"], true, "{closing}");
    // The stage item is decided: anyone may see how.
    let frank = user(&env, "frank", "reviewer");
    assert_eq!(detail(&frank), ["alice", "bob", "bob", "dave"]);
}

/// Checks that `text` is Prometheus text format (0.0.4), line by line, and returns its samples
/// as (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            let kind = words.next().expect("a comment keyword");
            assert!(matches!(kind, "HELP" | "TYPE"), "comment `{line}`");
            if kind == "TYPE" {
                let _name = words.next().expect("a metric name");
                let t = words.next().expect("a type");
                assert!(
                    matches!(t, "counter" | "gauge" | "histogram" | "summary" | "untyped"),
                    "type in `{line}`"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| match value {
            "+Inf" => f64::INFINITY,
            _ => panic!("value in `{line}`"),
        });
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in `{line}`"
        );
        // Labels: name="value" pairs, values with \" and \\ escapes.
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(
                key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label name in `{line}`"
            );
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.expect("closing quote");
            rest = after[end + 1..].trim_start_matches(',');
        }
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    samples
}

fn metrics_need_an_admin_token_unless_public(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let svc = user(&env, "lab", "service");
    let carol = user(&env, "carol", "admin");
    // A round in each of two states, one of them `failed`.
    env.sql(
        "INSERT INTO rounds (workflow, number, state, spec, seed, created_at, updated_at) VALUES \
         ('w', 1, 'failed', '', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'), \
         ('w', 2, 'planned', '', 2, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
    );
    let server = Server::start(&env, &[]);
    let url = format!("{}/metrics", server.base);
    assert_eq!(get(&url, None).0, 401, "no token");
    assert_eq!(get(&url, Some("nonsense")).0, 401, "an unknown token");
    assert_eq!(get(&url, Some(&alice)).0, 403, "a reviewer");
    assert_eq!(get(&url, Some(&svc)).0, 403, "a service");
    assert_eq!(get(&format!("{}/healthz", server.base), None).0, 200);
    let (status, kind, text) = call(reqwest::Method::GET, &url, Some(&carol), None, None);
    assert_eq!(status, 200, "{text}");
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let samples = parse_prometheus(&text);
    let value = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
    };
    assert_eq!(
        value("hypograph_rounds", "state=\"failed\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("hypograph_rounds", "state=\"planned\""),
        Some(1.0),
        "{text}"
    );
    // Request latency per route, with the refused scrapes among them.
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n == "hypograph_http_request_seconds_bucket"
                && l.contains("route=\"/metrics\"")
                && l.contains("status=\"401\"")
                && l.contains("le=\"+Inf\"")),
        "{text}"
    );
    assert!(
        samples
            .iter()
            .any(|(n, l, v)| n == "hypograph_http_request_seconds_count"
                && l.contains("route=\"/healthz\"")
                && *v >= 1.0),
        "{text}"
    );
    drop(server);

    let open = Server::start(&env, &["--metrics-public"]);
    let (status, text) = get(&format!("{}/metrics", open.base), None);
    assert_eq!(status, 200, "{text}");
    assert!(!parse_prometheus(&text).is_empty());
}

/// `daemon --bind --metrics-public`: the same server beside the scheduler, whose plugin calls
/// show up as a latency histogram per stage and plugin.
fn the_daemon_serves_plugin_latency(env: Env) {
    env.write(
        "wf/w.yaml",
        format!(
            "name: w\nschedule: \"* * * * * *\"\ngraph:\n  import: {}\n\
             model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n\
             generate:\n  top_k: 10\nrank:\n  batch: 5\n\
             stages:\n  - name: assay\n    plugin: oracle\n    truth: {}\n",
            data("umls/demo-visible.tsv").display(),
            data("umls/demo-hidden.tsv").display(),
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["daemon", "--workflows"])
        .arg(env.path("wf"))
        .args(["--bind", "127.0.0.1:0", "--metrics-public"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let _guard = Kill(child);
    let mut base = None;
    for _ in 0..20 {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            base = Some(url.to_owned());
            break;
        }
    }
    let base = base.expect("the daemon prints its API address");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let start = Instant::now();
    loop {
        let (status, text) = get(&format!("{base}/metrics"), None);
        assert_eq!(status, 200, "{text}");
        let samples = parse_prometheus(&text);
        if samples.iter().any(|(n, l, v)| {
            n == "hypograph_plugin_call_seconds_count"
                && l.contains("stage=\"assay\"")
                && l.contains("plugin=\"oracle\"")
                && *v >= 1.0
        }) {
            assert!(
                samples
                    .iter()
                    .any(|(n, l, _)| n == "hypograph_plugin_call_seconds_bucket"
                        && l.contains("stage=\"assay\"")),
                "{text}"
            );
            assert!(
                samples
                    .iter()
                    .any(|(n, l, _)| n == "hypograph_plugin_calls_total"
                        && l.contains("outcome=\"ok\"")),
                "{text}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no plugin call showed up in /metrics:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `hypograph review` with stdin answers; returns (success, stdout, stderr).
fn review(
    env: &Env,
    args: &[&str],
    token_env: Option<&str>,
    answers: &str,
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hypograph"));
    cmd.arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .arg("review")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("HYPOGRAPH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token_env {
        cmd.env("HYPOGRAPH_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("spawn review");
    // A refused command may exit before reading: a closed pipe is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(answers.as_bytes());
    let out = child.wait_with_output().expect("review");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn review_and_retract_need_the_users_own_token(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let bob = user(&env, "bob", "reviewer");
    let lab = user(&env, "lab", "service");
    let carol = user(&env, "carol", "admin");
    let w = env.write(
        "w.yaml",
        workflow("  - name: experts\n    plugin: human\n    timeout: 72h\n"),
    );
    run(&env, &w);
    let verdicts = || env.count("SELECT count(*) FROM verdicts");
    for (args, token, why) in [
        (vec!["--as", "alice"], None, "a token is required"),
        (
            vec!["--as", "alice", "--token", ""],
            None,
            "a token is required",
        ),
        (
            vec!["--as", "alice"],
            Some(bob.as_str()),
            "belongs to `bob`, not `alice`",
        ),
        (
            vec!["--as", "alice", "--token", "0123abcd"],
            None,
            "unknown token",
        ),
        (
            vec!["--as", "lab", "--token", lab.as_str()],
            None,
            "a service token cannot review",
        ),
    ] {
        let (ok, _, stderr) = review(&env, &args, token, &"c\n".repeat(10));
        assert!(!ok, "{args:?} must fail");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        assert_eq!(verdicts(), 0, "{args:?} wrote nothing");
    }
    let (ok, stdout, stderr) = review(&env, &["--as", "alice"], Some(&alice), "c\nq\n");
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("1 verdict recorded"), "{stdout}");
    let (ok, stdout, stderr) = review(
        &env,
        &["--as", "bob", "--token", bob.as_str()],
        None,
        "r\nq\n",
    );
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        env.strings("SELECT reviewer FROM verdicts ORDER BY id"),
        ["alice", "bob"]
    );

    let id = env
        .count("SELECT id FROM verdicts WHERE reviewer = 'alice'")
        .to_string();
    let retract = |extra: &[&str]| {
        let mut args = vec!["retract", id.as_str(), "--reason", "plate swap"];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let (alice, carol) = (alice.as_str(), carol.as_str());
    for (extra, why) in [
        (vec![], "a token is required"),
        (vec!["--by", "carol"], "a token is required"),
        (
            vec!["--token", alice],
            "a reviewer token cannot retract verdicts",
        ),
        (
            vec!["--by", "carol", "--token", alice],
            "a reviewer token cannot retract verdicts",
        ),
        (
            vec!["--by", "alice", "--token", carol],
            "belongs to `carol`, not `alice`",
        ),
    ] {
        let out = retract(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} must fail");
        assert!(stderr.contains(why), "{extra:?}: {stderr}");
        assert_eq!(
            env.count("SELECT count(*) FROM retractions"),
            0,
            "{extra:?}"
        );
        assert_eq!(
            env.count("SELECT count(*) FROM verdicts WHERE withdrawn = 1"),
            0
        );
    }
    let out = env.run_with(
        &["retract", &id, "--reason", "plate swap"],
        &[("HYPOGRAPH_TOKEN", carol)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.strings("SELECT by_user FROM retractions"),
        ["carol"],
        "the token's owner retracts"
    );
}

fn page_numbers_that_would_overflow_are_refused(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let server = Server::start(&env, &[]);
    let w = env.write("w.yaml", workflow("  - name: experts\n    plugin: human\n"));
    run(&env, &w);
    let page = |p: &str| {
        let (status, _, body) = call(
            reqwest::Method::GET,
            &format!("{}/queue?page={p}", server.base),
            None,
            Some(&alice),
            None,
        );
        (status, body)
    };
    for p in [
        "99999999999999999999",
        "9223372036854775807",
        "368934881474191033",
        "-1",
        "x",
    ] {
        let (status, body) = page(p);
        assert_eq!(status, 400, "page={p}");
        assert!(
            body.contains("`page` must be a whole number from 0 to 368934881474191030"),
            "page={p}: {body}"
        );
    }
    let (status, body) = page("368934881474191030");
    assert_eq!(status, 200, "the last allowed page is just empty");
    assert!(body.contains("Nothing waits for your review"), "{body}");
    assert_eq!(page("0").0, 200);

    let api = |q: &str| get_json(&format!("{}/api/v1/queue?{q}", server.base), &alice);
    for q in [
        "offset=99999999999999999999",
        "offset=9223372036854775807",
        "offset=-5",
        "limit=99999999999999999999",
    ] {
        let (status, body) = api(q);
        assert_eq!(status, 400, "{q}: {body}");
        let field = q.split('=').next().expect("name");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("`{field}` must be a whole number"))),
            "{q}: {body}"
        );
    }
    let (status, body) = api("offset=4611686018427387903&limit=9223372036854775807");
    assert_eq!(
        (status, body["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{body}"
    );
    let (status, body) = api("limit=3");
    assert_eq!(
        (status, body["items"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{body}"
    );
}

on_both!(
    reviewers_see_other_verdicts_only_after_answering,
    reviewers_see_other_verdicts_only_after_answering
);
on_both!(
    metrics_need_an_admin_token_unless_public,
    metrics_need_an_admin_token_unless_public
);
on_both!(
    the_daemon_serves_plugin_latency,
    the_daemon_serves_plugin_latency
);
on_both!(
    review_and_retract_need_the_users_own_token,
    review_and_retract_need_the_users_own_token
);
on_both!(
    page_numbers_that_would_overflow_are_refused,
    page_numbers_that_would_overflow_are_refused
);
on_both!(
    callbacks_answer_only_stages_that_take_them,
    callbacks_answer_only_stages_that_take_them
);

/// A service answers only the workflows (and stages) it is scoped to, by keys it cannot guess,
/// and never with a negative cost.
fn service_tokens_answer_only_what_they_serve(env: Env) {
    let rt = runtime();
    let assay = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({ "results": [] })))
            .mount(&s)
            .await;
        s
    });
    let add = |args: &[&str]| env.ok(args).trim().to_owned();
    let lab = add(&["user", "add", "lab", "--role", "service", "--workflow", "v"]);
    let other = add(&[
        "user",
        "add",
        "other",
        "--role",
        "service",
        "--workflow",
        "u",
        "--stage",
        "elsewhere",
    ]);
    let bare = add(&["user", "add", "bare", "--role", "service"]);
    let carol = user(&env, "carol", "admin");
    assert!(
        env.fail(&[
            "user",
            "add",
            "rita",
            "--role",
            "reviewer",
            "--workflow",
            "v"
        ])
        .contains("not scoped"),
        "only services have scopes"
    );
    let server = Server::start(&env, &[]);
    let stage = format!(
        "  - name: assay\n    plugin: http\n    url: {}/assay\n    callback_url: {}\n    timeout: 1h\n",
        assay.uri(),
        server.base
    );
    for name in ["v", "u"] {
        let f = env.write(
            &format!("{name}.yaml"),
            workflow(&stage).replacen("name: w\n", &format!("name: {name}\n"), 1),
        );
        run(&env, &f);
    }
    let (v_keys, u_keys) = (callback_keys(&env, "v"), callback_keys(&env, "u"));
    assert_eq!((v_keys.len(), u_keys.len()), (10, 10));
    // Keys are random (64 hex digits), the ones the service was sent, and not the guessable
    // `round:hypothesis:stage`.
    let sent: Vec<String> = rt
        .block_on(assay.received_requests())
        .unwrap_or_default()
        .iter()
        .flat_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            body["hypotheses"]
                .as_array()
                .expect("hypotheses")
                .iter()
                .map(|h| h["key"].as_str().expect("key").to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for k in v_keys.iter().chain(&u_keys) {
        assert!(
            k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()),
            "{k}"
        );
        assert!(sent.contains(k), "{k} was sent");
    }
    // What a service can read does not give keys away, and shows only its workflows.
    let (status, rounds) = get_json(&format!("{}/api/v1/rounds", server.base), &lab);
    assert_eq!(status, 200, "{rounds}");
    let workflows: Vec<&str> = rounds["rounds"]
        .as_array()
        .expect("rounds")
        .iter()
        .filter_map(|r| r["workflow"].as_str())
        .collect();
    assert_eq!(workflows, vec!["v"], "{rounds}");
    let text = rounds.to_string();
    assert!(
        !u_keys
            .iter()
            .chain(&v_keys)
            .any(|k| text.contains(k.as_str()))
    );

    let url = format!("{}/api/v1/results", server.base);
    let answers = |ks: &[String], cost: f64| json!({ "results": ks.iter().map(|k| json!({ "key": k, "verdict": "confirmed", "cost": cost })).collect::<Vec<_>>() });
    let verdicts = || env.count("SELECT count(*) FROM verdicts");
    // Another workflow's item, even one key among its own: 403, nothing recorded.
    let mixed: Vec<String> = vec![v_keys[0].clone(), u_keys[0].clone()];
    let (status, body) = post_json(&url, &lab, &answers(&mixed, 1.0));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("workflow `u`") && e.contains("serves: v")),
        "{body}"
    );
    // Scoped to another stage of `u`, or to nothing: refused too.
    let (status, body) = post_json(&url, &other, &answers(&u_keys[..1], 1.0));
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_json(&url, &bare, &answers(&v_keys[..1], 1.0));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("user scope")),
        "{body}"
    );
    assert_eq!(verdicts(), 0);
    // The guessable form names nothing, even in the service's own workflow.
    let guessed = keys(&env, "v");
    let (status, body) = post_json(&url, &lab, &answers(&guessed, 1.0));
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(0)),
        "{body}"
    );
    assert_eq!(verdicts(), 0);
    // A negative cost is refused (it would hand budget back); a real one is kept.
    let (status, body) = post_json(&url, &lab, &answers(&v_keys[..2], -1e6));
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(0)),
        "{body}"
    );
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cost -1000000")),
        "{body}"
    );
    let (status, body) = post_json(&url, &lab, &answers(&v_keys[..2], 2.5));
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(2)),
        "{body}"
    );
    // Admins are not scoped; once `other` serves `u` whole, it answers there.
    let (status, body) = post_json(&url, &carol, &answers(&u_keys[..1], 0.0));
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    env.ok(&["user", "scope", "other", "--workflow", "u"]);
    let (status, body) = post_json(&url, &other, &answers(&u_keys[1..3], 0.0));
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(2)),
        "{body}"
    );
    assert_eq!(verdicts(), 5);
    assert_eq!(
        env.count("SELECT count(*) FROM verdicts WHERE cost < 0"),
        0,
        "no negative cost stored"
    );
}

/// Whether `cookie` still opens the review queue (else: the sign-in page).
fn signed_in(base: &str, cookie: &str) -> bool {
    let (status, html) = runtime().block_on(async {
        let resp = reqwest::Client::new()
            .get(format!("{base}/queue"))
            .header("Cookie", cookie)
            .send()
            .await
            .expect("queue");
        (resp.status().as_u16(), resp.text().await.expect("html"))
    });
    assert_eq!(status, 200, "{html}");
    !html.contains("name=\"token\"")
}

/// Revoking, rotating and disabling a token take effect at once, for the API, the command
/// line and signed-in browsers; signing out ends the session on the server; each change is
/// on the audit page.
fn tokens_can_be_revoked_rotated_and_disabled(env: Env) {
    use crate::support::sign_in;
    let alice = user(&env, "alice", "reviewer");
    let carol = user(&env, "carol", "admin");
    let server = Server::start(&env, &[]);
    let base = server.base.as_str();
    let api = |token: &str| get_json(&format!("{base}/api/v1/queue"), token);
    let session = sign_in(base, &alice).expect("alice signs in");
    assert!(signed_in(base, &session));
    assert_eq!(api(&alice).0, 200);

    // Rotate: the old token and its session stop working; the new one works.
    let fresh = env.ok(&["user", "rotate", "alice"]).trim().to_owned();
    assert_eq!(fresh.len(), 64, "{fresh}");
    assert_eq!(api(&alice).0, 401, "the old token");
    assert!(!signed_in(base, &session), "the old token's session");
    assert!(sign_in(base, &alice).is_none());
    assert_eq!(api(&fresh).0, 200, "the new token");

    // Disable: refused everywhere, sessions end; enable brings the same token back.
    let session = sign_in(base, &fresh).expect("signs in with the new token");
    env.ok(&["user", "disable", "alice"]);
    let (status, body) = api(&fresh);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("disabled")),
        "{body}"
    );
    assert!(!signed_in(base, &session));
    assert!(
        sign_in(base, &fresh).is_none(),
        "a disabled user cannot sign in"
    );
    let (ok, _, err) = review(&env, &["--as", "alice"], Some(&fresh), "q\n");
    assert!(!ok && err.contains("disabled"), "{err}");
    env.ok(&["user", "enable", "alice"]);
    assert_eq!(api(&fresh).0, 200);

    // Revoke: the token is dead; nothing signs in with it.
    let session = sign_in(base, &fresh).expect("signs in again");
    env.ok(&["user", "revoke", "alice"]);
    assert_eq!(api(&fresh).0, 401);
    assert!(!signed_in(base, &session));
    assert!(sign_in(base, &fresh).is_none());
    let list = env.ok(&["user", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice\treviewer\t") && l.contains("\trevoked")),
        "{list}"
    );
    assert!(
        env.fail(&["user", "revoke", "nobody"])
            .contains("no user `nobody`")
    );

    // Signing out ends the session on the server: the same cookie no longer works.
    let admin = sign_in(base, &carol).expect("carol signs in");
    let html = runtime().block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/audit"))
            .header("Cookie", admin.as_str())
            .send()
            .await
            .expect("audit")
            .text()
            .await
            .expect("html")
    });
    for event in ["rotated", "disabled", "enabled", "revoked"] {
        assert!(
            html.contains(&format!("<td>alice</td><td>{event}</td>")),
            "{event}: {html}"
        );
    }
    let csrf = crate::support::form_csrf(&html);
    let status = runtime().block_on(async {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(format!("{base}/logout"))
            .header("Cookie", admin.as_str())
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("logout")
            .status()
            .as_u16()
    });
    assert_eq!(status, 303);
    assert!(!signed_in(base, &admin), "the session ended on the server");
}

/// Sign-in only from the server's own form (login CSRF); CSRF tokens keyed by a secret the
/// database keeps; `Secure` cookies behind an https public URL.
fn sign_in_needs_the_servers_form_and_cookies_follow_the_public_url(env: Env) {
    let alice = user(&env, "alice", "reviewer");
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let rt = runtime();
    let login_page = |base: &str| {
        rt.block_on(async {
            let resp = client
                .get(format!("{base}/login"))
                .send()
                .await
                .expect("login page");
            let cookie = resp
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().expect("text").to_owned())
                .find(|v| v.starts_with("hg_login="))
                .expect("a login cookie");
            let html = resp.text().await.expect("html");
            (cookie, crate::support::form_csrf(&html))
        })
    };
    let post_login = |cookie: Option<&str>, form: &[(&str, &str)]| {
        rt.block_on(async {
            let mut req = client.post(format!("{base}/login")).form(form);
            if let Some(c) = cookie {
                req = req.header("Cookie", c);
            }
            let resp = req.send().await.expect("login");
            let sets = resp.headers().get_all("set-cookie").iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.starts_with("hg_session=") && !v.starts_with("hg_session=;"))
            });
            (resp.status().as_u16(), sets)
        })
    };
    // A form posted from elsewhere (no login cookie, or another page's token): refused.
    assert_eq!(post_login(None, &[("token", &alice)]), (403, false));
    let (cookie, csrf) = login_page(&base);
    let nonce = cookie.split(';').next().expect("pair").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert_eq!(
        post_login(None, &[("token", &alice), ("csrf", &csrf)]),
        (403, false),
        "the token without its cookie"
    );
    let (other, _) = login_page(&base);
    let other = other.split(';').next().expect("pair").to_owned();
    assert_eq!(
        post_login(Some(&other), &[("token", &alice), ("csrf", &csrf)]),
        (403, false),
        "another page's cookie"
    );
    assert_eq!(
        post_login(Some(&nonce), &[("token", &alice), ("csrf", &csrf)]),
        (303, true),
        "the server's own form"
    );
    // The CSRF key is made once and kept in the database: a form rendered before a restart
    // is accepted after it, and it is not derived from the token alone.
    assert_eq!(
        env.count("SELECT count(*) FROM server_secrets WHERE name = 'csrf'"),
        1
    );
    let session = crate::support::sign_in(&base, &alice).expect("signed in");
    let page = |base: &str| {
        rt.block_on(async {
            client
                .get(format!("{base}/queue"))
                .header("Cookie", session.as_str())
                .send()
                .await
                .expect("queue")
                .text()
                .await
                .expect("html")
        })
    };
    let csrf = crate::support::form_csrf(&page(&base));
    let old_derivation = {
        let key = blake3::hash(alice.as_bytes());
        blake3::keyed_hash(key.as_bytes(), b"hypograph csrf v1")
            .to_hex()
            .to_string()
    };
    assert_ne!(csrf, old_derivation);
    drop(server);
    let server = Server::start(&env, &["--public-url", "https://review.example.org"]);
    assert_eq!(crate::support::form_csrf(&page(&server.base)), csrf);
    let logout = |csrf: &str| {
        rt.block_on(async {
            client
                .post(format!("{}/logout", server.base))
                .header("Cookie", session.as_str())
                .form(&[("csrf", csrf)])
                .send()
                .await
                .expect("logout")
                .status()
                .as_u16()
        })
    };
    assert_eq!(logout(&csrf[..63]), 403, "a wrong token");
    // Behind an https URL every cookie is Secure.
    let (cookie, _) = login_page(&server.base);
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert_eq!(logout(&csrf), 303);
    assert!(
        env.fail(&["serve", "--public-url", "review.example.org"])
            .contains("not an http:// or https:// URL"),
    );
}

on_both!(
    service_tokens_answer_only_what_they_serve,
    service_tokens_answer_only_what_they_serve
);
on_both!(
    tokens_can_be_revoked_rotated_and_disabled,
    tokens_can_be_revoked_rotated_and_disabled
);
on_both!(
    sign_in_needs_the_servers_form_and_cookies_follow_the_public_url,
    sign_in_needs_the_servers_form_and_cookies_follow_the_public_url
);
