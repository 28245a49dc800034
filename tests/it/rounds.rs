//! The round engine through the real binary: rounds end to end, crash safety at every state,
//! replay equivalence, and bad workflows that must write nothing.

use crate::on_both;

use crate::support::{Env, data};

/// A small, fast workflow on the demo split (paths absolute, so it can live anywhere).
fn workflow(name: &str, extra_stage: &str) -> String {
    format!(
        "name: {name}\n\
         graph:\n  import: {visible}\n\
         evaluate:\n  test: {test}\n\
         model:\n  dim: 16\n  epochs: 4\n  retrain_epochs: 1\n  ensemble: 2\n  calibration: none\n\
         generate:\n  top_k: 40\n\
         rank:\n  acquisition: greedy\n  batch: 30\n  max_per_entity: 3\n\
         stages:\n  - name: assay\n    plugin: oracle\n    truth: {hidden}\n    cost: 2\n    batch: 10\n{extra_stage}\
         seed: 11\n",
        visible = data("umls/demo-visible.tsv").display(),
        hidden = data("umls/demo-hidden.tsv").display(),
        test = data("umls/test.txt").display(),
    )
}

fn head_hash(env: &Env) -> String {
    env.strings("SELECT hash FROM graph_versions ORDER BY id DESC LIMIT 1")
        .pop()
        .expect("a version")
}

/// Every invariant a finished round must hold, whatever happened on the way.
fn check_round(env: &Env, number: i64, batch: i64) {
    let id = env.count(&format!(
        "SELECT id FROM rounds WHERE workflow = 'w' AND number = {number}"
    ));
    assert_eq!(
        env.strings(&format!("SELECT state FROM rounds WHERE id = {id}")),
        vec!["done"]
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM hypotheses WHERE round_id = {id}"
        )),
        batch,
        "no hypothesis lost or added"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM hypotheses WHERE round_id = {id} AND status = 'active'"
        )),
        0,
        "every hypothesis ends answered, failed or expired"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM verdicts v JOIN hypotheses h ON h.id = v.hypothesis_id WHERE h.round_id = {id}"
        )),
        batch,
        "one verdict per hypothesis, none applied twice"
    );
    let version = env.count(&format!(
        "SELECT result_version FROM rounds WHERE id = {id}"
    ));
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM graph_versions WHERE round_id = {id}"
        )),
        1,
        "one version per round"
    );
    assert_eq!(
        env.count(&format!(
            "SELECT n_added FROM graph_versions WHERE id = {version}"
        )),
        env.count(&format!(
            "SELECT count(*) FROM hypotheses WHERE round_id = {id} AND status = 'confirmed'"
        )),
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM edges WHERE added_in = {version} AND {} = {id}",
            env.json_num("provenance", "round_id")
        )),
        env.count(&format!(
            "SELECT n_added FROM graph_versions WHERE id = {version}"
        )),
        "confirmed edges carry their provenance"
    );
}

fn a_round_runs_end_to_end_and_records_everything(env: Env) {
    let w = env.write("w.yaml", workflow("w", ""));
    let out = env.ok(&["run", w.to_str().expect("path"), "--rounds", "2"]);
    assert!(out.contains("round 1: 30 hypotheses"), "{out}");
    assert!(out.contains("| round | state |"), "summary table: {out}");
    assert!(out.contains("plots:"), "{out}");
    check_round(&env, 1, 30);
    check_round(&env, 2, 30);
    // Each stored hypothesis knows where it came from.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM hypotheses h JOIN rounds r ON r.id = h.round_id \
             WHERE h.model_id = r.model_id AND h.graph_version = r.base_version \
             AND h.score BETWEEN 0 AND 1 AND h.spread >= 0"
        ),
        60
    );
    // Refuted hypotheses became negative evidence; confirmed ones are never proposed again.
    assert_eq!(
        env.count("SELECT count(*) FROM refutations"),
        env.count("SELECT count(*) FROM hypotheses WHERE status = 'refuted'")
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM (SELECT head, relation, tail FROM hypotheses GROUP BY 1, 2, 3 HAVING count(*) > 1) AS repeated"
        ),
        0,
        "round 2 never re-proposes round 1's triples"
    );
    // The round keeps the workflow text and its metrics.
    assert!(env.strings("SELECT spec FROM rounds WHERE number = 1")[0].contains("name: w"));
    assert!(
        env.count(&format!(
            "SELECT count(*) FROM rounds WHERE {} > 0",
            env.json_num("metrics", "test_mrr")
        )) == 2
    );
    // The plot counts rounds and discoveries in whole numbers.
    let plot = out
        .lines()
        .find_map(|l| l.strip_prefix("plots:"))
        .map(|p| std::fs::read_to_string(p.trim()).expect("read the plot"))
        .expect("a plot path");
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    let ticks: Vec<f64> = plot
        .split("<text")
        .filter_map(|t| {
            t.split_once('>')?
                .1
                .split_once("</text>")?
                .0
                .trim()
                .parse()
                .ok()
        })
        .collect();
    assert!(
        ticks.contains(&1.0) && ticks.contains(&2.0),
        "round ticks: {ticks:?}"
    );
    assert!(
        ticks.iter().all(|t| t.fract() == 0.0 || *t < 1.0),
        "only the MRR axis (0..1) has fractional ticks: {ticks:?}"
    );
    let status = env.ok(&["status"]);
    assert!(status.contains("w round 2 (id 2): done"), "{status}");
    assert!(status.contains("stage 0 (assay): answered 30"), "{status}");
    // stop.max_rounds holds.
    let capped = env.write("capped.yaml", workflow("w", "stop:\n  max_rounds: 2\n"));
    let out = env.ok(&["run", capped.to_str().expect("path")]);
    assert!(
        out.contains("no new round: stop.max_rounds = 2 reached"),
        "{out}"
    );
}

/// Killed at each state, each run on a fresh database from `fresh`.
fn killed_at_every_state_resumes_to_the_same_graph_on(fresh: &dyn Fn() -> Env) {
    let straight = fresh();
    let w = straight.write("w.yaml", workflow("w", ""));
    let wp = w.to_str().expect("path");
    straight.ok(&["run", wp, "--rounds", "2"]);
    let expected = head_hash(&straight);
    for point in [
        "planned",
        "training",
        "generating",
        "ranking",
        "dispatching",
        "dispatching-mid",
        "awaiting",
        "ingesting",
        "retraining",
    ] {
        let env = fresh();
        let w = env.write("w.yaml", workflow("w", ""));
        let wp = w.to_str().expect("path");
        env.ok(&["run", wp]);
        let crashed = env.run_with(&["run", wp], &[("HYPOGRAPH_CRASH_AT", point)]);
        assert!(!crashed.status.success(), "{point}: the crash hook fired");
        assert!(
            String::from_utf8_lossy(&crashed.stderr).contains("aborting"),
            "{point}: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
        assert_eq!(
            env.strings("SELECT state FROM rounds WHERE number = 2"),
            vec![point.trim_end_matches("-mid").to_owned()],
            "{point}: the round was persisted in the state it died in"
        );
        let out = env.ok(&["run", wp]);
        assert!(out.contains("resuming round 2"), "{point}: {out}");
        check_round(&env, 1, 30);
        check_round(&env, 2, 30);
        assert_eq!(env.count("SELECT count(*) FROM rounds"), 2, "{point}");
        assert_eq!(
            env.count("SELECT count(*) FROM graph_versions"),
            3,
            "{point}"
        );
        assert_eq!(
            head_hash(&env),
            expected,
            "{point}: a killed and resumed run ends with the straight run's graph"
        );
    }
}

#[test]
fn killed_at_every_state_resumes_to_the_same_graph() {
    killed_at_every_state_resumes_to_the_same_graph_on(&Env::sqlite);
}

#[test]
fn killed_at_every_state_resumes_to_the_same_graph_on_postgres() {
    if Env::postgres().is_some() {
        killed_at_every_state_resumes_to_the_same_graph_on(&|| {
            Env::postgres().expect("PostgreSQL was there a moment ago")
        });
    }
}

fn a_failing_plugin_fails_only_its_hypotheses(env: Env) {
    // Three submissions fail: the first batch of 10 exhausts its 2 retries, the rest succeed.
    let w = env.write("w.yaml", workflow("w", "    outage: 3\n    retries: 2\n"));
    env.ok(&["run", w.to_str().expect("path")]);
    assert_eq!(
        env.count("SELECT count(*) FROM hypotheses WHERE status = 'failed'"),
        10
    );
    let reasons = env.strings("SELECT DISTINCT reason FROM hypotheses WHERE status = 'failed'");
    assert_eq!(reasons, vec!["oracle unavailable (simulated outage)"]);
    assert_eq!(
        env.count("SELECT count(*) FROM hypotheses WHERE status IN ('confirmed', 'refuted')"),
        20,
        "the round went on"
    );
    assert_eq!(env.strings("SELECT state FROM rounds"), vec!["done"]);
}

/// Runs a bad workflow and checks the message, the exit code and that nothing was written.
fn rejected(text: &str, vars: &[(&str, &str)], expect: &[&str]) {
    let env = Env::new();
    let w = env.write("bad.yaml", text);
    let out = env.run_with(&["run", w.to_str().expect("path")], vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "expected `{e}` in:\n{stderr}");
    }
    if env.db.exists() {
        assert_eq!(
            env.count("SELECT count(*) FROM graph_versions"),
            0,
            "nothing imported"
        );
        assert_eq!(env.count("SELECT count(*) FROM rounds"), 0, "no round");
    }
    let v = env.run_with(&["validate", w.to_str().expect("path")], vars);
    let stderr = String::from_utf8_lossy(&v.stderr);
    assert!(!v.status.success(), "validate should fail: {stderr}");
    for e in expect {
        assert!(
            stderr.contains(e),
            "expected `{e}` from validate in:\n{stderr}"
        );
    }
}

#[test]
fn malformed_yaml() {
    rejected(
        "name: w\nstages: [\n  - oops",
        &[],
        &["bad.yaml:", "not valid YAML"],
    );
}

#[test]
fn wrong_type() {
    let text = workflow("w", "").replace("batch: 30", "batch: thirty");
    rejected(
        &text,
        &[],
        &["bad.yaml:16:3: rank.batch: invalid type: string \"thirty\""],
    );
}

#[test]
fn unknown_field() {
    let text = workflow("w", "").replace("  dim: 16\n", "  dim: 16\n  dimension: 16\n");
    rejected(
        &text,
        &[],
        &["bad.yaml:8:3: model.dimension: unknown field `dimension`"],
    );
}

#[test]
fn bad_cron_expression() {
    let text = format!("schedule: \"every night\"\n{}", workflow("w", ""));
    rejected(
        &text,
        &[],
        &["bad.yaml:1:1: schedule: bad cron expression `every night`"],
    );
}

#[test]
fn unknown_plugin() {
    let text = workflow("w", "").replace("plugin: oracle", "plugin: crystal_ball");
    rejected(
        &text,
        &[],
        &["stages[0].plugin: unknown plugin `crystal_ball`"],
    );
}

#[test]
fn missing_environment_variable() {
    let text = workflow("w", "").replace("cost: 2", "cost: ${ASSAY_COST}");
    rejected(
        &text,
        &[],
        &["stages[0].cost: environment variable `ASSAY_COST` is not set"],
    );
    // Set, it is used with its YAML type.
    let env = Env::new();
    let w = env.write("w.yaml", &text);
    let out = env.run_with(
        &["validate", w.to_str().expect("path")],
        &[("ASSAY_COST", "3")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn durations_too_long_for_the_clock_are_located_errors() {
    // 99999999999h parses as a std Duration but overflows chrono when added to now; the longer
    // one overflows Duration itself. Both used to panic.
    for (field, value, line) in [
        ("timeout", "99999999999h", 24),
        ("timeout", "99999999999999999999999h", 24),
        ("latency", "99999999999d", 24),
    ] {
        let text = workflow("w", "").replace(
            "    batch: 10\n",
            &format!("    batch: 10\n    {field}: {value}\n"),
        );
        rejected(
            &text,
            &[],
            &[&format!(
                "bad.yaml:{line}:5: stages[0].{field}: `{value}` is too long (at most 36500d"
            )],
        );
    }
    // A manifest's timeout is checked where the manifest is read, and located in it.
    let env = Env::new();
    env.write(
        "plugins/slow.yaml",
        "name: slow\nkind: command\ncommand: [cat]\ntimeout: 99999999999h\n",
    );
    let text = workflow("w", "")
        .replace("plugin: oracle", "plugin: slow")
        .replace(
            &format!("    truth: {}\n", data("umls/demo-hidden.tsv").display()),
            "",
        )
        .replace("seed: 11\n", "seed: 11\nplugins_dir: plugins\n");
    let w = env.write("w.yaml", text);
    let err = env.fail(&["run", w.to_str().expect("path")]);
    assert!(
        err.contains("slow.yaml:4:1: timeout: `99999999999h` is too long"),
        "{err}"
    );
    assert!(!env.db.exists(), "a bad workflow writes nothing");
    // On the command line too.
    let ok = env.write("ok.yaml", workflow("w", ""));
    let err = env.fail(&[
        "run",
        ok.to_str().expect("path"),
        "--wait",
        "99999999999999999999999h",
    ]);
    assert!(
        err.contains("--wait: `99999999999999999999999h` is too long"),
        "{err}"
    );
}

#[test]
fn relation_not_in_the_graph() {
    let text = workflow("w", "").replace(
        "  top_k: 40\n",
        "  top_k: 40\n  relations: [treats, cures_everything]\n",
    );
    rejected(
        &text,
        &[],
        &["generate.relations[1]: relation `cures_everything` is not in the graph"],
    );
}

fn bundled_workflows_validate(env: Env) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let files: Vec<String> = ["demo.yaml", "nightly-retrain.yaml", "drug-repurposing.yaml"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let vars = [
        ("LLM_BASE_URL", "http://127.0.0.1:9/v1"),
        ("LLM_MODEL", "m"),
        ("ASSAY_URL", "http://127.0.0.1:9/assay"),
        ("HYPOGRAPH_URL", "http://127.0.0.1:9"),
    ];
    let out = env.run_with(&args, &vars);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": ok (workflow").count(), 3, "{stdout}");
    // Without its secrets the drug-repurposing workflow names each missing variable.
    let out = env.run(&["validate", &files[2]]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for var in ["LLM_BASE_URL", "LLM_MODEL", "ASSAY_URL", "HYPOGRAPH_URL"] {
        assert!(
            stderr.contains(&format!("environment variable `{var}` is not set")),
            "{stderr}"
        );
    }
}

fn a_retrain_only_workflow_trains_once_per_graph_version(env: Env) {
    let text = format!(
        "name: nightly\nretrain:\n  schedule: \"0 0 2 * * *\"\ngraph:\n  import: {}\n\
         model:\n  dim: 8\n  epochs: 2\n  retrain_epochs: 1\n  ensemble: 1\n  calibration: none\n",
        data("umls/demo-visible.tsv").display()
    );
    let w = env.write("nightly.yaml", text);
    let first = env.ok(&["run", w.to_str().expect("path")]);
    assert!(
        first.contains("nightly: model 1 on graph version 1"),
        "{first}"
    );
    assert_eq!(env.strings("SELECT workflow FROM models"), vec!["nightly"]);
    let again = env.ok(&["run", w.to_str().expect("path")]);
    assert!(
        again.contains("model 1 on graph version 1"),
        "no new version, no retrain: {again}"
    );
    // A new version makes the next run train, warm from the last model.
    let extra = env.write(
        "extra.tsv",
        "acquired_abnormality\tisa\tanatomical_abnormality\n",
    );
    env.ok(&["import", extra.to_str().expect("path")]);
    let third = env.ok(&["run", w.to_str().expect("path")]);
    assert!(
        third.contains("model 2 on graph version 2, warm from model 1"),
        "{third}"
    );
}

fn sigterm_finishes_the_step_and_the_round_resumes(env: Env) {
    // A slow oracle keeps the round in `dispatching` long enough to be interrupted there.
    let w = env.write("w.yaml", workflow("w", "    latency: 2s\n"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(env.db_arg())
        .envs(env.data_dir_var())
        .args(["run", w.to_str().expect("path")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    loop {
        let state = env
            .try_strings("SELECT state FROM rounds")
            .and_then(|mut s| s.pop());
        if state.as_deref() == Some("dispatching") {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "never reached dispatching");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit 0 after SIGTERM: {stdout}");
    assert!(stdout.contains("stopped by a signal"), "{stdout}");
    let state = env.strings("SELECT state FROM rounds");
    assert_ne!(state, vec!["done"], "stopped before finishing the round");
    let again = env.ok(&["run", w.to_str().expect("path")]);
    assert!(again.contains("resuming round 1"), "{again}");
    check_round(&env, 1, 30);
}

/// Review's verdicts on round 1's picks recalibrate round 2's probabilities of that
/// relation: round 1 scores as validation calibrated them, round 2 does not, and each
/// hypothesis keeps the probability the next fit reads.
fn verdicts_recalibrate_the_next_rounds_probabilities(env: Env) {
    let text = workflow("w", "").replace(
        "generate:\n  top_k: 40\n",
        "generate:\n  relations: [affects]\n  top_k: 200\n",
    );
    let w = env.write("w.yaml", text);
    env.ok(&["run", w.to_str().expect("path"), "--rounds", "2"]);
    let count = |number: i64, condition: &str| {
        env.count(&format!(
            "SELECT count(*) FROM hypotheses h JOIN rounds r ON r.id = h.round_id \
             WHERE r.number = {number} AND {condition}"
        ))
    };
    assert_eq!(count(1, "h.base_score BETWEEN 0 AND 1"), 30);
    assert_eq!(count(2, "h.base_score BETWEEN 0 AND 1"), 30);
    assert_eq!(
        count(1, "abs(h.score - h.base_score) < 1e-12"),
        30,
        "no verdicts yet: round 1 is not recalibrated"
    );
    assert_eq!(
        count(2, "abs(h.score - h.base_score) < 1e-12"),
        0,
        "30 verdicts on `affects` recalibrate every round-2 probability"
    );
    // The recalibration travels with the model that round 2 scored with.
    let confirmed = count(1, "h.status = 'confirmed'");
    let observed = confirmed as f64 / 30.0;
    let mean = |number: i64, column: &str| -> f64 {
        env.strings(&format!(
            "SELECT CAST(avg(h.{column}) AS TEXT) FROM hypotheses h JOIN rounds r \
             ON r.id = h.round_id WHERE r.number = {number}"
        ))[0]
            .parse()
            .expect("a mean")
    };
    // Round 2's picks sit where round 1's did, so their recalibrated mean is nearer the rate
    // round 1's verdicts observed than their validation-calibrated mean is.
    assert!(
        (mean(2, "score") - observed).abs() < (mean(2, "base_score") - observed).abs(),
        "observed {observed}, recalibrated {}, validation-calibrated {}",
        mean(2, "score"),
        mean(2, "base_score")
    );
}

on_both!(
    verdicts_recalibrate_the_next_rounds_probabilities,
    verdicts_recalibrate_the_next_rounds_probabilities
);
on_both!(
    a_round_runs_end_to_end_and_records_everything,
    a_round_runs_end_to_end_and_records_everything
);
on_both!(
    a_failing_plugin_fails_only_its_hypotheses,
    a_failing_plugin_fails_only_its_hypotheses
);
on_both!(bundled_workflows_validate, bundled_workflows_validate);
on_both!(
    a_retrain_only_workflow_trains_once_per_graph_version,
    a_retrain_only_workflow_trains_once_per_graph_version
);
on_both!(
    sigterm_finishes_the_step_and_the_round_resumes,
    sigterm_finishes_the_step_and_the_round_resumes
);
