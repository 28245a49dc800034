//! hypograph against PyKEEN on UMLS: the same model and settings trained by both in one run;
//! prints test MRR, Hits@10, training seconds and the speed ratio. Run `benches/vs_pykeen.sh`
//! (it prepares PyKEEN); `PYKEEN_PYTHON` names the interpreter that has it.

use hypograph::graph::{Interner, Triple};
use hypograph::model::{
    self, Known, LossKind, ModelKind, OptimizerKind, Regime, Regularizer, TrainConfig, TrainSet,
};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn read(path: &Path, ents: &mut Interner, rels: &mut Interner) -> anyhow::Result<Vec<Triple>> {
    Ok(
        hypograph::graph::tsv::read_triples(path, hypograph::graph::OnInvalid::Fail)?
            .triples_in(ents, rels),
    )
}

struct Case {
    name: &'static str,
    ours: TrainConfig,
    theirs: serde_json::Value,
}

fn cases() -> Vec<Case> {
    let seed = 42;
    let best = TrainConfig::new()
        .with_epochs(100)
        .with_eval_every(0)
        .with_patience(0)
        .with_seed(seed);
    let plain = TrainConfig::new()
        .with_model(ModelKind::Complex)
        .with_dim(128)
        .with_regime(Regime::Negatives)
        .with_loss(LossKind::Softplus)
        .with_negatives(32)
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(0.01)
        .with_batch_size(512)
        .with_regularizer(Regularizer::None)
        .with_epochs(100)
        .with_eval_every(0)
        .with_patience(0)
        .with_seed(seed);
    vec![
        Case {
            name: "best: ComplEx 128, 1-vs-all CE (ls 0.1), Adagrad 0.1, N3 0.01, batch 512, 100 epochs",
            theirs: serde_json::json!({
                "regime": "one-vs-all", "dim": best.dim, "epochs": best.epochs, "batch": best.batch_size,
                "lr": best.lr, "optimizer": "adagrad", "label_smoothing": best.label_smoothing,
                "regularizer": "n3", "reg_weight": best.reg_weight, "seed": seed,
            }),
            ours: best,
        },
        Case {
            name: "plain: ComplEx 128, 32 negatives, softplus, Adam 0.01, batch 512, 100 epochs",
            theirs: serde_json::json!({
                "regime": "negatives", "dim": 128, "epochs": plain.epochs, "batch": plain.batch_size,
                "lr": plain.lr, "optimizer": "adam", "negatives": plain.negatives, "loss": "softplus",
                "regularizer": null, "seed": seed,
            }),
            ours: plain,
        },
    ]
}

fn main() -> anyhow::Result<()> {
    let python =
        std::env::var("PYKEEN_PYTHON").unwrap_or_else(|_| "target/pykeen-venv/bin/python".into());
    let dir = Path::new("data/umls");
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let train = read(&dir.join("train.txt"), &mut ents, &mut rels)?;
    let valid = read(&dir.join("valid.txt"), &mut ents, &mut rels)?;
    let test = read(&dir.join("test.txt"), &mut ents, &mut rels)?;
    let known = Known::new(&[&train, &valid, &test]);
    println!(
        "| configuration | PyKEEN MRR | PyKEEN H@10 | PyKEEN train s | hypograph MRR | hypograph H@10 | hypograph train s | speed-up |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for case in cases() {
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
        let set = TrainSet {
            num_entities: ents.len(),
            num_relations: rels.len(),
            train: &train,
            valid: &[],
            known: &known,
            refuted: &[],
        };
        let device = model::default_device();
        let started = Instant::now();
        let trained = model::train(&case.ours, &set, None, &device, &mut |_| {})?;
        let ours_s = started.elapsed().as_secs_f64();
        let m = model::evaluate(&trained.model.scorer(&device), &test, &known, 256).both;
        let theirs_s = theirs["train_seconds"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {:.3} | {:.3} | {:.1} | {:.3} | {:.3} | {:.1} | {:.1}x |",
            case.name,
            theirs["mrr"].as_f64().unwrap_or(f64::NAN),
            theirs["hits_at_10"].as_f64().unwrap_or(f64::NAN),
            theirs_s,
            m.mrr,
            m.hits_at_10,
            ours_s,
            theirs_s / ours_s
        );
    }
    Ok(())
}
