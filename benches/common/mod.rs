//! Setup shared by the round benchmarks: a store holding the UMLS graph, random unknown
//! triples as a ranked batch, and a round brought to `ranking`.

use hypograph::graph::Graph;
use hypograph::store::{
    ImportOptions, Location, NewHypothesis, OpenMode, RoundInfo, RoundState, RoundUpdate, Store,
};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::Path;

/// A new store under `dir` with UMLS's training triples as version 1, and that graph.
#[allow(dead_code)]
pub async fn umls_store(dir: &Path) -> anyhow::Result<(Store, Graph)> {
    umls_store_at(Location::Sqlite(dir.join("bench.db"))).await
}

/// Like [`umls_store`] at any location (an empty database).
pub async fn umls_store_at(at: Location) -> anyhow::Result<(Store, Graph)> {
    let store = Store::open(at, OpenMode::Create).await?;
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/umls/train.txt");
    let parsed = hypograph::graph::tsv::read_triples(&train, hypograph::graph::OnInvalid::Fail)?;
    store.import(&parsed, &ImportOptions::default()).await?;
    let graph = store.load_graph(1).await?;
    Ok((store, graph))
}

/// `n` distinct triples absent from the graph, ranked in order, with random scores.
pub fn unknown_batch(graph: &Graph, n: usize, seed: u64) -> Vec<NewHypothesis> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let t = hypograph::graph::Triple::new(
            rng.random_range(0..graph.num_entities() as u32),
            rng.random_range(0..graph.num_relations() as u32),
            rng.random_range(0..graph.num_entities() as u32),
        );
        if t.head == t.tail || graph.contains(t) || !seen.insert(t) {
            continue;
        }
        out.push(NewHypothesis {
            head: graph.entity_key(t.head).to_owned(),
            relation: graph.relation_key(t.relation).to_owned(),
            tail: graph.entity_key(t.tail).to_owned(),
            score: rng.random(),
            spread: 0.1,
            acquisition: 1.0 - out.len() as f64 / n as f64,
            rank: out.len() as i64,
            base_score: None,
            model_paths: None,
        });
    }
    out
}

/// A new round of `workflow` moved to `ranking` on version 1, as if a model had scored it.
pub async fn round_at_ranking(
    store: &Store,
    workflow: &str,
    spec: &str,
) -> anyhow::Result<RoundInfo> {
    let round = store.create_round(workflow, spec, 1, None).await?;
    for (from, to) in [
        (RoundState::Planned, RoundState::Training),
        (RoundState::Training, RoundState::Generating),
        (RoundState::Generating, RoundState::Ranking),
    ] {
        let u = RoundUpdate {
            base_version: Some(1),
            ..RoundUpdate::default()
        };
        store.advance_round(round.id, from, to, 0, u).await?;
    }
    Ok(store.round(round.id).await?)
}

/// A fresh database on the PostgreSQL server `HYPOGRAPH_BENCH_POSTGRES` names (an admin
/// URL), dropped with the guard; `None` when the variable is unset.
#[allow(dead_code)]
pub async fn postgres_database(tag: &str) -> anyhow::Result<Option<PgDatabase>> {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("HYPOGRAPH_BENCH_POSTGRES") else {
        return Ok(None);
    };
    let name = format!("bench_{tag}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let mut url = url::Url::parse(&admin)?;
    url.set_path(&format!("/{name}"));
    Ok(Some(PgDatabase {
        url: url.to_string(),
        admin,
        name,
    }))
}

/// A benchmark's database on a PostgreSQL server; dropped on drop.
#[allow(dead_code)]
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A runtime of its own: drop may run inside or outside the benchmark's.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| {
                    rt.block_on(async {
                        use sqlx::Connection;
                        let mut conn = sqlx::PgConnection::connect(&admin).await?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await
                    })
                })
        })
        .join();
    }
}
