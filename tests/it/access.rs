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

/// The `round:hypothesis:stage` keys of a workflow's waiting hypotheses.
fn keys(env: &Env, workflow: &str) -> Vec<String> {
    env.strings(&format!(
        "SELECT h.round_id || ':' || h.id || ':' || h.stage FROM hypotheses h \
         JOIN rounds r ON r.id = h.round_id WHERE r.workflow = '{workflow}' ORDER BY h.id"
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
    let svc = user(&env, "lab", "service");
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
    let (people, assayed) = (keys(&env, "w"), keys(&env, "v"));
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
