//! New-entity benchmark (issue 12): how well does hypograph answer about an entity it never
//! saw, given k of its edges, against retraining the whole model with those edges?
//!
//! For UMLS (no categories, no features) 10% of the entities are removed at random; for the
//! synthetic Hetionet-shaped graph 10% of the `Compound` and of the `Disease` entities. Every
//! edge a removed entity has leaves the training graph. The model trains on the rest; then, for
//! each removed entity, k of its edges (k = 0, 1, 3, 5, 10) are revealed as its prompt and its
//! other edges are ranked (filtered realistic ranks, both directions: the known end among all
//! trained entities, and the new entity among all trained entities plus itself). Edges between
//! two removed entities are dropped. Only entities with more than 10 edges are scored, so every
//! k ranks the same entities.
//!
//! Each arm's MRR is also given by side: the known end ranked, the new entity ranked (among
//! the trained entities plus itself), and a decoy control: the new entity's reciprocal rank in
//! the same relation asked of a trained entity it has no such edge with (low is right: a row
//! that scores high for every query wins the second side and shows here).
//!
//! Arms: fold-in from the feature prior; fold-in from the category mean; the feature prior alone
//! (k is ignored); and the reference a user would otherwise pay for: retraining the model from
//! scratch with every removed entity's revealed edges added (timed).
//!
//! Run: `cargo bench --bench inductive` (UMLS). With the synthetic graph:
//! `python3 ../shared/tools/synth_kg.py --out target/synth01f --scale 0.1 --features 32` then
//! `INDUCTIVE_SYNTH=target/synth01f cargo bench --bench inductive`. `INDUCTIVE_ONLY=umls|synth`.

use hypograph::graph::{Interner, Triple};
use hypograph::model::foldin::{self, Dir, Edge, FoldConfig, Node};
use hypograph::model::prior::{Examples, Priors};
use hypograph::model::{self, KgeModel, Known, TrainConfig, TrainSet};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

const KS: [usize; 5] = [0, 1, 3, 5, 10];

fn env<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

struct Dataset {
    name: String,
    keys: Vec<String>,
    category: Vec<String>,
    features: HashMap<u32, Vec<f32>>,
    triples: Vec<Triple>,
    num_relations: usize,
    /// Which entities may be removed.
    removable: Vec<u32>,
    config: TrainConfig,
}

fn umls(dir: &Path) -> anyhow::Result<Dataset> {
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let mut triples = Vec::new();
    for f in ["train.txt", "valid.txt", "test.txt"] {
        let batch =
            hypograph::graph::tsv::read_triples(&dir.join(f), hypograph::graph::OnInvalid::Fail)?;
        triples.extend(batch.triples_in(&mut ents, &mut rels));
    }
    let n = ents.len();
    Ok(Dataset {
        name: "UMLS".into(),
        keys: (0..n as u32).map(|i| ents.key(i).to_owned()).collect(),
        category: vec![String::new(); n],
        features: HashMap::new(),
        triples,
        num_relations: rels.len(),
        removable: (0..n as u32).collect(),
        config: TrainConfig::new(),
    })
}

fn synth(dir: &Path) -> anyhow::Result<Dataset> {
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let mut category = Vec::new();
    for line in std::fs::read_to_string(dir.join("nodes.tsv"))?
        .lines()
        .skip(1)
    {
        let mut f = line.split('\t');
        let (Some(id), Some(cat)) = (f.next(), f.next()) else {
            continue;
        };
        let i = ents.intern(id) as usize;
        if category.len() <= i {
            category.resize(i + 1, String::new());
        }
        category[i] = cat.to_owned();
    }
    let batch = hypograph::graph::tsv::read_triples(
        &dir.join("triples.tsv"),
        hypograph::graph::OnInvalid::Fail,
    )?;
    let triples = batch.triples_in(&mut ents, &mut rels);
    category.resize(ents.len(), String::new());
    let mut features = HashMap::new();
    for line in std::fs::read_to_string(dir.join("features.tsv"))?
        .lines()
        .skip(1)
    {
        let mut f = line.split('\t');
        let Some(id) = f.next() else { continue };
        let Some(i) = ents.get(id) else { continue };
        let v: Vec<f32> = f.map(|x| x.parse().unwrap_or(0.0)).collect();
        features.insert(i, v);
    }
    let removable = (0..ents.len() as u32)
        .filter(|&i| matches!(category[i as usize].as_str(), "Compound" | "Disease"))
        .collect();
    let n = ents.len();
    Ok(Dataset {
        name: format!("synthetic ({})", dir.display()),
        keys: (0..n as u32).map(|i| ents.key(i).to_owned()).collect(),
        category,
        features,
        triples,
        num_relations: rels.len(),
        removable,
        // The engine's configuration at this scale (benches/het01-round.yaml): one-vs-all
        // epochs cost ~29 s here, shared negatives ~1.4 s.
        config: if std::env::var("SYNTH_ONE_VS_ALL").is_ok() {
            TrainConfig::new()
                .with_dim(64)
                .with_batch_size(2048)
                .with_epochs(env_or("SYNTH_EPOCHS", 10))
                .with_eval_every(5)
        } else {
            TrainConfig::new()
                .with_dim(64)
                .with_regime(hypograph::model::Regime::Negatives)
                .with_loss(hypograph::model::LossKind::Softplus)
                .with_negatives(256)
                .with_optimizer(hypograph::model::OptimizerKind::Adam)
                .with_lr(0.01)
                .with_regularizer(hypograph::model::Regularizer::None)
                .with_batch_size(4096)
                .with_epochs(env_or("SYNTH_EPOCHS", 30))
                .with_eval_every(5)
        },
    })
}

/// The split: known entities renumbered `0..n_known`, removed ones after them.
struct Split {
    /// old id -> new id
    map: Vec<u32>,
    n_known: usize,
    train: Vec<Triple>,
    valid: Vec<Triple>,
    /// Per scored removed entity (new id), its edges to known entities, shuffled.
    edges: Vec<(u32, Vec<Triple>)>,
    removed_total: usize,
    /// Every triple of the dataset, in new ids: the filter.
    truth: HashSet<(u32, u32, u32)>,
}

fn split(d: &Dataset, seed: u64) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut removable = d.removable.clone();
    removable.shuffle(&mut rng);
    let removed: HashSet<u32> = if d.category.iter().all(String::is_empty) {
        removable[..removable.len() / 10].iter().copied().collect()
    } else {
        // 10% of each removable category.
        let mut by: HashMap<&str, Vec<u32>> = HashMap::new();
        for &e in &removable {
            by.entry(d.category[e as usize].as_str())
                .or_default()
                .push(e);
        }
        by.values()
            .flat_map(|v| v[..v.len() / 10].to_vec())
            .collect()
    };
    let n = d.keys.len();
    let mut map = vec![0u32; n];
    let mut next = 0u32;
    for i in 0..n as u32 {
        if !removed.contains(&i) {
            map[i as usize] = next;
            next += 1;
        }
    }
    let n_known = next as usize;
    for i in 0..n as u32 {
        if removed.contains(&i) {
            map[i as usize] = next;
            next += 1;
        }
    }
    let truth = d
        .triples
        .iter()
        .map(|t| (map[t.head as usize], t.relation, map[t.tail as usize]))
        .collect();
    let mut rest = Vec::new();
    let mut per: HashMap<u32, Vec<Triple>> = HashMap::new();
    for t in &d.triples {
        let (h, r, tl) = (map[t.head as usize], t.relation, map[t.tail as usize]);
        let t = Triple::new(h, r, tl);
        match ((h as usize) < n_known, (tl as usize) < n_known) {
            (true, true) => rest.push(t),
            (false, true) => per.entry(h).or_default().push(t),
            (true, false) => per.entry(tl).or_default().push(t),
            (false, false) => {}
        }
    }
    rest.sort_unstable_by_key(|t| (t.head, t.relation, t.tail));
    rest.dedup();
    rest.shuffle(&mut rng);
    let n_valid = (rest.len() / 20).min(2000);
    let valid = rest.split_off(rest.len() - n_valid);
    let mut edges: Vec<(u32, Vec<Triple>)> = per
        .into_iter()
        .filter(|(_, v)| v.len() > *KS.iter().max().unwrap_or(&0))
        .collect();
    edges.sort_by_key(|e| e.0);
    for (_, v) in &mut edges {
        v.sort_unstable_by_key(|t| (t.head, t.relation, t.tail));
        v.dedup();
        v.shuffle(&mut rng);
    }
    Split {
        map,
        n_known,
        train: rest,
        valid,
        edges,
        removed_total: removed.len(),
        truth,
    }
}

#[derive(Default, Clone, Copy)]
struct Score {
    rr: f64,
    hits10: f64,
    n: f64,
    /// Reciprocal ranks and counts per side: 0 the known end ranked, 1 the new entity ranked.
    sides: [(f64, f64); 2],
    /// Reciprocal ranks of the new entity in decoy queries: the same relation asked of a trained
    /// entity it has no edge with. Low is right; a row that scores high everywhere shows here.
    decoy: (f64, f64),
}

impl Score {
    fn add(&mut self, side: usize, rank: f64) {
        self.rr += 1.0 / rank;
        self.hits10 += if rank <= 10.0 { 1.0 } else { 0.0 };
        self.n += 1.0;
        self.sides[side].0 += 1.0 / rank;
        self.sides[side].1 += 1.0;
    }
    /// MRR of ranking the known end, of ranking the new entity, and of the new entity in
    /// decoy queries.
    fn sides(&self) -> String {
        let m = |(rr, n): (f64, f64)| rr / n.max(1.0);
        format!(
            "{:.3} / {:.3} / {:.3}",
            m(self.sides[0]),
            m(self.sides[1]),
            m(self.decoy)
        )
    }
    fn add_decoy(&mut self, rank: f64) {
        self.decoy.0 += 1.0 / rank;
        self.decoy.1 += 1.0;
    }
}

/// A trained entity with no `relation` edge to new entity `e` on the known end's side (the
/// decoy of hidden edge number `i`): deterministic.
fn decoy(s: &Split, e: u32, t: &Triple, i: usize) -> Option<u32> {
    let n = s.n_known as u32;
    let known = if t.head == e { t.tail } else { t.head };
    (1..n).map(|j| (known + j + 37 * i as u32) % n).find(|&c| {
        !(s.truth.contains(&(e, t.relation, c)) || s.truth.contains(&(c, t.relation, e)))
    })
}

/// The realistic rank of the new entity (the last of `scores`) in the query asking for the new
/// end of `(known, relation)` from `known`'s side, filtered by that query's true answers.
fn new_entity_rank(s: &Split, new_is_head: bool, relation: u32, known: u32, scores: &[f32]) -> f64 {
    let filtered = (0..s.n_known as u32).filter(|&c| {
        if new_is_head {
            s.truth.contains(&(c, relation, known))
        } else {
            s.truth.contains(&(known, relation, c))
        }
    });
    model::eval::realistic_rank(scores, scores.len() - 1, filtered)
}

impl Score {
    fn mrr(&self) -> f64 {
        self.rr / self.n.max(1.0)
    }
    fn h10(&self) -> f64 {
        self.hits10 / self.n.max(1.0)
    }
}

/// Ranks every hidden edge of every scored entity, given a row per scored entity.
fn rank_all(model: &KgeModel, s: &Split, k: usize, rows: &HashMap<u32, Vec<f32>>) -> Score {
    let mut score = Score::default();
    for (e, edges) in &s.edges {
        let Some(row) = rows.get(e) else { continue };
        for t in &edges[k..] {
            let new_is_head = t.head == *e;
            let (known, dir) = if new_is_head {
                (t.tail, Dir::Tail)
            } else {
                (t.head, Dir::Head)
            };
            // The known end, among all trained entities.
            let scores = foldin::scores_against_all(model, row, t.relation, dir);
            let filtered = (0..s.n_known as u32).filter(|&c| {
                c != known
                    && if new_is_head {
                        s.truth.contains(&(*e, t.relation, c))
                    } else {
                        s.truth.contains(&(c, t.relation, *e))
                    }
            });
            score.add(
                0,
                model::eval::realistic_rank(&scores, known as usize, filtered),
            );
            // The new entity, among all trained entities plus itself.
            let back = if new_is_head { Dir::Head } else { Dir::Tail };
            let mut scores = foldin::scores_against_all(
                model,
                model.entities.row(known as usize),
                t.relation,
                back,
            );
            let own = if new_is_head {
                foldin::score_rows(model, row, t.relation, model.entities.row(known as usize))
            } else {
                foldin::score_rows(model, model.entities.row(known as usize), t.relation, row)
            };
            scores.push(own);
            score.add(
                1,
                new_entity_rank(s, new_is_head, t.relation, known, &scores),
            );
            if let Some(c) = decoy(s, *e, t, score.decoy.1 as usize) {
                let mut scores = foldin::scores_against_all(
                    model,
                    model.entities.row(c as usize),
                    t.relation,
                    back,
                );
                scores.push(if new_is_head {
                    foldin::score_rows(model, row, t.relation, model.entities.row(c as usize))
                } else {
                    foldin::score_rows(model, model.entities.row(c as usize), t.relation, row)
                });
                score.add_decoy(new_entity_rank(s, new_is_head, t.relation, c, &scores));
            }
        }
    }
    score
}

/// [`rank_all`] for the walk transformer: the new entity is its category's token with its k
/// revealed edges as context. The known end is ranked from `(new, r, ?)` (or `(new, r^-1, ?)`);
/// the new entity among the trained ones plus itself from the known end's query, the new
/// entity scored by its id guess (`new_entity_answer`).
fn rank_walks<'c>(
    scorer: &model::WalkScorer<'_>,
    s: &Split,
    k: usize,
    num_relations: u32,
    cat: &dyn Fn(u32) -> &'c str,
    feature: &dyn Fn(u32) -> Option<&'c [f32]>,
) -> Score {
    use hypograph::model::Step;
    let mut score = Score::default();
    for (e, edges) in &s.edges {
        let step = |t: &Triple| {
            if t.head == *e {
                Step {
                    relation: t.relation,
                    entity: t.tail,
                }
            } else {
                Step {
                    relation: t.relation + num_relations,
                    entity: t.head,
                }
            }
        };
        let claims: Vec<Step> = edges[..k].iter().map(step).collect();
        let hidden = &edges[k..];
        let asks: Vec<u32> = hidden.iter().map(|t| step(t).relation).collect();
        let f = feature(*e).map(|x| ("vector", x));
        let all = scorer.new_entity_tails(cat(*e), f, &claims, &asks);
        let row = scorer.new_entity_answer(cat(*e), f, &claims);
        for (i, t) in hidden.iter().enumerate() {
            let new_is_head = t.head == *e;
            let known = step(t).entity;
            let scores = &all[i * s.n_known..(i + 1) * s.n_known];
            let filtered = (0..s.n_known as u32).filter(|&c| {
                c != known
                    && if new_is_head {
                        s.truth.contains(&(*e, t.relation, c))
                    } else {
                        s.truth.contains(&(c, t.relation, *e))
                    }
            });
            score.add(
                0,
                model::eval::realistic_rank(scores, known as usize, filtered),
            );
            // The new entity among all trained entities plus itself.
            let back = if new_is_head {
                t.relation + num_relations
            } else {
                t.relation
            };
            let scores = scorer.tails_with(known, back, &row);
            score.add(
                1,
                new_entity_rank(s, new_is_head, t.relation, known, &scores),
            );
            if let Some(c) = decoy(s, *e, t, score.decoy.1 as usize) {
                let scores = scorer.tails_with(c, back, &row);
                score.add_decoy(new_entity_rank(s, new_is_head, t.relation, c, &scores));
            }
        }
    }
    score
}

fn main() -> anyhow::Result<()> {
    let only = std::env::var("INDUCTIVE_ONLY").ok();
    let mut sets = Vec::new();
    if only.as_deref().is_none_or(|o| o == "umls") {
        sets.push(umls(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data/umls")
                .as_path(),
        )?);
    }
    if only.as_deref().is_none_or(|o| o == "synth")
        && let Ok(dir) = std::env::var("INDUCTIVE_SYNTH")
    {
        sets.push(synth(Path::new(&dir))?);
    }
    for d in &sets {
        run(d)?;
    }
    if let Ok(dir) = std::env::var("INDUCTIVE_ASK") {
        ask_latency(Path::new(&dir))?;
    }
    Ok(())
}

/// One ask's latency on a whole graph (the synthetic one at `--scale 1`: 47K entities, 2.25M
/// edges), with the model, graph and priors loaded as `serve` keeps them. The weights come
/// from one epoch of sampled-negative training per member: latency does not depend on how
/// good they are, and a one-vs-all epoch at this size takes hours on two cores.
fn ask_latency(dir: &Path) -> anyhow::Result<()> {
    use hypograph::ask::{Asker, NewEntity, Origin, Prompt};
    use hypograph::model::calibrate::Calibrator;
    use hypograph::model::ensemble::{Ensemble, Member};
    let d = synth(dir)?;
    let entities: Vec<(Box<str>, Box<str>)> = d
        .keys
        .iter()
        .zip(&d.category)
        .map(|(k, c)| (Box::from(k.as_str()), Box::from(c.as_str())))
        .collect();
    let mut rels = Interner::new();
    let batch = hypograph::graph::tsv::read_triples(
        &dir.join("triples.tsv"),
        hypograph::graph::OnInvalid::Fail,
    )?;
    let mut ents = Interner::new();
    for k in &d.keys {
        ents.intern(k);
    }
    let triples = batch.triples_in(&mut ents, &mut rels);
    let relations: Vec<Box<str>> = (0..rels.len() as u32)
        .map(|i| Box::from(rels.key(i)))
        .collect();
    let graph = hypograph::graph::Graph::new(entities, relations, triples)?;
    println!(
        "\n## ask latency: {} entities, {} edges, {} relations",
        graph.num_entities(),
        graph.num_triples(),
        graph.num_relations()
    );
    let config = TrainConfig::new()
        .with_regime(hypograph::model::Regime::Negatives)
        .with_loss(hypograph::model::LossKind::Softplus)
        .with_negatives(64)
        .with_batch_size(4096)
        .with_epochs(1)
        .with_eval_every(0);
    let known = Known::new(&[graph.triples()]);
    let set = TrainSet {
        num_entities: graph.num_entities(),
        num_relations: graph.num_relations(),
        train: graph.triples(),
        valid: &[],
        known: &known,
        refuted: &[],
    };
    let device = model::default_device();
    let started = Instant::now();
    let mut members = Vec::new();
    for i in 0..3u64 {
        let m = model::train(
            &config.clone().with_seed(40 + i),
            &set,
            None,
            &device,
            &mut |_| {},
        )?;
        members.push(Member {
            model: hypograph::model::Model::Kge(m.model),
            calibrator: Calibrator::Sigmoid,
        });
    }
    let ensemble = Ensemble {
        members,
        popularity: None,
        verdicts: Default::default(),
    };
    println!(
        "3 members, dim {}, trained in {:.1} s",
        config.dim,
        started.elapsed().as_secs_f64()
    );
    let features: Vec<hypograph::graph::FeatureRecord> = d
        .features
        .iter()
        .map(|(&i, v)| hypograph::graph::FeatureRecord {
            entity: d.keys[i as usize].clone(),
            value: hypograph::graph::FeatureValue::Vector(v.clone()),
        })
        .collect();
    let started = Instant::now();
    let (priors, _) = hypograph::training::fit_priors(&ensemble, &graph, &features, 3);
    println!(
        "priors (11 categories x 3 members) fitted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let asker = Asker::new(1, 1, graph, ensemble, priors, Default::default());
    println!("asker built in {:.2} s", started.elapsed().as_secs_f64());
    // A compound "like" Compound::7 (its features), with three claimed targets.
    let g = asker.graph();
    let c7 = g
        .entity_id("Compound::7")
        .ok_or_else(|| anyhow::anyhow!("no Compound::7"))?;
    let genes: Vec<String> = g
        .out_edges(c7)
        .iter()
        .filter(|t| g.relation_key(t.relation) == "binds_Gene")
        .take(3)
        .map(|t| g.entity_key(t.tail).to_owned())
        .collect();
    let vector = d.features.get(&c7).cloned();
    let entity = NewEntity {
        id: "new-compound".into(),
        category: "Compound".into(),
        vector,
        ..NewEntity::default()
    };
    let edges: Vec<[String; 3]> = genes
        .iter()
        .map(|g| {
            [
                "new-compound".to_owned(),
                "binds_Gene".to_owned(),
                g.clone(),
            ]
        })
        .collect();
    let prompts = [
        (
            "treats_Disease ? (3 claimed edges)",
            Prompt {
                entities: vec![entity.clone()],
                edges: edges.clone(),
                predict: vec![["new-compound".into(), "treats_Disease".into(), "?".into()]],
                top: 20,
                ..Prompt::default()
            },
        ),
        (
            "every relation, both directions (3 claimed edges)",
            Prompt {
                entities: vec![entity.clone()],
                edges,
                top: 20,
                ..Prompt::default()
            },
        ),
        (
            "every relation, features only",
            Prompt {
                entities: vec![entity],
                top: 20,
                ..Prompt::default()
            },
        ),
    ];
    println!(
        "\n| prompt | candidates | median ms | p95 ms | top row | its paths |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (name, prompt) in &prompts {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..15 {
            let a = asker
                .answer(prompt, &Origin::Json)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            times.push(a.seconds * 1000.0);
            last = Some(a);
        }
        times.sort_by(f64::total_cmp);
        let a = last.ok_or_else(|| anyhow::anyhow!("no answer"))?;
        println!(
            "| {name} | {} | {:.1} | {:.1} | {} | {} |",
            a.candidates,
            times[times.len() / 2],
            times[(times.len() * 95 / 100).min(times.len() - 1)],
            a.rows.first().map_or(String::new(), |r| format!(
                "{} {} {}",
                r.head, r.relation, r.tail
            )),
            a.rows.first().map_or(0, |r| r.paths.len())
        );
    }
    Ok(())
}

fn run(d: &Dataset) -> anyhow::Result<()> {
    let s = split(d, 11);
    let device = model::default_device();
    println!(
        "\n## {}: {} entities ({} removed, {} scored with > 10 edges), {} relations, {} training triples",
        d.name,
        d.keys.len(),
        s.removed_total,
        s.edges.len(),
        d.num_relations,
        s.train.len()
    );
    let known = Known::new(&[&s.train, &s.valid]);
    let set = TrainSet {
        num_entities: s.n_known,
        num_relations: d.num_relations,
        train: &s.train,
        valid: &s.valid,
        known: &known,
        refuted: &[],
    };
    let started = Instant::now();
    let base = model::train(&d.config, &set, None, &device, &mut |_| {})?;
    let base_secs = started.elapsed().as_secs_f64();
    let m = &base.model;
    println!(
        "base model: {:?} dim {} {:?}, trained in {base_secs:.1} s, best validation MRR {:.3} (epoch {})",
        d.config.model,
        d.config.dim,
        d.config.regime,
        base.best_valid_mrr.unwrap_or(f64::NAN),
        base.best_epoch
    );

    // Inverse map for categories and features of new ids.
    let mut old = vec![0u32; s.map.len()];
    for (o, &n) in s.map.iter().enumerate() {
        old[n as usize] = o as u32;
    }
    let cat = |new: u32| d.category[old[new as usize] as usize].as_str();
    // The walk transformer on the same split: new entities are its category tokens, their
    // revealed edges the context.
    let walk = if std::env::var("INDUCTIVE_NO_WALKS").is_ok() {
        None
    } else {
        let mut categories = model::Categories::from_names((0..s.n_known as u32).map(&cat));
        // The trained entities' feature vectors, by category (kind "vector").
        let mut by_category: std::collections::BTreeMap<&str, Vec<(u32, Vec<f32>)>> =
            Default::default();
        for i in 0..s.n_known as u32 {
            if let Some(x) = d.features.get(&old[i as usize]) {
                by_category.entry(cat(i)).or_default().push((i, x.clone()));
            }
        }
        categories.features = model::EntityFeatures::from_groups(
            by_category
                .iter()
                .map(|(c, rows)| (*c, "vector", rows.as_slice())),
        );
        // Env overrides of the walk defaults, to measure settings: SAMPLES, IDDROP, MINWALKS.
        let mut w = model::WalkConfig::new();
        if let Some(v) = env("SAMPLES") {
            w.samples = Some(v);
        }
        if let Some(v) = env("IDDROP") {
            w.id_dropout = v;
        }
        if let Some(v) = env("MINWALKS") {
            w.min_walks = Some(v);
        }
        let config = TrainConfig::new()
            .with_model(model::ModelKind::Walks)
            .with_walks(Some(w))
            .with_epochs(env("EPOCHS").unwrap_or(model::config::WALK_EPOCHS));
        let started = Instant::now();
        // INDUCTIVE_WALKS_LOAD: a model INDUCTIVE_WALKS_SAVE wrote (same split), to measure
        // inference settings alone.
        let model = match std::env::var("INDUCTIVE_WALKS_LOAD") {
            Ok(dir) => {
                model::walks::load(Path::new(&dir), config.clone(), s.n_known, d.num_relations)?
            }
            Err(_) => {
                let out =
                    model::walks::train(&config, &set, &categories, None, &device, &mut |_| {})?;
                println!(
                    "walk model: trained in {:.1} s, best validation MRR {:.3} (epoch {})",
                    started.elapsed().as_secs_f64(),
                    out.best_valid_mrr.unwrap_or(f64::NAN),
                    out.best_epoch
                );
                out.model
            }
        };
        if let Ok(dir) = std::env::var("INDUCTIVE_WALKS_SAVE") {
            model::walks::save(&model, Path::new(&dir))?;
        }
        let context = model::Context::new(s.n_known, d.num_relations, &s.train, categories);
        Some((model, context))
    };
    // Category means and feature priors, on the trained entities only.
    let mut by_cat: HashMap<&str, Vec<u32>> = HashMap::new();
    for i in 0..s.n_known as u32 {
        by_cat.entry(cat(i)).or_default().push(i);
    }
    let means: HashMap<&str, Vec<f32>> = by_cat
        .iter()
        .map(|(c, ids)| (*c, foldin::mean_row(m, ids)))
        .collect();
    let feats = |new: u32| d.features.get(&old[new as usize]);
    let groups: Vec<Examples<'_>> = by_cat
        .iter()
        .map(|(c, ids)| Examples {
            category: c,
            kind: "vector",
            rows: ids
                .iter()
                .filter_map(|&i| feats(i).map(|f| (i, f.as_slice())))
                .collect(),
        })
        .collect();
    let started = Instant::now();
    let priors = Priors::fit(m, &groups, 5);
    let prior_secs = started.elapsed().as_secs_f64();
    for p in &priors.maps {
        println!(
            "prior map {} ({} dims, {} entities): held-out R² {:.3}, penalty {}",
            p.category, p.dim, p.fitted_on, p.holdout_r2, p.lambda
        );
    }
    if !priors.maps.is_empty() {
        println!("priors fitted in {:.3} s", prior_secs);
    }
    // Domain and range pools per relation.
    let mut domain: HashMap<u32, HashSet<&str>> = HashMap::new();
    let mut range: HashMap<u32, HashSet<&str>> = HashMap::new();
    for t in &s.train {
        domain.entry(t.relation).or_default().insert(cat(t.head));
        range.entry(t.relation).or_default().insert(cat(t.tail));
    }
    let pool_of = |r: u32, dir: Dir| -> Vec<u32> {
        let cats = match dir {
            Dir::Tail => range.get(&r),
            Dir::Head => domain.get(&r),
        };
        match cats {
            Some(c) => (0..s.n_known as u32)
                .filter(|&i| c.contains(cat(i)))
                .collect(),
            None => (0..s.n_known as u32).collect(),
        }
    };
    let pools: HashMap<(u32, Dir), Vec<u32>> = (0..d.num_relations as u32)
        .flat_map(|r| [(r, Dir::Tail), (r, Dir::Head)])
        .map(|(r, dir)| ((r, dir), pool_of(r, dir)))
        .collect();
    let pools = |r: u32, dir: Dir| pools.get(&(r, dir)).cloned().unwrap_or_default();
    let has_features = !priors.maps.is_empty();
    let defaults = FoldConfig::default();
    let fold_config = FoldConfig {
        steps: env_or("FOLD_STEPS", defaults.steps),
        lr: env_or("FOLD_LR", defaults.lr),
        negatives: env_or("FOLD_NEG", defaults.negatives),
        prior_weight: env_or("FOLD_PRIOR", defaults.prior_weight),
        seed: 7,
    };

    println!(
        "fold-in: {} steps, lr {}, {} negatives, prior weight {}",
        fold_config.steps, fold_config.lr, fold_config.negatives, fold_config.prior_weight
    );
    println!(
        "\n| k | arm | MRR | Hits@10 | ranks | time (s) | share of one retrain |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    let scored: Vec<u32> = s.edges.iter().map(|e| e.0).collect();
    let prior_rows = |use_features: bool| -> Vec<Vec<f32>> {
        scored
            .iter()
            .map(|&e| {
                let mean = means
                    .get(cat(e))
                    .cloned()
                    .unwrap_or_else(|| foldin::mean_row(m, &[]));
                if !use_features {
                    return mean;
                }
                match (priors.get(cat(e), "vector"), feats(e)) {
                    (Some(map), Some(x)) => map.prior(x).unwrap_or(mean),
                    _ => mean,
                }
            })
            .collect()
    };
    for k in KS {
        let edges: Vec<Edge> = s
            .edges
            .iter()
            .enumerate()
            .flat_map(|(i, (e, v))| {
                v[..k].iter().map(move |t| Edge {
                    head: if t.head == *e {
                        Node::New(i)
                    } else {
                        Node::Known(t.head)
                    },
                    relation: t.relation,
                    tail: if t.tail == *e {
                        Node::New(i)
                    } else {
                        Node::Known(t.tail)
                    },
                })
            })
            .collect();
        // (name, fold in, from features, prior weight)
        let mut arms: Vec<(String, bool, bool, f32)> = Vec::new();
        let w = fold_config.prior_weight;
        let alt: Option<f32> = std::env::var("FOLD_PRIOR_ALT")
            .ok()
            .and_then(|v| v.parse().ok());
        for (weight, label) in std::iter::once((w, String::new()))
            .chain(alt.map(|a| (a, format!(" (prior weight {a})"))))
        {
            if has_features {
                arms.push((format!("fold-in, feature prior{label}"), true, true, weight));
            }
            arms.push((
                format!("fold-in, category mean{label}"),
                true,
                false,
                weight,
            ));
        }
        if has_features {
            arms.push(("feature prior only".into(), false, true, w));
        }
        let mut lines: Vec<(String, Score, f64)> = Vec::new();
        for (name, fold, features, weight) in arms {
            let started = Instant::now();
            let init = prior_rows(features);
            let config = FoldConfig {
                prior_weight: weight,
                ..fold_config.clone()
            };
            let rows = if fold {
                foldin::fold_in(m, &init, &edges, &pools, &config)
            } else {
                init
            };
            let secs = started.elapsed().as_secs_f64();
            let rows: HashMap<u32, Vec<f32>> = scored.iter().copied().zip(rows).collect();
            let sc = rank_all(m, &s, k, &rows);
            lines.push((name, sc, secs));
        }
        if let Some((wm, context)) = &walk {
            let started = Instant::now();
            let scorer = wm.scorer(&device, context);
            let feature = |new: u32| d.features.get(&old[new as usize]).map(Vec::as_slice);
            let sc = rank_walks(&scorer, &s, k, d.num_relations as u32, &cat, &feature);
            lines.push((
                "walk transformer (no optimisation)".into(),
                sc,
                started.elapsed().as_secs_f64(),
            ));
        }
        let print = |lines: &[(String, Score, f64)], retrain: Option<(Score, f64)>| {
            let share = |secs: f64| match retrain {
                Some((_, r)) => format!("{:.3}%", 100.0 * secs / r),
                None => "-".into(),
            };
            for (name, sc, secs) in lines {
                println!(
                    "| {k} | {name} | {:.3} | {} | {:.3} | {} | {secs:.4} | {} |",
                    sc.mrr(),
                    sc.sides(),
                    sc.h10(),
                    sc.n,
                    share(*secs)
                );
            }
            if let Some((sc, secs)) = retrain {
                println!(
                    "| {k} | retrain (reference) | {:.3} | {} | {:.3} | {} | {secs:.1} | 100% |",
                    sc.mrr(),
                    sc.sides(),
                    sc.h10(),
                    sc.n
                );
            }
        };
        // Reference: retrain from scratch with the revealed edges as graph facts.
        if std::env::var("INDUCTIVE_NO_RETRAIN").is_ok() {
            print(&lines, None);
            continue;
        }
        let mut train = s.train.clone();
        for (e, v) in &s.edges {
            let _ = e;
            train.extend_from_slice(&v[..k]);
        }
        let n_all = s.n_known + s.removed_total;
        let known = Known::new(&[&train, &s.valid]);
        let set = TrainSet {
            num_entities: n_all,
            num_relations: d.num_relations,
            train: &train,
            valid: &s.valid,
            known: &known,
            refuted: &[],
        };
        let started = Instant::now();
        let full = model::train(&d.config, &set, None, &device, &mut |_| {})?;
        let secs = started.elapsed().as_secs_f64();
        let rows: HashMap<u32, Vec<f32>> = scored
            .iter()
            .map(|&e| (e, full.model.entities.row(e as usize).to_vec()))
            .collect();
        // Rank with the retrained model over the same candidates (trained entities + itself).
        let mut shrunk = full.model.clone();
        shrunk.entities = hypograph::model::tables::Table::from_data(
            s.n_known,
            full.model.entities.width,
            full.model.entities.data[..s.n_known * full.model.entities.width].to_vec(),
        );
        shrunk.num_entities = s.n_known;
        let sc = rank_all(&shrunk, &s, k, &rows);
        print(&lines, Some((sc, secs)));
    }
    Ok(())
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
