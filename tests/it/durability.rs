//! Durability through the real binary: kills at every state with an `http` stage (a real
//! loopback assay service) and a `command` stage, two processes on one workflow, lost leases,
//! attempts that end a round as failed, and abandoning a round.

use crate::on_both;

use crate::support::{Env, data};

use std::path::Path;
use std::process::{Command, Stdio};

const POINTS: [&str; 10] = [
    "planned",
    "training",
    "generating",
    "ranking",
    "dispatching",
    "dispatching-sent",
    "dispatching-mid",
    "awaiting",
    "ingesting",
    "retraining",
];

/// A small workflow on the demo split with the given stage (30 hypotheses, batches of 10).
fn workflow(stage: &str, extra: &str) -> String {
    format!(
        "name: w\n\
         graph:\n  import: {visible}\n\
         model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 2\n  calibration: none\n\
         generate:\n  top_k: 40\n\
         rank:\n  acquisition: greedy\n  batch: 30\n  max_per_entity: 3\n\
         stages:\n{stage}\
         plugins_dir: {plugins}\n\
         seed: 13\n{extra}",
        visible = data("umls/demo-visible.tsv").display(),
        plugins = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("plugins")
            .display(),
    )
}

fn head_hash(env: &Env) -> String {
    env.strings("SELECT hash FROM graph_versions ORDER BY id DESC LIMIT 1")
        .pop()
        .expect("a version")
}

/// A finished round: every hypothesis decided once, one version.
fn check_round(env: &Env, number: i64) {
    let id = env.count(&format!("SELECT id FROM rounds WHERE number = {number}"));
    assert_eq!(
        env.strings(&format!("SELECT state FROM rounds WHERE id = {id}")),
        vec!["done"]
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM hypotheses WHERE round_id = {id}"
        )),
        30
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM hypotheses WHERE round_id = {id} AND status IN ('active', 'failed', 'expired')"
        )),
        0,
        "every hypothesis answered, none failed or left waiting"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM verdicts v JOIN hypotheses h ON h.id = v.hypothesis_id WHERE h.round_id = {id}"
        )),
        30,
        "one verdict per hypothesis: a resent batch's answers count once"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM graph_versions WHERE round_id = {id}"
        )),
        1
    );
}

fn kill_everywhere(stage: &str) {
    let straight = Env::new();
    let w = straight.write("w.yaml", workflow(stage, ""));
    let wp = w.to_str().expect("path");
    straight.ok(&["run", wp, "--rounds", "2"]);
    check_round(&straight, 1);
    check_round(&straight, 2);
    let expected = head_hash(&straight);
    for point in POINTS {
        let env = Env::new();
        let w = env.write("w.yaml", workflow(stage, ""));
        let wp = w.to_str().expect("path");
        env.ok(&["run", wp]);
        let crashed = env.run_with(&["run", wp], &[("HYPOGRAPH_CRASH_AT", point)]);
        assert!(
            String::from_utf8_lossy(&crashed.stderr).contains("aborting"),
            "{point}: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
        let state = point.split('-').next().expect("state");
        assert_eq!(
            env.strings("SELECT state FROM rounds WHERE number = 2"),
            vec![state.to_owned()],
            "{point}"
        );
        let out = env.ok(&["run", wp, "--wait", "30s"]);
        assert!(out.contains("resuming round 2"), "{point}: {out}");
        check_round(&env, 1);
        check_round(&env, 2);
        assert_eq!(
            head_hash(&env),
            expected,
            "{point}: a killed and resumed run ends with the straight run's graph"
        );
    }
}

#[test]
fn an_http_stage_killed_at_every_state_resends_and_resumes() {
    let truth = data("umls/demo-hidden.tsv");
    let assay = crate::support::ExampleAssay::start(
        &[
            "--mode".as_ref(),
            "instant".as_ref(),
            "--truth".as_ref(),
            truth.as_os_str(),
        ],
        &[],
    );
    kill_everywhere(&format!(
        "  - name: assay\n    plugin: http\n    url: {}/assay\n    batch: 10\n",
        assay.base
    ));
}

#[test]
fn a_command_stage_killed_at_every_state_resumes() {
    kill_everywhere("  - name: triage\n    plugin: example-triage\n    batch: 10\n");
}

/// A stage that waits for people, so a round stays open.
const HUMAN: &str = "  - name: experts\n    plugin: human\n    timeout: 72h\n";

fn two_runs_started_together_never_share_a_workflow(env: Env) {
    let oracle = format!(
        "  - name: assay\n    plugin: oracle\n    truth: {}\n",
        data("umls/demo-hidden.tsv").display()
    );
    let w = env.write("w.yaml", workflow(&oracle, ""));
    let wp = w.to_str().expect("path");
    env.ok(&["run", wp]);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .arg("--db")
            .arg(env.db_arg())
            .envs(env.data_dir_var())
            .args(["run", wp])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run")
    };
    let (a, b) = (spawn(), spawn());
    let outs = [
        a.wait_with_output().expect("first"),
        b.wait_with_output().expect("second"),
    ];
    let won: Vec<&std::process::Output> = outs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<&std::process::Output> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "exactly one drives the workflow"
    );
    let why = String::from_utf8_lossy(&lost[0].stderr);
    assert!(why.contains("is being run by run@"), "{why}");
    assert_eq!(env.count("SELECT count(*) FROM rounds"), 2);
    check_round(&env, 2);
    assert_eq!(
        env.count("SELECT count(*) FROM models"),
        3,
        "one training per round plus one retrain: nothing trained twice"
    );
    assert_eq!(env.count("SELECT count(*) FROM leases"), 0, "released");
}

fn a_run_that_loses_its_lease_stops_with_an_error(env: Env) {
    let w = env.write("w.yaml", workflow(HUMAN, ""));
    let wp = w.to_str().expect("path");
    let run = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["run", wp, "--wait", "120s", "--lease-ttl", "600ms"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    // Once the round waits for reviewers, another holder takes the lease over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while env
        .try_strings("SELECT state FROM rounds WHERE number = 1")
        .and_then(|s| s.first().cloned())
        .as_deref()
        != Some("awaiting")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the round never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    env.sql("UPDATE leases SET holder = 'another-daemon', expires_at = '2999-01-01T00:00:00.000Z'");
    let out = run.wait_with_output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("lost the lease on workflow `w`"),
        "{stderr}"
    );
    assert_eq!(
        env.strings("SELECT state FROM rounds WHERE number = 1"),
        vec!["awaiting"],
        "left for the lease holder, not failed"
    );
    assert_eq!(
        env.strings("SELECT holder FROM leases"),
        vec!["another-daemon"],
        "the other holder's lease is not released by the loser"
    );
}

fn a_round_failing_the_same_way_is_failed_after_max_attempts(env: Env) {
    let oracle = format!(
        "  - name: assay\n    plugin: oracle\n    truth: {}\n",
        data("umls/demo-hidden.tsv").display()
    );
    let w = env.write("w.yaml", workflow(&oracle, "max_attempts: 2\n"));
    let wp = w.to_str().expect("path");
    let fail = [("HYPOGRAPH_FAIL_AT", "generating")];
    let first = env.run_with(&["run", wp], &fail);
    assert!(!first.status.success());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("attempt 1 of 2 failed"), "{stderr}");
    assert_eq!(
        env.strings("SELECT state || ' ' || attempts FROM rounds"),
        vec!["generating 1"]
    );
    let status = env.ok(&["status"]);
    assert!(
        status.contains("1 attempt so far, the last error"),
        "{status}"
    );
    let second = env.run_with(&["run", wp], &fail);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("attempt 2 of 2 failed") && stderr.contains("the round is now failed"),
        "{stderr}"
    );
    assert_eq!(
        env.strings("SELECT state FROM rounds WHERE number = 1"),
        vec!["failed"]
    );
    let status = env.ok(&["status"]);
    assert!(status.contains("failed after 2 attempts"), "{status}");
    assert!(status.contains("injected failure"), "{status}");
    // The dashboard and /metrics show it too.
    let admin = env.ok(&["user", "add", "carol", "--role", "admin"]);
    let server = crate::support::Server::start(&env, &[]);
    let cookie = crate::support::session(&server.base, admin.trim()).expect("signed in");
    let get = |path: &str| {
        crate::support::mt_runtime().block_on(async {
            reqwest::Client::new()
                .get(format!("{}{path}", server.base))
                .header("Cookie", cookie.as_str())
                .bearer_auth(admin.trim())
                .send()
                .await
                .expect("request")
                .text()
                .await
                .expect("body")
        })
    };
    let dashboard = get("/dashboard");
    assert!(dashboard.contains("failed after 2 attempts"), "{dashboard}");
    let metrics = get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("state=\"failed\"") && l.trim_end().ends_with(" 1")),
        "{metrics}"
    );
    drop(server);
    // The next run starts a new round rather than failing the old one again.
    let out = env.ok(&["run", wp]);
    assert!(out.contains("round 2: 30 hypotheses"), "{out}");
    check_round(&env, 2);
}

fn an_admin_abandons_a_stuck_round(env: Env) {
    let admin = env.ok(&["user", "add", "carol", "--role", "admin"]);
    let reviewer = env.ok(&["user", "add", "alice", "--role", "reviewer"]);
    let w = env.write("w.yaml", workflow(HUMAN, ""));
    let wp = w.to_str().expect("path");
    env.ok(&["run", wp, "--wait", "0s"]);
    let id = env
        .count("SELECT id FROM rounds WHERE number = 1")
        .to_string();
    let refused = env.run_with(
        &["round", "abandon", &id, "--reason", "panel cancelled"],
        &[("HYPOGRAPH_TOKEN", reviewer.trim())],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a reviewer token cannot abandon rounds")
    );
    let out = env.run_with(
        &["round", "abandon", &id, "--reason", "panel cancelled"],
        &[("HYPOGRAPH_TOKEN", admin.trim())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("abandoned by carol: panel cancelled"),
        "{stdout}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM hypotheses WHERE status = 'active'"),
        0,
        "nothing waits for an abandoned round"
    );
    let again = env.run_with(
        &["round", "abandon", &id, "--reason", "twice"],
        &[("HYPOGRAPH_TOKEN", admin.trim())],
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already failed"));
    env.ok(&["run", wp, "--wait", "0s"]);
    assert_eq!(
        env.strings("SELECT state FROM rounds ORDER BY number"),
        vec!["failed", "awaiting"]
    );
}

on_both!(
    two_runs_started_together_never_share_a_workflow,
    two_runs_started_together_never_share_a_workflow
);
on_both!(
    a_run_that_loses_its_lease_stops_with_an_error,
    a_run_that_loses_its_lease_stops_with_an_error
);
/// A step that kills the process (the crash hook here, standing for an allocation that
/// aborts) has counted an attempt before it ran: after `max_attempts` such runs the next run
/// fails the round instead of dying the same way, and the run after that starts a new round.
fn a_round_whose_step_kills_the_process_is_failed_after_max_attempts(env: Env) {
    let oracle = format!(
        "  - name: assay\n    plugin: oracle\n    truth: {}\n",
        data("umls/demo-hidden.tsv").display()
    );
    let w = env.write("w.yaml", workflow(&oracle, "max_attempts: 2\n"));
    let wp = w.to_str().expect("path");
    let crash = [("HYPOGRAPH_CRASH_AT", "generating")];
    for n in 1..=2 {
        let out = env.run_with(&["run", wp], &crash);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("aborting"),
            "{stderr}"
        );
        assert_eq!(
            env.strings("SELECT state || ' ' || attempts FROM rounds"),
            vec![format!("generating {n}")],
            "the dead run counted"
        );
    }
    let status = env.ok(&["status"]);
    assert!(
        status.contains("2 attempts so far, none reported an error"),
        "{status}"
    );
    let third = env.run_with(&["run", wp], &crash);
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert_eq!(
        third.status.code(),
        Some(1),
        "an error, not a crash: {stderr}"
    );
    assert!(
        stderr.contains("the round is now failed") && stderr.contains("inside `generating`"),
        "{stderr}"
    );
    assert_eq!(
        env.strings("SELECT state FROM rounds WHERE number = 1"),
        vec!["failed"]
    );
    let out = env.ok(&["run", wp]);
    assert!(out.contains("round 2: 30 hypotheses"), "{out}");
    check_round(&env, 2);
}

on_both!(
    a_round_failing_the_same_way_is_failed_after_max_attempts,
    a_round_failing_the_same_way_is_failed_after_max_attempts
);
on_both!(
    an_admin_abandons_a_stuck_round,
    an_admin_abandons_a_stuck_round
);
on_both!(
    a_round_whose_step_kills_the_process_is_failed_after_max_attempts,
    a_round_whose_step_kills_the_process_is_failed_after_max_attempts
);
