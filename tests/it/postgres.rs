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

/// A PostgreSQL server of the test's own (`.ci/postgres`), so it can be stopped and started;
/// removed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    fn script(cmd: &str, dir: &std::path::Path) -> std::process::Output {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres"))
            .arg(cmd)
            .arg(dir)
            .output()
            .expect("run .ci/postgres")
    }

    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Self::script("start", dir.path());
        assert!(
            out.status.success(),
            "starting a PostgreSQL cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Self { dir, url }
    }

    fn pause(&self) {
        assert!(Self::script("pause", self.dir.path()).status.success());
    }

    fn resume(&self) {
        let out = Self::script("resume", self.dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Self::script("stop", self.dir.path());
    }
}

fn daemon_workflow() -> String {
    format!(
        "name: w\nschedule: \"* * * * * *\"\n\
         graph:\n  import: {visible}\n\
         model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n\
         generate:\n  top_k: 20\n\
         rank:\n  batch: 10\n  max_per_entity: 3\n\
         stages:\n  - name: experts\n    plugin: human\n    timeout: 72h\n\
         stop:\n  max_rounds: 1\n\
         seed: 5\n",
        visible = crate::support::data("umls/demo-visible.tsv").display(),
    )
}

/// The database restarted, then out of reach for 30 s, under a running daemon and a running
/// review server: a verdict sent meanwhile is refused with 503 (nothing recorded, retry), both
/// processes reconnect by themselves, every verdict is recorded exactly once and the daemon
/// finishes the round.
#[test]
fn the_database_restarting_or_out_of_reach_loses_nothing() {
    if Env::postgres().is_none() {
        return;
    }
    let cluster = Cluster::start();
    let env = Env::postgres_on(&cluster.url);
    let alice = user(&env, "alice", "reviewer");
    env.write("wf/w.yaml", daemon_workflow());
    let server = crate::support::Server::start(&env, &[]);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["daemon", "--holder", "d", "--workflows"])
        .arg(env.path("wf"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let queue = || crate::support::get_json(&format!("{}/api/v1/queue", server.base), &alice);
    let deadline = Instant::now() + Duration::from_secs(120);
    let items = loop {
        let (status, q) = queue();
        if status == 200 && q["items"].as_array().is_some_and(|a| a.len() == 10) {
            break q["items"].as_array().expect("items").clone();
        }
        assert!(
            Instant::now() < deadline,
            "the round never reached the reviewers"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let verdict = |i: usize| {
        crate::support::post_json(
            &format!(
                "{}/api/v1/hypotheses/{}/verdict",
                server.base, items[i]["id"]
            ),
            &alice,
            &serde_json::json!({ "verdict": "confirmed" }),
        )
    };
    for i in 0..3 {
        assert_eq!(verdict(i).0, 200);
    }
    // A restart: the verdict sent while the server is down is refused, not lost silently.
    cluster.pause();
    let (status, body) = verdict(3);
    assert_eq!(status, 503, "{body}");
    cluster.resume();
    assert_eq!(verdict(3).0, 200, "the server reconnected");
    assert_eq!(verdict(0).0, 409, "no verdict twice");
    // Out of reach for 30 s.
    cluster.pause();
    let (status, body) = verdict(4);
    assert_eq!(status, 503, "{body}");
    std::thread::sleep(Duration::from_secs(30));
    cluster.resume();
    for i in 4..10 {
        let (status, body) = verdict(i);
        assert_eq!(status, 200, "verdict {i}: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while env
        .try_strings("SELECT state FROM rounds WHERE number = 1")
        .unwrap_or_default()
        != vec!["done"]
    {
        assert!(
            daemon.try_wait().expect("poll").is_none(),
            "the daemon died with the database"
        );
        assert!(
            Instant::now() < deadline,
            "the daemon never finished the round"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.count("SELECT count(*) FROM verdicts"), 10);
    assert_eq!(
        env.count("SELECT count(DISTINCT hypothesis_id) FROM verdicts"),
        10,
        "one verdict per hypothesis"
    );
    assert_eq!(queue().0, 200, "the review server still answers");
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
}

/// A role that may write the tables but does not own them (a lab's usual split: the owner
/// migrates, the daemons and servers write) imports a bulk graph too: only an owner may drop
/// and rebuild indexes, so such a role loads the rows into the indexed tables instead of
/// failing on the first `DROP INDEX`.
#[test]
fn a_role_that_does_not_own_the_tables_imports_in_bulk_too() {
    let Some(env) = Env::postgres() else { return };
    let tiny = env.write("tiny.tsv", "a\tr\tb\n");
    env.ok(&["import", tiny.to_str().expect("path")]);
    let role = format!("hg_writer_{}", std::process::id());
    env.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'writer-secret'; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}"
    ));
    let mut url = url::Url::parse(&env.db_arg().to_string_lossy()).expect("URL");
    url.set_username(&role).expect("user");
    url.set_password(Some("writer-secret")).expect("password");
    let mut text = String::new();
    for k in 0..120_000u32 {
        let h = k % 12_000;
        text.push_str(&format!("n{h}\tr\tn{}\n", (h + k / 12_000 + 1) % 12_000));
    }
    let big = env.write("big.tsv", text);
    let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .args(["--db", url.as_str(), "import"])
        .arg(&big)
        .envs(env.data_dir_var())
        .env_remove("RUST_LOG")
        .output()
        .expect("run hypograph");
    // A review server under that role serves without the by-tail index it may not create.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .args(["--db", url.as_str(), "serve", "--bind", "127.0.0.1:0"])
        .envs(env.data_dir_var())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = serve.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !said.contains("edges_live_tail") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => said.push_str(&(line + "\n")),
            Err(_) => break,
        }
    }
    let base = said
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned);
    let health = base
        .as_deref()
        .map(|b| crate::support::get_text(&format!("{b}/healthz"), None));
    let _ = serve.kill();
    let _ = serve.wait();
    env.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    assert!(
        said.contains("edges_live_tail"),
        "no word of the index: {said}"
    );
    assert_eq!(health, Some((200, "ok".to_owned())), "{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("+120000 triples, 12000 new entities"),
        "{stdout}"
    );
    let ok = env.ok(&["graph", "verify"]);
    assert!(ok.starts_with("ok: 2 versions and 120001 edges"), "{ok}");
}

/// The password of a `postgres://` URL, `PGPASSWORD` or a `.pgpass` file reaches the server
/// (the test cluster asks every role but the superuser for one), and appears in no output, not
/// even in an error about that very URL or in debug logs.
#[test]
fn a_password_from_the_url_the_environment_or_pgpass_reaches_the_server_and_no_output() {
    let Some(env) = Env::postgres() else { return };
    let tiny = env.write("tiny.tsv", "a\tr\tb\n");
    env.ok(&["import", tiny.to_str().expect("path")]);
    let role = format!("hg_reader_{}", std::process::id());
    let secret = format!("s3cret-{}", std::process::id());
    env.sql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{secret}'; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    let mut url = url::Url::parse(&env.db_arg().to_string_lossy()).expect("URL");
    url.set_username(&role).expect("user");
    let home = tempfile::tempdir().expect("temp dir");
    let run = |url: &url::Url, vars: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .args(["-vv", "--db", url.as_str(), "graph", "log"])
            .envs(env.data_dir_var())
            .env_remove("RUST_LOG")
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .env("HOME", home.path())
            .envs(vars.iter().copied())
            .output()
            .expect("run hypograph");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let results = [
        ("none", run(&url, &[])),
        ("PGPASSWORD", run(&url, &[("PGPASSWORD", &secret)])),
        ("wrong PGPASSWORD", run(&url, &[("PGPASSWORD", "not-it")])),
        ("in the URL", {
            let mut with = url.clone();
            with.set_password(Some(&secret)).expect("password");
            run(&with, &[])
        }),
        ("wrong in the URL", {
            let mut with = url.clone();
            with.set_password(Some("wrong-one-in-url"))
                .expect("password");
            run(&with, &[])
        }),
        (".pgpass", {
            let pgpass = home.path().join(".pgpass");
            std::fs::write(&pgpass, format!("*:*:*:{role}:{secret}\n")).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            run(&url, &[])
        }),
    ];
    env.sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    for (how, (ok, said)) in &results {
        let expected = matches!(*how, "PGPASSWORD" | "in the URL" | ".pgpass");
        assert_eq!(*ok, expected, "password {how}: {said}");
        if expected {
            assert!(said.contains("tiny.tsv"), "password {how}: {said}");
        } else {
            assert!(
                said.contains("password authentication failed"),
                "{how}: {said}"
            );
        }
        for leak in [secret.as_str(), "wrong-one-in-url", "not-it"] {
            assert!(
                !said.contains(leak),
                "password {how}: the output shows {leak}: {said}"
            );
        }
    }
}
