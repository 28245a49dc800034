//! UMLS quality benchmark: trains each shipped configuration on train.txt, early-stops on
//! valid.txt, and reports filtered test MRR and Hits@k (both sides, realistic rank) with the
//! time per epoch.
//!
//! Run: `cargo bench --bench umls` (`UMLS_DIR` picks another copy; `UMLS_ONLY=name` one config).

use hypograph::graph::{Interner, Triple};
use hypograph::model::{self, Known, TrainConfig, TrainSet};
use std::path::Path;

fn read(path: &Path, ents: &mut Interner, rels: &mut Interner) -> anyhow::Result<Vec<Triple>> {
    Ok(
        hypograph::graph::tsv::read_triples(path, hypograph::graph::OnInvalid::Fail)?
            .triples_in(ents, rels),
    )
}

pub fn configs() -> Vec<(&'static str, TrainConfig)> {
    use hypograph::model::{LossKind, ModelKind, OptimizerKind, Regime, Regularizer};
    vec![
        ("complex-1vsall (default)", TrainConfig::new()),
        (
            "distmult-1vsall",
            TrainConfig::new()
                .with_model(ModelKind::Distmult)
                .with_dim(256),
        ),
        (
            "rotate-1vsall",
            TrainConfig::new()
                .with_model(ModelKind::Rotate)
                .with_regularizer(Regularizer::None),
        ),
        (
            "complex-negatives-softplus",
            TrainConfig::new()
                .with_regime(Regime::Negatives)
                .with_loss(LossKind::Softplus)
                .with_negatives(32)
                .with_optimizer(OptimizerKind::Adam)
                .with_lr(0.01)
                .with_batch_size(512)
                .with_regularizer(Regularizer::None),
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::var("UMLS_DIR").unwrap_or_else(|_| "data/umls".into());
    let dir = Path::new(&dir);
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let train = read(&dir.join("train.txt"), &mut ents, &mut rels)?;
    let valid = read(&dir.join("valid.txt"), &mut ents, &mut rels)?;
    let test = read(&dir.join("test.txt"), &mut ents, &mut rels)?;
    let known = Known::new(&[&train, &valid, &test]);
    let only = std::env::var("UMLS_ONLY").ok();
    println!("| config | test MRR | H@1 | H@3 | H@10 | epochs | s/epoch |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let over = |c: TrainConfig| -> TrainConfig {
        let get = |k: &str| std::env::var(k).ok();
        let mut c = c;
        if let Some(v) = get("BATCH").and_then(|v| v.parse().ok()) {
            c.batch_size = v;
        }
        if let Some(v) = get("LR").and_then(|v| v.parse().ok()) {
            c.lr = v;
        }
        if let Some(v) = get("EPOCHS").and_then(|v| v.parse().ok()) {
            c.epochs = v;
        }
        if let Some(v) = get("REG").and_then(|v| v.parse().ok()) {
            c.reg_weight = v;
        }
        if let Some(v) = get("DIM").and_then(|v| v.parse().ok()) {
            c.dim = v;
        }
        c
    };
    for (name, config) in configs() {
        let config = over(config);
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        let set = TrainSet {
            num_entities: ents.len(),
            num_relations: rels.len(),
            train: &train,
            valid: &valid,
            known: &known,
            refuted: &[],
        };
        let device = model::default_device();
        let out = model::train(
            &config,
            &set,
            None,
            &device,
            &mut model::on_epochs(|s| {
                if std::env::var("VERBOSE").is_ok() {
                    eprintln!(
                        "{name} epoch {} loss {:.4} valid {:?} {:.2}s",
                        s.epoch, s.loss, s.valid_mrr, s.seconds
                    );
                }
            }),
        )?;
        let scorer = out.model.scorer(&device);
        let m = model::evaluate(&scorer, &test, &known, 256).both;
        let secs: f64 =
            out.history.iter().map(|s| s.seconds).sum::<f64>() / out.history.len() as f64;
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {} (best {}) | {:.3} |",
            m.mrr,
            m.hits_at_1,
            m.hits_at_3,
            m.hits_at_10,
            out.history.len(),
            out.best_epoch,
            secs
        );
    }
    Ok(())
}
