//! The scheduler through the real `hypograph daemon`: rounds on a cron schedule, a clean stop
//! on SIGTERM, two daemons on one database, and missed slots.

use crate::on_both;

use crate::support::{Env, data};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn workflow(name: &str, extra: &str) -> String {
    format!(
        "name: {name}\nschedule: \"* * * * * *\"\n{extra}\
         graph:\n  import: {visible}\n\
         model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n\
         generate:\n  top_k: 10\n\
         rank:\n  batch: 5\n\
         stages:\n  - name: assay\n    plugin: oracle\n    truth: {hidden}\n",
        visible = data("umls/demo-visible.tsv").display(),
        hidden = data("umls/demo-hidden.tsv").display(),
    )
}

fn spawn(env: &Env, dir: &str, holder: &str) -> Child {
    spawn_with(env, dir, holder, &[])
}

fn spawn_with(env: &Env, dir: &str, holder: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["daemon", "--workflows"])
        .arg(env.path(dir))
        .args(["--holder", holder])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon")
}

/// Polls `check` until it holds, failing after `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count_or_zero(env: &Env, query: &str) -> i64 {
    env.try_strings(&format!("SELECT CAST(({query}) AS TEXT)"))
        .unwrap_or_default()
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM, then the exit status (within a timeout).
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn done_fires(env: &Env) -> i64 {
    count_or_zero(env, "SELECT count(*) FROM fires WHERE status = 'done'")
}

fn runs_rounds_on_schedule_and_stops_cleanly_on_sigterm(env: Env) {
    env.write("wf/w.yaml", workflow("w", ""));
    let child = spawn(&env, "wf", "a");
    wait_for(Duration::from_secs(120), "two scheduled rounds", || {
        done_fires(&env) >= 2
    });
    let status = terminate(child);
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    // Every finished fire ran exactly one round, tagged with its slot; nothing is left open.
    assert_eq!(
        env.count("SELECT count(*) FROM fires f JOIN rounds r ON r.id = f.round_id AND r.fire_time = f.scheduled_at WHERE f.status = 'done'"),
        done_fires(&env)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM fires WHERE status = 'started'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE state NOT IN ('done')"),
        env.count("SELECT count(*) FROM rounds WHERE fire_time IS NOT NULL AND state != 'done'"),
    );
    assert_eq!(
        env.count("SELECT count(*) FROM leases"),
        0,
        "the lease was released"
    );
    // Slots that came while a round ran were skipped with a reason, never run twice.
    assert_eq!(
        env.count("SELECT count(*) FROM fires WHERE status = 'skipped' AND reason IS NULL"),
        0
    );
    let list = env.ok(&[
        "schedule",
        "list",
        "--workflows",
        env.path("wf").to_str().expect("path"),
    ]);
    assert!(list.contains("w (round): \"* * * * * *\""), "{list}");
    assert!(list.contains("  next "), "{list}");
    assert!(list.contains(" done"), "{list}");
}

fn two_daemons_never_run_one_slot_or_workflow_twice(env: Env) {
    env.write("wf/w.yaml", workflow("w", ""));
    // The first daemon creates the database; the second joins once it exists.
    let a = spawn(&env, "wf", "a");
    wait_for(Duration::from_secs(120), "a first fire", || {
        done_fires(&env) >= 1
    });
    let b = spawn(&env, "wf", "b");
    wait_for(
        Duration::from_secs(120),
        "more fires with both daemons",
        || {
            count_or_zero(
                &env,
                "SELECT count(*) FROM fires WHERE status = 'done' AND holder = 'b'",
            ) >= 1
                && done_fires(&env) >= 4
        },
    );
    assert!(terminate(a).success());
    assert!(terminate(b).success());
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE fire_time IS NOT NULL"),
        env.count("SELECT count(DISTINCT fire_time) FROM rounds WHERE fire_time IS NOT NULL"),
        "no slot ran twice"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rounds"),
        env.count("SELECT max(number) FROM rounds"),
        "round numbers are consecutive: no two rounds of one workflow raced"
    );
}

#[test]
fn missed_slots_are_logged_with_skip_and_run_once_with_run_once() {
    for (policy, expect_run) in [("skip", false), ("run_once", true)] {
        let env = Env::new();
        env.write("wf/w.yaml", workflow("w", &format!("missed: {policy}\n")));
        // Pretend a daemon last fired 20 seconds ago and then went down.
        // Create the schema, then plant the last fire.
        let _ = Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .arg("--db")
            .arg(env.db_arg())
            .envs(env.data_dir_var())
            .args(["import"])
            .arg(data("umls/demo-visible.tsv"))
            .output()
            .expect("import");
        let past = (chrono::Utc::now() - chrono::Duration::seconds(20))
            .format("%Y-%m-%dT%H:%M:%S.000Z")
            .to_string();
        env.sql(&format!(
            "INSERT INTO fires (workflow, kind, scheduled_at, status, holder, fired_at) \
             VALUES ('w', 'round', '{past}', 'done', 'old', '{past}')"
        ));
        let child = spawn(&env, "wf", "a");
        wait_for(Duration::from_secs(120), "missed slots handled", || {
            count_or_zero(
                &env,
                "SELECT count(*) FROM fires WHERE reason LIKE 'missed%'",
            ) >= 18
        });
        if expect_run {
            wait_for(Duration::from_secs(120), "the one catch-up round", || {
                count_or_zero(&env, "SELECT count(*) FROM rounds WHERE state = 'done'") >= 1
            });
        }
        assert!(terminate(child).success());
        let missed: Vec<String> = env.strings(&format!(
            "SELECT scheduled_at FROM fires WHERE scheduled_at > '{past}' AND scheduled_at < (SELECT min(fired_at) FROM fires WHERE holder = 'a') ORDER BY 1"
        ));
        assert!(
            missed.len() >= 19,
            "{policy}: every missed slot is recorded ({})",
            missed.len()
        );
        let ran = env.count(&format!(
            "SELECT count(*) FROM fires WHERE scheduled_at IN ({}) AND status != 'skipped'",
            missed
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(",")
        ));
        assert_eq!(
            ran,
            i64::from(expect_run),
            "{policy}: missed slots run once or not at all"
        );
    }
}

fn buffer_one_keeps_one_fire_for_after_a_long_round(env: Env) {
    // Every second, while each round's oracle takes 2.5 s: fires overlap.
    let text = workflow("w", "overlap: buffer_one\n")
        .replace("    truth:", "    latency: 2500ms\n    truth:");
    env.write("wf/w.yaml", text);
    let child = spawn(&env, "wf", "a");
    wait_for(Duration::from_secs(120), "a buffered fire to run", || {
        count_or_zero(
            &env,
            &format!(
                "SELECT count(*) FROM fires WHERE status = 'done' AND {} > 1.0",
                env.seconds_between("scheduled_at", "fired_at")
            ),
        ) >= 1
            && count_or_zero(
                &env,
                "SELECT count(*) FROM fires WHERE reason LIKE '%already buffered%'",
            ) >= 1
    });
    assert!(terminate(child).success());
    assert_eq!(
        env.count(
            "SELECT count(*) FROM fires WHERE status = 'skipped' AND reason LIKE '%overlap: skip%'"
        ),
        0,
        "buffer_one never uses the skip rule"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE fire_time IS NOT NULL"),
        env.count("SELECT count(DISTINCT fire_time) FROM rounds WHERE fire_time IS NOT NULL"),
    );
}

on_both!(
    runs_rounds_on_schedule_and_stops_cleanly_on_sigterm,
    runs_rounds_on_schedule_and_stops_cleanly_on_sigterm
);
on_both!(
    two_daemons_never_run_one_slot_or_workflow_twice,
    two_daemons_never_run_one_slot_or_workflow_twice
);
on_both!(
    buffer_one_keeps_one_fire_for_after_a_long_round,
    buffer_one_keeps_one_fire_for_after_a_long_round
);

/// Two daemons on one workflow; the one driving a round is killed with SIGKILL in the middle
/// of it. The other takes the round over once the dead one's lease expires and finishes it
/// with the graph an unbroken run ends with.
fn a_killed_daemons_round_is_finished_by_the_other(env: Env) {
    // The reference: the same round run straight through, on the same engine.
    let reference = if env.pg.is_some() {
        Env::postgres().expect("PostgreSQL")
    } else {
        Env::sqlite()
    };
    let plain = reference.write("w.yaml", workflow("w", ""));
    reference.ok(&["run", plain.to_str().expect("path"), "--rounds", "1"]);
    let expected =
        reference.strings("SELECT hash FROM graph_versions WHERE id = (SELECT result_version FROM rounds WHERE number = 1)");
    // The oracle answers slowly, so the round is caught mid-way.
    let text = workflow("w", "").replace("    truth:", "    latency: 3000ms\n    truth:");
    env.write("wf/w.yaml", text);
    let ttl = ["--lease-ttl", "3s"];
    let mut a = spawn_with(&env, "wf", "a", &ttl);
    wait_for(
        Duration::from_secs(120),
        "round 1 to wait on the oracle",
        || {
            count_or_zero(
                &env,
                "SELECT count(*) FROM rounds WHERE number = 1 AND state IN ('dispatching', 'awaiting')",
            ) == 1
                && count_or_zero(&env, "SELECT count(*) FROM leases WHERE holder = 'a'") == 1
        },
    );
    a.kill().expect("SIGKILL");
    a.wait().expect("reap");
    let b = spawn_with(&env, "wf", "b", &ttl);
    wait_for(
        Duration::from_secs(120),
        "round 1 to finish under b",
        || {
            count_or_zero(
                &env,
                "SELECT count(*) FROM rounds WHERE number = 1 AND state = 'done'",
            ) == 1
        },
    );
    assert!(terminate(b).success());
    assert_eq!(
        env.strings("SELECT hash FROM graph_versions WHERE id = (SELECT result_version FROM rounds WHERE number = 1)"),
        expected,
        "the taken-over round ends with the unbroken run's graph"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rounds"),
        env.count("SELECT max(number) FROM rounds"),
        "round numbers are consecutive: the dead daemon's round was resumed, not restarted"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rounds WHERE fire_time IS NOT NULL"),
        env.count("SELECT count(DISTINCT fire_time) FROM rounds WHERE fire_time IS NOT NULL"),
        "no slot ran twice"
    );
}

on_both!(
    a_killed_daemons_round_is_finished_by_the_other,
    a_killed_daemons_round_is_finished_by_the_other
);
