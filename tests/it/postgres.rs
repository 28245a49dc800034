//! What only a shared PostgreSQL database does: answers announced across processes.

use crate::support::{Env, run_now, staged_workflow, user};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A round waiting on reviewers in one process is woken by the verdicts another process
/// records (`NOTIFY` at commit), not by polling: the waiting run logs the announcement and
/// finishes as soon as the last answer lands.
#[test]
fn a_waiting_round_is_woken_by_answers_from_another_process() {
    let Some(env) = Env::postgres() else { return };
    let alice = user(&env, "alice", "reviewer");
    let w = env.write(
        "w.yaml",
        staged_workflow("  - name: experts\n    plugin: human\n    timeout: 72h\n"),
    );
    run_now(&env, &w);
    assert_eq!(
        env.strings("SELECT state FROM rounds"),
        vec!["awaiting"],
        "the round waits for people"
    );
    // A second process waits for the answers (debug logs on, to see what woke it).
    let waiting = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["-vv", "run", w.to_str().expect("path"), "--wait", "120s"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    // It holds the workflow's lease once it is waiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env
        .try_strings("SELECT holder FROM leases WHERE workflow = 'w'")
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the second run never took the lease"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Alice answers all ten in the terminal.
    let mut review = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["review", "--as", "alice"])
        .env("HYPOGRAPH_TOKEN", &alice)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn review");
    review
        .stdin
        .take()
        .expect("stdin")
        .write_all("c\n".repeat(10).as_bytes())
        .expect("write");
    let out = review.wait_with_output().expect("review");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered = Instant::now();
    let out = waiting.wait_with_output().expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        answered.elapsed() < Duration::from_secs(60),
        "the run finished long after the answers"
    );
    assert!(
        log.contains("answers announced"),
        "woken by polling only:\n{log}"
    );
    assert_eq!(env.strings("SELECT state FROM rounds"), vec!["done"]);
}
