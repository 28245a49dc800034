//! Databases made at every earlier schema version open with this build, migrate, and work:
//! what breaks when a released migration file is edited or deleted.

use crate::support::{Env, Server};
use std::path::PathBuf;

/// Every migration file, in order.
fn migrations() -> Vec<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("db/migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read db/migrations")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

/// Makes `env.db` as a build that had only `files` left it: sqlx applies them from disk and
/// records each one's version and checksum, as the embedded migrator of that build did.
fn database_at(env: &Env, files: &[PathBuf]) {
    let dir = env.path(&format!("migrations-{}", files.len()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().expect("file name"))).expect("copy migration");
    }
    let db = env.db.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .expect("create the database");
            let migrator = sqlx::migrate::Migrator::new(dir.as_path())
                .await
                .expect("read the migrations");
            migrator.run(&pool).await.expect("apply the migrations");
            pool.close().await;
        });
}

fn has_tail_index(env: &Env) -> bool {
    env.count(
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'edges_live_tail'",
    ) == 1
}

#[test]
fn databases_from_every_earlier_schema_open_migrate_and_work() {
    let all = migrations();
    assert!(all.len() >= 9, "{all:?}");
    for k in 1..all.len() {
        let env = Env::new();
        database_at(&env, &all[..k]);
        assert_eq!(
            env.count("SELECT max(version) FROM _sqlx_migrations"),
            k as i64
        );
        if k == 8 {
            assert!(has_tail_index(&env), "0008 made the by-tail index");
        }
        // Opening migrates; the graph commands work on the result.
        let log = env.json(&["graph", "log"]);
        assert_eq!(log.as_array().map(Vec::len), Some(0), "schema {k}: {log}");
        assert_eq!(
            env.count("SELECT count(*) FROM _sqlx_migrations WHERE success"),
            all.len() as i64,
            "schema {k}: every later migration applied"
        );
        let f = env.write("g.tsv", "a\tr\tb\nb\tr\tc\n");
        env.ok(&["import", f.to_str().expect("path")]);
        let stats = env.json(&["stats"]);
        assert_eq!(stats["triples"], 2, "schema {k}: {stats}");
        env.write("k/nodes.tsv", "id\na\nb\n");
        let kgx = env.write(
            "k/edges.tsv",
            "subject\tpredicate\tobject\tprimary_knowledge_source\na\tr\tb\tx|y\n",
        );
        env.ok(&["import", kgx.to_str().expect("path")]);
        let stats = env.json(&["stats"]);
        assert_eq!(
            stats["triples_with_several_sources"], 1,
            "schema {k}: {stats}"
        );
        let features = env.write("f.tsv", "id\tsmiles\na\tCCO\n");
        env.ok(&["import", "--features", features.to_str().expect("path")]);
        env.ok(&["graph", "verify"]);
        assert!(
            !has_tail_index(&env),
            "schema {k}: plain graph work has no review index"
        );
    }
}

#[test]
fn the_review_index_dropped_by_0009_comes_back_when_a_review_server_starts() {
    let all = migrations();
    let env = Env::new();
    database_at(&env, &all[..8]);
    assert!(has_tail_index(&env));
    env.ok(&["graph", "log"]);
    assert!(!has_tail_index(&env), "0009 dropped it");
    let _server = Server::start(&env, &[]);
    // The server creates it before it serves; it prints its address just before that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !has_tail_index(&env) {
        assert!(std::time::Instant::now() < deadline, "no review index");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A model recorded before migration 0016 (its files only in its directory) still loads
/// after the database migrates: storage 'directory', read where it was written, no cache.
#[test]
fn a_model_recorded_before_checkpoints_were_stored_still_loads() {
    let all = migrations();
    let before = all
        .iter()
        .position(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("0016_"))
        })
        .expect("migration 0016");
    // The model and its graph, trained by this build in a database of its own.
    let trained = Env::sqlite();
    let train = crate::support::data("umls/train.txt");
    trained.ok(&["import", train.to_str().expect("path")]);
    trained.ok(&["train", "--epochs", "1", "--dim", "8", "--eval-every", "0"]);
    let test = crate::support::data("umls/test.txt");
    let test = test.to_str().expect("path");
    let metrics = trained.json(&["eval", "--test", test])["metrics"].clone();

    // The same rows in a database at schema 0015, as an older build wrote them.
    let env = Env::sqlite();
    database_at(&env, &all[..before]);
    let tables = "graph_versions entities relations edges sources edge_sources entity_features";
    let mut copy = format!("ATTACH '{}' AS t;", trained.db.display());
    for table in tables.split(' ') {
        copy.push_str(&format!("INSERT INTO {table} SELECT * FROM t.{table};"));
    }
    copy.push_str(
        "INSERT INTO models (id, graph_version, parent_id, kind, config, path, checksum, \
         metrics, created_at, workflow) SELECT id, graph_version, parent_id, kind, config, \
         path, checksum, metrics, created_at, workflow FROM t.models;",
    );
    env.sql(&copy);
    assert_eq!(
        env.count("SELECT max(version) FROM _sqlx_migrations"),
        before as i64
    );

    let report = env.json(&["eval", "--test", test]);
    assert_eq!(report["metrics"], metrics);
    assert_eq!(env.strings("SELECT storage FROM models"), ["directory"]);
    assert_eq!(env.count("SELECT count(*) FROM checkpoint_files"), 0);
    assert!(
        !env.path("hypograph-data").exists(),
        "read in place, nothing cached"
    );
}
