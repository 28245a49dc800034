//! Setup shared by the round benchmarks: a store holding the UMLS graph, random unknown
//! triples as a ranked batch, and a round brought to `ranking`.

use hypograph::graph::Graph;
use hypograph::store::{
    ImportOptions, NewHypothesis, OpenMode, RoundInfo, RoundState, RoundUpdate, Store,
};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::Path;

/// A new store under `dir` with UMLS's training triples as version 1, and that graph.
pub async fn umls_store(dir: &Path) -> anyhow::Result<(Store, Graph)> {
    let store = Store::open(&dir.join("bench.db"), OpenMode::Create).await?;
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
