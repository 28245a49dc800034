//! The walk transformer (issue 14): UMLS quality beside ComplEx's default, training
//! throughput and where its time goes, walk sampling at scale 0.1, and scoring all tails of one
//! query at 47K entities.
//!
//! Run: `cargo bench --bench walks`. `WALKS_ONLY=umls|sample|score` runs one part;
//! `SYNTH01`/`SYNTH1` point at the synthetic graphs (default `/work/main/target/synth01f` and
//! `synth1f`, made by `python3 ../shared/tools/synth_kg.py --out DIR --scale 0.1|1`).
//! Walk hyperparameters can be overridden: `D LAYERS HEADS FF WALKS WLEN IDDROP MASKP MASKW LR
//! WD BATCH EPOCHS LS DROPOUT ALPHA WPE WARMUP EVAL PATIENCE SAMPLES MINWALKS` (VERBOSE=1 prints
//! each epoch). `WALKS_SAVE=DIR` keeps the trained model, `WALKS_LOAD=DIR` scores a kept one
//! instead of training; `SAMPLES_SWEEP=1,4,16` scores the same weights with other numbers of
//! context samples; `NO_COMPLEX=1` skips ComplEx.

use hypograph::graph::{Interner, Triple};
use hypograph::model::walks::{self, WalkModel};
use hypograph::model::{self, Categories, Context, Known, TrainConfig, TrainSet, WalkConfig};
use std::path::Path;
use std::time::Instant;

fn read(path: &Path, ents: &mut Interner, rels: &mut Interner) -> anyhow::Result<Vec<Triple>> {
    Ok(
        hypograph::graph::tsv::read_triples(path, hypograph::graph::OnInvalid::Fail)?
            .triples_in(ents, rels),
    )
}

fn env<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// The walk config: defaults with the environment's overrides.
fn walk_config() -> TrainConfig {
    let mut w = WalkConfig::new();
    macro_rules! over {
        ($($key:literal => $field:ident),*) => {$(
            if let Some(v) = env($key) { w.$field = v; }
        )*};
    }
    over!("D" => d_model, "LAYERS" => layers, "HEADS" => heads, "FF" => d_ff,
        "WALKS" => context_walks, "WLEN" => walk_length, "IDDROP" => id_dropout,
        "MASKP" => mask_prob, "MASKW" => mask_weight, "LR" => lr, "WD" => weight_decay,
        "BATCH" => batch_size, "DROPOUT" => dropout, "ALPHA" => rarity_alpha,
        "WPE" => walks_per_entity, "WARMUP" => warmup);
    let c = TrainConfig::new()
        .with_model(model::ModelKind::Walks)
        .with_epochs(env("EPOCHS").unwrap_or(model::config::WALK_EPOCHS));
    if let Some(v) = env("SAMPLES") {
        w.samples = Some(v);
    }
    if let Some(v) = env("MINWALKS") {
        w.min_walks = Some(v);
    }
    if let Some(v) = env("BCE") {
        w.bce_weight = Some(v);
    }
    let mut c = c.with_walks(Some(w));
    if let Some(v) = env("LS") {
        c.label_smoothing = v;
    }
    if let Some(v) = env("EVAL") {
        c.eval_every = v;
    }
    if let Some(v) = env("PATIENCE") {
        c.patience = v;
    }
    c
}

fn main() -> anyhow::Result<()> {
    let only = std::env::var("WALKS_ONLY").ok();
    let want = |p: &str| only.as_deref().is_none_or(|o| o == p);
    let threads = rayon::current_num_threads();
    println!("rayon threads: {threads}");
    if want("umls") {
        umls()?;
    }
    if want("sample") {
        sample(&std::env::var("SYNTH01").unwrap_or_else(|_| "/work/main/target/synth01f".into()))?;
    }
    if want("score") {
        score(&std::env::var("SYNTH1").unwrap_or_else(|_| "/work/main/target/synth1f".into()))?;
    }
    Ok(())
}

fn umls() -> anyhow::Result<()> {
    let dir = std::env::var("UMLS_DIR").unwrap_or_else(|_| "data/umls".into());
    let dir = Path::new(&dir);
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let train = read(&dir.join("train.txt"), &mut ents, &mut rels)?;
    let valid = read(&dir.join("valid.txt"), &mut ents, &mut rels)?;
    let test = read(&dir.join("test.txt"), &mut ents, &mut rels)?;
    let known = Known::new(&[&train, &valid, &test]);
    let set = TrainSet {
        num_entities: ents.len(),
        num_relations: rels.len(),
        train: &train,
        valid: &valid,
        known: &known,
        refuted: &[],
    };
    let device = model::default_device();
    println!("\n## UMLS (filtered realistic ranks, both sides, test set)\n");
    println!("| model | test MRR | H@1 | H@10 | epochs (best) | train s | tokens/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    if std::env::var("NO_COMPLEX").is_err() {
        let started = Instant::now();
        let out = model::train(&TrainConfig::new(), &set, None, &device, &mut |_| {})?;
        let secs = started.elapsed().as_secs_f64();
        let m = model::evaluate(&out.model.scorer(&device), &test, &known, 256).both;
        println!(
            "| ComplEx (default) | {:.3} | {:.3} | {:.3} | {} ({}) | {secs:.1} | - |",
            m.mrr,
            m.hits_at_1,
            m.hits_at_10,
            out.history.len(),
            out.best_epoch
        );
    }
    let config = walk_config();
    let wc = config.walk_config();
    eprintln!("walk config: {}", serde_json::to_string(&wc)?);
    let categories = Categories::none(ents.len());
    let verbose = std::env::var("VERBOSE").is_ok();
    let started = Instant::now();
    let out = match std::env::var("WALKS_LOAD") {
        // A saved model (WALKS_SAVE of an earlier run) to measure inference settings alone.
        Ok(dir) => model::TrainOutcome {
            model: walks::load(Path::new(&dir), config.clone(), ents.len(), rels.len())?,
            history: Vec::new(),
            best_epoch: 0,
            best_valid_mrr: None,
            stopped_early: false,
        },
        Err(_) => walks::train(
            &config,
            &set,
            &categories,
            None,
            &device,
            &mut model::on_epochs(|s| {
                if verbose {
                    eprintln!(
                        "epoch {} loss {:.4} valid {:?} {:.1}s (train {:.1}s)",
                        s.epoch, s.loss, s.valid_mrr, s.seconds, s.train_seconds
                    );
                }
            }),
        )?,
    };
    if let Ok(dir) = std::env::var("WALKS_SAVE") {
        walks::save(&out.model, Path::new(&dir))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let context = Context::new(ents.len(), rels.len(), &train, categories);
    let scored = Instant::now();
    let m = model::evaluate(&out.model.scorer(&device, &context), &test, &known, 256).both;
    let score_secs = scored.elapsed().as_secs_f64();
    // Tokens seen by training steps: sequences x length (padding included).
    let train_secs: f64 = out.history.iter().map(|s| s.train_seconds).sum();
    let per_epoch = (2 * train.len()) as f64 + (wc.walks_per_entity * ents.len() as f64).round();
    let tokens = per_epoch * out.history.len() as f64 * walks::sequence_len(&config) as f64;
    println!(
        "| walk transformer | {:.3} | {:.3} | {:.3} | {} ({}) | {secs:.1} | {:.0} |",
        m.mrr,
        m.hits_at_1,
        m.hits_at_10,
        out.history.len(),
        out.best_epoch,
        tokens / train_secs
    );
    let p = walks::phase_seconds();
    // SAMPLES_SWEEP=1,4,8: the same weights scored with other numbers of context samples.
    for v in std::env::var("SAMPLES_SWEEP")
        .unwrap_or_default()
        .split(',')
    {
        let Ok(v) = v.trim().parse::<usize>() else {
            continue;
        };
        let mut other = out.model.clone();
        let mut w = other.config.walk_config();
        w.samples = Some(v);
        other.config.walks = Some(w);
        let t = Instant::now();
        let m = model::evaluate(&other.scorer(&device, &context), &test, &known, 256).both;
        println!(
            "| walk transformer, {v} samples | {:.3} | {:.3} | {:.3} | scored in {:.1} s |",
            m.mrr,
            m.hits_at_1,
            m.hits_at_10,
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "\nwalk training phases (s): sampling + batch {:.1}, forward {:.1}, backward {:.1}, optimizer {:.1}, validation {:.1}; test scoring {score_secs:.1} s ({} queries)",
        p[0],
        p[1],
        p[2],
        p[3],
        out.history
            .iter()
            .map(|s| s.seconds - s.train_seconds)
            .sum::<f64>(),
        2 * test.len()
    );
    Ok(())
}

/// Entities (with categories) and triples of a synthetic graph directory.
fn synth(dir: &Path) -> anyhow::Result<(Context, usize)> {
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
    let triples = read(&dir.join("triples.tsv"), &mut ents, &mut rels)?;
    category.resize(ents.len(), String::new());
    let cats = Categories::from_names(category.iter().map(String::as_str));
    let n = triples.len();
    Ok((Context::new(ents.len(), rels.len(), &triples, cats), n))
}

fn sample(dir: &str) -> anyhow::Result<()> {
    use rand::SeedableRng;
    let started = Instant::now();
    let (context, edges) = synth(Path::new(dir))?;
    let read_secs = started.elapsed().as_secs_f64();
    let wc = WalkConfig::new();
    let started = Instant::now();
    let sampler = walks::sample::Sampler::new(&context, wc.rarity_alpha);
    let build = started.elapsed().as_secs_f64();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let started = Instant::now();
    let mut steps = 0usize;
    let mut out = Vec::new();
    for e in 0..context.num_entities() as u32 {
        out.clear();
        sampler.walk(e, None, wc.walk_length, &[], &mut rng, &mut out);
        steps += out.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "\n## walk sampling, {dir}: {} entities, {edges} edges (read in {read_secs:.1} s)\n",
        context.num_entities()
    );
    println!(
        "sampler built in {:.3} s; one walk of {} steps from every entity: {:.3} s ({steps} steps, {:.2} M steps/s)",
        build,
        wc.walk_length,
        secs,
        steps as f64 / secs / 1e6
    );
    Ok(())
}

fn score(dir: &str) -> anyhow::Result<()> {
    use rand::SeedableRng;
    let (context, edges) = synth(Path::new(dir))?;
    let config = TrainConfig::new().with_model(model::ModelKind::Walks);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let names = context.categories().names.clone();
    let m = WalkModel::init(
        &config,
        context.num_entities(),
        context.num_relations(),
        &names,
        &mut rng,
    );
    let device = model::default_device();
    let scorer = m.scorer(&device, &context);
    let mut times = Vec::new();
    for i in 0..30u32 {
        let started = Instant::now();
        let s = scorer.tails(&[(i * 997 % context.num_entities() as u32, i % 10)]);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s.len(), context.num_entities());
    }
    times.sort_by(f64::total_cmp);
    let started = Instant::now();
    let qs: Vec<(u32, u32)> = (0..256u32).map(|i| (i * 31, i % 10)).collect();
    scorer.tails(&qs);
    let batch_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "\n## scoring, {dir}: {} entities, {edges} edges, untrained model of the default size\n",
        context.num_entities()
    );
    println!(
        "all tails of one query: median {:.1} ms, p90 {:.1} ms (30 queries); 256 queries in one call: {batch_ms:.0} ms ({:.2} ms each)",
        times[times.len() / 2],
        times[times.len() * 9 / 10],
        batch_ms / 256.0
    );
    Ok(())
}
