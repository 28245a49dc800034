//! The walk model reads entity features: a new entity with no edges at all is placed by its
//! features alone, and the feature maps survive save, load and warm start.

use super::*;
use crate::graph::Triple;
use crate::model::config::ModelKind;
use crate::model::context::{Categories, Context, EntityFeatures};
use crate::model::eval::Known;
use crate::model::train::TrainSet;

/// 60 entities in three clusters plus three hubs (60, 61, 62): each entity `likes` its
/// cluster's hub; a one-hot (plus a little noise) feature vector says the cluster.
fn clusters() -> (Vec<Triple>, Categories) {
    let n = 60u32;
    let triples: Vec<Triple> = (0..n).map(|i| Triple::new(i, 0, n + i % 3)).collect();
    let mut categories =
        Categories::from_names((0..n + 3).map(|i| if i < n { "Compound" } else { "Hub" }));
    let rows: Vec<(u32, Vec<f32>)> = (0..n)
        .map(|i| {
            let mut x = vec![0.05 * ((i % 7) as f32 / 7.0); 3];
            x[(i % 3) as usize] += 1.0;
            (i, x)
        })
        .collect();
    categories.features = EntityFeatures::from_groups([("Compound", "vector", &rows[..])]);
    (triples, categories)
}

fn config() -> TrainConfig {
    TrainConfig::new()
        .with_model(ModelKind::Walks)
        .with_eval_every(0)
        .with_epochs(60)
        .with_walks(Some(
            super::tests::small()
                .with_context_walks(1)
                .with_walk_length(1)
                .with_id_dropout(0.5),
        ))
}

fn train_on(triples: &[Triple], categories: &Categories, warm: Option<WalkModel>) -> WalkModel {
    let known = Known::new(&[triples]);
    let set = TrainSet {
        num_entities: 63,
        num_relations: 1,
        train: triples,
        valid: &[],
        known: &known,
        refuted: &[],
    };
    super::train(
        &config(),
        &set,
        categories,
        warm,
        &Device::flex(),
        &mut |_| {},
    )
    .expect("trains")
    .model
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len())
        .max_by(|&a, &b| x[a].total_cmp(&x[b]))
        .unwrap_or(0)
}

#[test]
fn a_new_entity_without_edges_is_placed_by_its_features() {
    let (triples, categories) = clusters();
    let model = train_on(&triples, &categories, None);
    assert_eq!(model.feature_groups.len(), 1);
    let context = Context::new(63, 1, &triples, categories.clone());
    let scorer = model.scorer(&Device::flex(), &context);
    assert!(scorer.reads_feature("Compound", "vector", 3));
    assert!(!scorer.reads_feature("Compound", "vector", 4));
    assert!(!scorer.reads_feature("Hub", "vector", 3));
    let mut right = 0;
    for c in 0..3 {
        let mut x = vec![0.0f32; 3];
        x[c] = 1.0;
        let s = scorer.new_entity_tails("Compound", Some(("vector", &x)), &[], &[0]);
        if argmax(&s) == 60 + c {
            right += 1;
        }
    }
    assert_eq!(
        right, 3,
        "every cluster's hub comes first from the features alone"
    );
    // Without features the three questions are one question.
    let plain = scorer.new_entity_tails("Compound", None, &[], &[0]);
    let also = scorer.new_entity_tails("Compound", Some(("smiles", &[1.0, 0.0, 0.0])), &[], &[0]);
    assert_eq!(plain, also, "a kind the model does not read is ignored");

    // Warm start keeps the maps (same groups, no new ones).
    let warm = train_on(&triples, &categories, Some(model.clone()));
    assert_eq!(warm.feature_groups, model.feature_groups);
    // Saved and loaded: the same answers.
    let dir = tempfile::tempdir().expect("tempdir");
    save(&model, dir.path()).expect("saves");
    let back = load(dir.path(), model.config.clone(), 63, 1).expect("loads");
    assert_eq!(back.feature_groups, model.feature_groups);
    let x = [0.0f32, 1.0, 0.0];
    let before = scorer.new_entity_tails("Compound", Some(("vector", &x)), &[], &[0]);
    let reloaded = back.scorer(&Device::flex(), &context);
    assert_eq!(
        reloaded.new_entity_tails("Compound", Some(("vector", &x)), &[], &[0]),
        before
    );
}
