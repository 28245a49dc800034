//! A graph language model: a transformer reading relation-typed random walks, trained to fill
//! in masked entities and relations, and to answer `(h, r, ?)` from `[h, r, MASK]` followed by
//! context walks that start at `h` (the target edge removed from them). Because a training
//! sequence sometimes shows `h` as its category's token instead of its id (`id_dropout`), the
//! model also answers about entities it never saw from their edges alone: no optimisation at
//! ask time, the prompt's edges are the context.
//!
//! Scoring reads a [`Context`] (the graph at scoring time), so the same weights answer
//! differently once the graph has grown. Context walks at inference are seeded by
//! `(config.seed, entity, relation)` alone: a query scores the same in any batch and after a
//! restart.
//!
//! Not done: entity features are not read (a projection of feature vectors into the input
//! rows would let a new entity's features speak beside its category).

mod net;
pub mod sample;
mod sampled;
mod score;
mod train;

pub use score::{NewAnswer, WalkScorer};
pub use train::{phase_seconds, sequence_len, train};

use super::checkpoint::CheckpointError;
use super::config::TrainConfig;
use super::context::{Categories, FeatureGroup};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use net::{Sizes, WalkNet, init_std, normal_table};
use rand::{Rng, SeedableRng};
use std::path::Path;

const WEIGHTS: &str = "weights.bpk";
const META: &str = "walks.json";

/// A trained walk model: its config, sizes, category vocabulary and weights (a burn module
/// without autodiff, on the CPU).
#[derive(Debug, Clone)]
pub struct WalkModel {
    pub config: TrainConfig,
    pub num_entities: usize,
    pub num_relations: usize,
    /// Category vocabulary of the "unknown entity of category c" tokens; `[0] == ""`.
    pub categories: Vec<String>,
    /// The feature layouts it reads, each with its map in the net (same order).
    pub feature_groups: Vec<FeatureGroup>,
    net: WalkNet,
}

/// What `walks.json` holds beside the weights.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    categories: Vec<String>,
    /// Absent in checkpoints written before features were read.
    #[serde(default)]
    feature_groups: Vec<FeatureGroup>,
    num_entities: usize,
    num_relations: usize,
}

impl WalkModel {
    /// A freshly initialised model.
    pub fn init(
        config: &TrainConfig,
        num_entities: usize,
        num_relations: usize,
        categories: &[String],
        rng: &mut impl Rng,
    ) -> Self {
        let mut names = vec![String::new()];
        names.extend(categories.iter().filter(|c| !c.is_empty()).cloned());
        let sizes = Sizes {
            entities: num_entities,
            relations: num_relations,
            categories: names.len(),
        };
        // burn draws the encoder's and the head's initial weights from its own generator:
        // seed it, so a training is reproducible (process-wide on the CPU backend).
        let device = cpu();
        device.seed(config.seed);
        let net = WalkNet::init(&config.walk_config(), sizes, &device, rng);
        Self {
            config: config.clone(),
            num_entities,
            num_relations,
            categories: names,
            feature_groups: Vec::new(),
            net,
        }
    }

    /// Extends the tables to a larger graph, keeping every trained row (warm start). New
    /// entities and relations get fresh random rows (and zero biases).
    pub fn grow(&mut self, num_entities: usize, num_relations: usize, rng: &mut impl Rng) {
        let c = self.config.walk_config();
        let (d, std, dev) = (c.d_model, init_std(&c), cpu());
        if num_entities > self.num_entities {
            let extra = num_entities - self.num_entities;
            self.net.entities = extend(&self.net.entities, normal_table(extra, d, std, rng), d);
            self.net.entity_bias = extend1(&self.net.entity_bias, vec![0.0; extra]);
            self.num_entities = num_entities;
        }
        if num_relations > self.num_relations {
            let (old, extra) = (self.num_relations, num_relations - self.num_relations);
            // Layout [forward | inverse]: new rows go at the end of each half.
            let rows = to_vec(self.net.relations.val());
            let bias = to_vec1(self.net.relation_bias.val());
            let mut r = Vec::with_capacity(2 * num_relations * d);
            let mut b = Vec::with_capacity(2 * num_relations);
            for half in 0..2 {
                r.extend_from_slice(&rows[half * old * d..(half + 1) * old * d]);
                r.extend(normal_table(extra, d, std, rng));
                b.extend_from_slice(&bias[half * old..(half + 1) * old]);
                b.extend(std::iter::repeat_n(0.0, extra));
            }
            self.net.relations = net::param2(r, 2 * num_relations, d, &dev);
            self.net.relation_bias = net::param1(b, &dev);
            let rows = to_vec(self.net.decoder.val());
            let mut w = Vec::with_capacity(2 * num_relations * d);
            for half in 0..2 {
                w.extend_from_slice(&rows[half * old * d..(half + 1) * old * d]);
                w.extend(net::decoder_rows(extra, d, rng));
            }
            self.net.decoder = net::param2(w, 2 * num_relations, d, &dev);
            self.num_relations = num_relations;
        }
    }

    /// Adds the category names the vocabulary lacks (fresh token rows); returns each of
    /// `categories`' ids mapped into the vocabulary.
    pub fn learn_categories(&mut self, categories: &Categories, rng: &mut impl Rng) -> Vec<u32> {
        let mut fresh = Vec::new();
        for name in &categories.names {
            if !self.categories.contains(name) {
                self.categories.push(name.clone());
                fresh.push(name);
            }
        }
        if !fresh.is_empty() {
            let c = self.config.walk_config();
            let rows = normal_table(fresh.len(), c.d_model, init_std(&c), rng);
            self.net.special = extend(&self.net.special, rows, c.d_model);
        }
        self.category_map(categories)
    }

    /// Adds a map for every feature group the model lacks; returns, for each of `groups`, the
    /// model's group (`None` for one whose width differs from the model's).
    pub fn learn_feature_groups(
        &mut self,
        groups: &[FeatureGroup],
        rng: &mut impl Rng,
    ) -> Vec<Option<usize>> {
        let c = self.config.walk_config();
        groups
            .iter()
            .map(|g| {
                if let Some(i) = self.feature_group(&g.category, &g.kind) {
                    return (self.feature_groups[i].width == g.width).then_some(i);
                }
                self.net
                    .features
                    .push(WalkNet::feature_map(&c, g.width, &cpu(), rng));
                self.feature_groups.push(g.clone());
                Some(self.feature_groups.len() - 1)
            })
            .collect()
    }

    /// The model's group for a category's features of one kind.
    pub fn feature_group(&self, category: &str, kind: &str) -> Option<usize> {
        self.feature_groups
            .iter()
            .position(|g| g.category == category && g.kind == kind)
    }

    /// Each of `categories`' ids as a vocabulary id (0, "unknown entity", for a name the
    /// model never saw).
    pub fn category_map(&self, categories: &Categories) -> Vec<u32> {
        categories
            .names
            .iter()
            .map(|n| {
                self.categories
                    .iter()
                    .position(|c| c == n)
                    .map_or(0, |i| i as u32)
            })
            .collect()
    }

    pub(crate) fn net(&self) -> &WalkNet {
        &self.net
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            entities: self.num_entities,
            relations: self.num_relations,
            categories: self.categories.len(),
        }
    }
}

fn cpu() -> Device {
    Device::flex()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

fn to_vec1(t: Tensor<1>) -> Vec<f32> {
    to_vec(t)
}

fn extend(p: &Param<Tensor<2>>, rows: Vec<f32>, d: usize) -> Param<Tensor<2>> {
    let mut data = to_vec(p.val());
    data.extend(rows);
    let n = data.len() / d;
    net::param2(data, n, d, &cpu())
}

fn extend1(p: &Param<Tensor<1>>, more: Vec<f32>) -> Param<Tensor<1>> {
    let mut data = to_vec1(p.val());
    data.extend(more);
    net::param1(data, &cpu())
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Writes the weights into `dir` as `weights.bpk` (a burn record) and the category vocabulary
/// and sizes as `walks.json`. (`config.json` and `vocab.json` are the caller's.)
pub fn save(model: &WalkModel, dir: &Path) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(WEIGHTS);
    model
        .net
        .clone()
        .save_file(&path)
        .map_err(|e| corrupt(&path, format!("writing weights: {e:?}")))?;
    let meta = Meta {
        categories: model.categories.clone(),
        feature_groups: model.feature_groups.clone(),
        num_entities: model.num_entities,
        num_relations: model.num_relations,
    };
    let meta_path = dir.join(META);
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| corrupt(&meta_path, e))?;
    std::fs::write(&meta_path, text).map_err(io(&meta_path))
}

/// Loads what [`save`] wrote, for a graph of `num_entities` and `num_relations` (the
/// checkpoint's vocabulary sizes).
pub fn load(
    dir: &Path,
    config: TrainConfig,
    num_entities: usize,
    num_relations: usize,
) -> Result<WalkModel, CheckpointError> {
    let meta_path = dir.join(META);
    let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path).map_err(io(&meta_path))?)
        .map_err(|e| corrupt(&meta_path, e))?;
    if (meta.num_entities, meta.num_relations) != (num_entities, num_relations) {
        return Err(corrupt(
            &meta_path,
            format!(
                "weights for {} entities and {} relations, the vocabulary has {num_entities} and {num_relations}",
                meta.num_entities, meta.num_relations
            ),
        ));
    }
    if meta.categories.first().is_none_or(|c| !c.is_empty()) {
        return Err(corrupt(
            &meta_path,
            "the category vocabulary must start with \"\"",
        ));
    }
    let mut rng = rand::rngs::StdRng::from_seed([0; 32]);
    let shell = WalkModel::init(
        &config,
        num_entities,
        num_relations,
        &meta.categories,
        &mut rng,
    );
    let mut shell = shell;
    shell.learn_feature_groups(&meta.feature_groups, &mut rng);
    let path = dir.join(WEIGHTS);
    let want = shell.sizes();
    let net = shell
        .net
        .try_load_file(&path)
        .map_err(|e| corrupt(&path, format!("{e:?}")))?;
    if net.sizes() != want {
        return Err(corrupt(
            &path,
            format!("tables of {:?}, expected {want:?}", net.sizes()),
        ));
    }
    Ok(WalkModel {
        config,
        num_entities,
        num_relations,
        categories: meta.categories,
        feature_groups: meta.feature_groups,
        net,
    })
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<WalkModel>();
}

#[cfg(test)]
mod feature_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Triple;
    use crate::model::config::{ModelKind, WalkConfig};
    use crate::model::context::{Categories, Context, Step};
    use crate::model::eval::{Known, evaluate};
    use crate::model::train::TrainSet;

    /// 30 entities in two categories: relation 0 links i to i + 1, relation 1 links i to
    /// i + 2 (mod 30), relation 2 links even entities to entity 0.
    fn graph() -> (Vec<Triple>, Categories) {
        let n = 30;
        let mut t = Vec::new();
        for i in 0..n {
            t.push(Triple::new(i, 0, (i + 1) % n));
            t.push(Triple::new(i, 1, (i + 2) % n));
            if i % 2 == 0 && i > 0 {
                t.push(Triple::new(i, 2, 0));
            }
        }
        let cats = Categories::from_names((0..n).map(|i| if i % 2 == 0 { "even" } else { "odd" }));
        (t, cats)
    }

    /// A walk model the unit tests can train in seconds.
    pub(super) fn small() -> WalkConfig {
        WalkConfig::new()
            .with_d_model(32)
            .with_heads(2)
            .with_d_ff(64)
            .with_layers(1)
            .with_batch_size(32)
            .with_lr(0.01)
    }

    fn config(epochs: usize) -> TrainConfig {
        TrainConfig::new()
            .with_model(ModelKind::Walks)
            .with_eval_every(0)
            .with_walks(Some(small().with_context_walks(2).with_walk_length(2)))
            .with_epochs(epochs)
    }

    fn trained(epochs: usize) -> (WalkModel, Vec<Triple>, Categories) {
        trained_with(&config(epochs))
    }

    /// A model trained on [`graph`] with `config`.
    fn trained_with(config: &TrainConfig) -> (WalkModel, Vec<Triple>, Categories) {
        let (t, cats) = graph();
        let known = Known::new(&[&t]);
        let set = TrainSet {
            num_entities: 30,
            num_relations: 3,
            train: &t,
            valid: &[],
            known: &known,
            refuted: &[],
        };
        let out = train(config, &set, &cats, None, &Device::flex(), &mut |_| {}).expect("trains");
        (out.model, t, cats)
    }

    #[test]
    fn learns_a_small_graph() {
        let (model, t, cats) = trained(150);
        let context = Context::new(30, 3, &t, cats);
        let scorer = model.scorer(&Device::flex(), &context);
        // Ranked without a filter: relations 0 and 1 have one answer per query.
        let probe: Vec<Triple> = t.iter().filter(|x| x.relation < 2).copied().collect();
        let mrr = evaluate(&scorer, &probe, &Known::default(), 64).tail.mrr;
        // Random ranking of 30 entities gives about 0.13.
        assert!(mrr > 0.45, "tail MRR {mrr}");
    }

    /// A sampled softmax over each relation's range, with sparse updates of the entity
    /// table and a fixed query budget per epoch (120 of the 172 training queries), learns the
    /// graph as the full softmax does, and sinks every entity outside a relation's range.
    #[test]
    fn a_sampled_softmax_learns_and_keeps_to_the_range() {
        let mut c = config(150);
        c.walks = c.walks.map(|w| {
            w.with_sampled_negatives(Some(8))
                .with_queries_per_epoch(Some(120))
        });
        let (model, t, cats) = trained_with(&c);
        let context = Context::new(30, 3, &t, cats);
        let scorer = model.scorer(&Device::flex(), &context);
        let probe: Vec<Triple> = t.iter().filter(|x| x.relation < 2).copied().collect();
        let mrr = evaluate(&scorer, &probe, &Known::default(), 64).tail.mrr;
        assert!(mrr > 0.45, "tail MRR {mrr}");
        // Relation 2's answers are all even: odd entities are outside its range.
        let scores = scorer.tails(&[(4, 2)]);
        for (e, s) in scores.iter().enumerate() {
            if e % 2 == 1 {
                assert!(*s < -1_000.0, "odd entity {e} scored {s}");
            } else {
                assert!(s.abs() < 1_000.0, "even entity {e} scored {s}");
            }
        }
        // Relation 0 ranges over both categories: nothing sunk.
        assert!(scorer.tails(&[(4, 0)]).iter().all(|s| s.abs() < 1_000.0));
    }

    #[test]
    fn scores_survive_save_load_grow_and_batching() {
        let (model, t, cats) = trained(2);
        let context = Context::new(30, 3, &t, cats.clone());
        let dev = Device::flex();
        let scorer = model.scorer(&dev, &context);
        let queries = [(3, 0), (4, 1), (3, 4), (0, 5)];
        let together = scorer.tails(&queries);
        for (i, q) in queries.iter().enumerate() {
            let alone = scorer.tails(&[*q]);
            for (a, b) in alone.iter().zip(&together[i * 30..(i + 1) * 30]) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
        // triples() picks the same values as tails().
        let tri = scorer.triples(&[Triple::new(3, 0, 7), Triple::new(4, 1, 2)]);
        assert_eq!(tri, vec![together[7], together[30 + 2]]);

        let dir = tempfile::tempdir().expect("tempdir");
        save(&model, dir.path()).expect("saves");
        let back = load(dir.path(), model.config.clone(), 30, 3).expect("loads");
        assert_eq!(back.categories, model.categories);
        assert_eq!(back.scorer(&dev, &context).tails(&queries), together);
        assert!(load(dir.path(), model.config.clone(), 31, 3).is_err());

        // Grown: 5 more entities and one more relation; the old rows keep their scores.
        let mut grown = model.clone();
        grown.grow(35, 4, &mut rand::rngs::StdRng::seed_from_u64(1));
        let bigger = Context::new(
            35,
            4,
            &t,
            Categories::from_names((0..35).map(|i| if i % 2 == 0 { "even" } else { "odd" })),
        );
        let after = grown.scorer(&dev, &bigger);
        // Relation ids of inverses move from r + 3 to r + 4.
        let moved: Vec<(u32, u32)> = queries
            .iter()
            .map(|&(e, r)| (e, if r >= 3 { r + 1 } else { r }))
            .collect();
        let scores = after.tails(&moved);
        for i in 0..queries.len() {
            for j in 0..30 {
                let (a, b) = (scores[i * 35 + j], together[i * 30 + j]);
                assert!((a - b).abs() < 1e-4, "query {i} entity {j}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn a_new_entity_is_scored_from_its_claims() {
        let (model, t, cats) = trained(2);
        let context = Context::new(30, 3, &t, cats);
        let scorer = model.scorer(&Device::flex(), &context);
        let claims = [Step {
            relation: 0,
            entity: 5,
        }];
        let s = scorer.new_entity_tails("odd", None, &claims, &[0, 1, 3]);
        assert_eq!(s.len(), 3 * 30);
        assert!(s.iter().all(|x| x.is_finite()));
        // Seeded by the query alone: asking again gives the same scores.
        assert_eq!(s, scorer.new_entity_tails("odd", None, &claims, &[0, 1, 3]));
        // Another claim is another context.
        let other = [Step {
            relation: 1,
            entity: 20,
        }];
        assert_ne!(s, scorer.new_entity_tails("odd", None, &other, &[0, 1, 3]));
        let answer = scorer.new_entity_answer("odd", None, &claims);
        assert_eq!(answer.row.len(), 32);
        let s = scorer.tails_with(3, 0, &answer);
        assert_eq!(s.len(), 31);
        // Marginalised over the trained entities it may be: within their scores' range.
        let (lo, hi) = s[..30]
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        assert!(s[30] >= lo && s[30] <= hi, "{} not in [{lo}, {hi}]", s[30]);
    }
}
