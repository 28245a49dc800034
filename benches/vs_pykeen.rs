//! hypograph against PyKEEN on UMLS, time to quality: PyKEEN configurations known to train
//! well, each run by PyKEEN and by hypograph with the same settings (same sampling: negatives
//! per positive), plus hypograph's default configuration, in one run. Both sides rank the
//! test split every few epochs with the training clock stopped; the table gives PyKEEN's best
//! test MRR, its training seconds to first reach it, and hypograph's training seconds to first
//! reach that MRR. Run `benches/vs_pykeen.sh` (it prepares PyKEEN); `PYKEEN_PYTHON` names the
//! interpreter that has it. `VS_PYKEEN_ONLY=rotate|complex` runs one configuration;
//! `VS_PYKEEN_EPOCHS=N` shortens every run to N epochs (then it is not the reference
//! configuration: the table says so).

use hypograph::graph::{Interner, Triple};
use hypograph::model::{
    self, EpochStats, Known, LossKind, ModelKind, NegativeSharing, OptimizerKind, Regime,
    Regularizer, TrainConfig, TrainSet,
};
use std::path::Path;
use std::process::Command;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn read(path: &Path, ents: &mut Interner, rels: &mut Interner) -> anyhow::Result<Vec<Triple>> {
    Ok(
        hypograph::graph::tsv::read_triples(path, hypograph::graph::OnInvalid::Fail)?
            .triples_in(ents, rels),
    )
}

const SEED: u64 = 42;

/// One PyKEEN configuration and hypograph's run of the same settings.
struct Case {
    key: &'static str,
    name: &'static str,
    ours: TrainConfig,
    theirs: serde_json::Value,
}

fn cases(epochs: Option<usize>) -> Vec<Case> {
    // PyKEEN's RotatE recipe for UMLS: dim 200, 64 negatives per positive, self-adversarial
    // loss (margin 6, temperature 1), Adam 0.002, batch 256, 300 epochs.
    let rotate = TrainConfig::new()
        .with_model(ModelKind::Rotate)
        .with_dim(200)
        .with_regime(Regime::Negatives)
        .with_negative_sharing(NegativeSharing::PerPositive)
        .with_negatives(64)
        .with_loss(LossKind::Adversarial)
        .with_margin(6.0)
        .with_adversarial_temperature(1.0)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(0.002)
        .with_regularizer(Regularizer::None)
        .with_batch_size(256)
        .with_epochs(epochs.unwrap_or(300))
        .with_seed(SEED);
    // ComplEx 1-vs-all (PyKEEN's LCWA with inverse triples), cross-entropy, Adam 0.01, no
    // regularizer: the 1vsAll + cross-entropy training Ruffinelli et al. (ICLR 2020) found
    // strongest for ComplEx. PyKEEN's side is initialized Xavier-normal: with its default
    // N(0, 1) initialization the same settings reach test MRR 0.22 (0.21 with N3 + Adagrad).
    let complex = TrainConfig::new()
        .with_model(ModelKind::Complex)
        .with_dim(128)
        .with_regime(Regime::OneVsAll)
        .with_loss(LossKind::CrossEntropy)
        .with_label_smoothing(0.0)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(0.01)
        .with_regularizer(Regularizer::None)
        .with_batch_size(512)
        .with_epochs(epochs.unwrap_or(100))
        .with_seed(SEED);
    vec![
        Case {
            key: "rotate",
            name: "RotatE 200, 64 negatives per positive, NSSA (margin 6, T 1), Adam 0.002, batch 256, 300 epochs",
            theirs: serde_json::json!({
                "model": "rotate", "regime": "negatives", "dim": rotate.dim,
                "epochs": rotate.epochs, "batch": rotate.batch_size, "lr": rotate.lr,
                "optimizer": "adam", "negatives": rotate.negatives, "loss": "nssa",
                "margin": rotate.margin, "adversarial_temperature": rotate.adversarial_temperature,
                "regularizer": null, "seed": SEED, "eval_every": 10,
            }),
            ours: rotate,
        },
        Case {
            key: "complex",
            name: "ComplEx 128, 1-vs-all CE, Adam 0.01, no regularizer, batch 512, 100 epochs (PyKEEN: Xavier-normal init)",
            theirs: serde_json::json!({
                "model": "complex", "regime": "one-vs-all", "dim": complex.dim,
                "epochs": complex.epochs, "batch": complex.batch_size, "lr": complex.lr,
                "optimizer": "adam", "label_smoothing": 0.0, "regularizer": null,
                "seed": SEED, "eval_every": 5, "init": "xavier_normal_",
            }),
            ours: complex,
        },
    ]
}

/// hypograph's run: test MRR after every epoch, against the cumulative training seconds
/// (validation off the clock).
struct Curve {
    points: Vec<(usize, f64, f64)>,
}

impl Curve {
    fn final_mrr(&self) -> f64 {
        self.points.last().map_or(f64::NAN, |p| p.2)
    }
    fn best(&self) -> (usize, f64, f64) {
        self.points
            .iter()
            .copied()
            .fold((0, f64::NAN, f64::NEG_INFINITY), |b, p| {
                if p.2 > b.2 { p } else { b }
            })
    }
    /// Training seconds at the first evaluation reaching `target`.
    fn seconds_to(&self, target: f64) -> Option<(usize, f64)> {
        self.points
            .iter()
            .find(|p| p.2 >= target)
            .map(|p| (p.0, p.1))
    }
}

fn ours(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    device: &burn::tensor::Device,
) -> anyhow::Result<Curve> {
    let config = config.clone().with_eval_every(1).with_patience(0);
    let mut points = Vec::new();
    let mut clock = 0.0;
    model::train(
        &config,
        set,
        None,
        device,
        &mut model::on_epochs(|s: &EpochStats| {
            clock += s.train_seconds;
            if let Some(mrr) = s.valid_mrr {
                points.push((s.epoch, clock, mrr));
            }
        }),
    )?;
    Ok(Curve { points })
}

fn main() -> anyhow::Result<()> {
    let python =
        std::env::var("PYKEEN_PYTHON").unwrap_or_else(|_| "target/pykeen-venv/bin/python".into());
    let only = std::env::var("VS_PYKEEN_ONLY").ok();
    let epochs: Option<usize> = std::env::var("VS_PYKEEN_EPOCHS")
        .ok()
        .map(|v| v.parse())
        .transpose()?;
    let dir = Path::new("data/umls");
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let train = read(&dir.join("train.txt"), &mut ents, &mut rels)?;
    let valid = read(&dir.join("valid.txt"), &mut ents, &mut rels)?;
    let test = read(&dir.join("test.txt"), &mut ents, &mut rels)?;
    let known = Known::new(&[&train, &valid, &test]);
    // The test split stands in for validation so that the training loop ranks it after every
    // epoch, off its training clock; the MRRs reported are each evaluation's own (the best
    // weights the loop keeps are not used).
    let set = TrainSet {
        num_entities: ents.len(),
        num_relations: rels.len(),
        train: &train,
        valid: &test,
        known: &known,
        refuted: &[],
    };
    let device = model::default_device();
    if let Some(e) = epochs {
        println!(
            "**VS_PYKEEN_EPOCHS={e}: every run shortened, not the reference configurations.**\n"
        );
    }
    let default = TrainConfig::new().with_seed(SEED);
    let default = match epochs {
        Some(e) => default.with_epochs(e),
        None => default,
    };
    let default_curve = ours(&default, &set, &device)?;
    let (db_epoch, db_s, db_mrr) = default_curve.best();
    eprintln!(
        "hypograph default: final test MRR {:.3}, best {db_mrr:.3} at epoch {db_epoch} ({db_s:.1} s)",
        default_curve.final_mrr()
    );
    println!(
        "| PyKEEN configuration | PyKEEN test MRR (best, at epoch) | PyKEEN train s to its best | hypograph side | hypograph test MRR (final; best) | hypograph train s to PyKEEN's best | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for case in cases(epochs) {
        if only.as_deref().is_some_and(|o| o != case.key) {
            continue;
        }
        let out = Command::new(&python)
            .arg("benches/pykeen_umls.py")
            .arg(case.theirs.to_string())
            .env("OMP_NUM_THREADS", "2")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pykeen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout)?;
        let theirs: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("{}"))?;
        let num = |k: &str| theirs[k].as_f64().unwrap_or(f64::NAN);
        let (t_best, t_s) = (num("best_mrr"), num("seconds_to_best"));
        eprintln!(
            "PyKEEN {}: final MRR {:.3}, best {t_best:.3} at epoch {} ({t_s:.1} s of {:.1} s training)",
            case.key,
            num("mrr"),
            theirs["best_epoch"],
            num("train_seconds")
        );
        let same = ours(&case.ours, &set, &device)?;
        for (side, curve) in [
            ("same configuration", &same),
            (
                "hypograph default (ComplEx 1-vs-all, 100 epochs)",
                &default_curve,
            ),
        ] {
            let (_, _, best) = curve.best();
            let (to, ratio) = match curve.seconds_to(t_best) {
                Some((epoch, s)) => (
                    format!("{s:.1} (epoch {epoch})"),
                    format!("{:.1}x", t_s / s),
                ),
                None => ("not reached".to_owned(), "-".to_owned()),
            };
            println!(
                "| {} | {:.3} (best {t_best:.3}, epoch {}) | {t_s:.1} | {side} | {:.3}; {best:.3} | {to} | {ratio} |",
                case.name,
                num("mrr"),
                theirs["best_epoch"],
                curve.final_mrr(),
            );
        }
    }
    Ok(())
}
