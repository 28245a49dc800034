//! `hypograph simulate`: compare acquisition strategies on a graph with hidden truth.

use crate::acquire::Acquisition;
use crate::graph::{Interner, OnInvalid, Triple, kgx, tsv};
use crate::limits;
use crate::model::TrainConfig;
use crate::plot::{Panel, Series};
use crate::simulate::{self, RoundRecord, SimSpec, Strategy, Universe};
use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The graph: a triples TSV, a KGX directory, or a published graph's files with `--format`.
    graph: PathBuf,
    /// Read GRAPH in a published graph's layout (a directory or tarball, as `import --format`).
    #[arg(long, value_enum)]
    format: Option<crate::graph::table::Format>,
    /// The truth the oracle answers from (default: hide `--hide` of the graph's triples).
    #[arg(long)]
    hidden: Option<PathBuf>,
    /// Fraction of the graph hidden as the truth when no `--hidden` file is given.
    #[arg(long, default_value_t = 0.5)]
    hide: f64,
    /// Only these relations (comma-separated names) are hidden, become the oracle's truth
    /// and are proposed; every other triple stays in the training graph.
    #[arg(long, value_delimiter = ',')]
    relations: Vec<String>,
    /// The fixed test split (triples TSV); without it, a seeded tenth of the hidden truth is
    /// set aside for it (and never proposed).
    #[arg(long)]
    test: Option<PathBuf>,
    /// The validation split each round's calibration is fitted on (triples TSV); without it,
    /// a seeded tenth of the hidden truth is set aside for it (and never proposed).
    #[arg(long)]
    valid: Option<PathBuf>,
    /// How member scores become probabilities (as in a workflow's `model.calibration`).
    #[arg(long, value_enum, default_value_t = crate::model::calibrate::Method::Platt)]
    calibration: crate::model::calibrate::Method,
    /// Keep the validation-fitted probabilities as they are: no recalibration on the earlier
    /// rounds' verdicts (as a workflow's `rank.verdict_calibration: false`).
    #[arg(long)]
    no_verdict_calibration: bool,
    /// Comma-separated: random, popularity (the two baselines: no model), greedy, uncertainty,
    /// spread, bald, ucb, thompson, epsilon.
    #[arg(
        long,
        default_value = "random,popularity,greedy,uncertainty,ucb,thompson,bald"
    )]
    strategies: String,
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Hypotheses tested per round.
    #[arg(long, default_value_t = 50, value_parser = limits::flag(limits::workflow::RANK_BATCH))]
    batch: usize,
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[arg(long, default_value_t = 3, value_parser = limits::flag(limits::train::ENSEMBLE))]
    ensemble: usize,
    #[arg(long, default_value_t = 3, value_parser = limits::flag(limits::workflow::MAX_PER_ENTITY))]
    max_per_entity: usize,
    /// Candidates kept per relation before acquisition.
    #[arg(long, default_value_t = 200, value_parser = limits::flag(limits::workflow::TOP_K))]
    top_k: usize,
    /// Start from a saved TrainConfig JSON (e.g. a checkpoint's config.json, or one with a
    /// `walks` section for `--model walks`); the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The model kind every member is.
    #[arg(long, value_enum, default_value_t = crate::model::ModelKind::Complex)]
    model: crate::model::ModelKind,
    #[arg(long, default_value_t = 64, value_parser = limits::flag(limits::train::DIM))]
    dim: usize,
    /// Training regime (`negatives` for graphs of 100K+ triples).
    #[arg(long, value_enum, default_value_t = crate::model::Regime::OneVsAll)]
    regime: crate::model::Regime,
    /// Negatives per batch in the `negatives` regime.
    #[arg(long, default_value_t = 256, value_parser = limits::flag(limits::train::NEGATIVES))]
    negatives: usize,
    #[arg(long, default_value_t = 512, value_parser = limits::flag(limits::train::BATCH_SIZE))]
    batch_size: usize,
    /// Epochs of the first training in each run.
    #[arg(long, default_value_t = 40, value_parser = limits::flag(limits::train::EPOCHS))]
    epochs: usize,
    /// Epochs of each warm retrain.
    #[arg(long, default_value_t = 5, value_parser = limits::flag(limits::workflow::RETRAIN_EPOCHS))]
    retrain_epochs: usize,
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    #[arg(long, default_value_t = 0.1)]
    epsilon: f64,
    /// Cost of one oracle verdict.
    #[arg(long, default_value_t = 1.0)]
    cost: f64,
    /// Where rounds.csv, summary.md and curves.svg go.
    #[arg(long, default_value = "simulation")]
    out: PathBuf,
}

fn strategy(name: &str, beta: f64, epsilon: f64) -> anyhow::Result<Strategy> {
    Ok(Strategy::Acquire(match name {
        "popularity" => return Ok(Strategy::Popularity),
        "random" => Acquisition::Random,
        "greedy" => Acquisition::Greedy,
        "uncertainty" => Acquisition::Uncertainty,
        "spread" => Acquisition::Spread,
        "bald" => Acquisition::Bald,
        "ucb" => Acquisition::Ucb { beta },
        "thompson" => Acquisition::Thompson,
        "epsilon" => Acquisition::Epsilon {
            epsilon,
            inner: Box::new(Acquisition::Greedy),
        },
        other => bail!(
            "unknown strategy `{other}` (random, popularity, greedy, uncertainty, spread, bald, ucb, thompson, epsilon)"
        ),
    }))
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let strategies = args
        .strategies
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| strategy(s, args.beta, args.epsilon).map(|a| (s.to_owned(), a)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let graph = if let Some(format) = args.format {
        let Some(preset) = format.preset() else {
            bail!(
                "--format {format:?}: simulate reads a published layout (hetionet, primekg, drkg, monarch); a triples file or KGX directory needs no --format"
            );
        };
        let preset = Some(preset);
        crate::graph::table::read_table(
            &crate::graph::table::TableSource {
                edges: args.graph.clone(),
                nodes: None,
                preset,
                map: crate::graph::table::ColumnMap::default(),
                options: None,
            },
            OnInvalid::Fail,
        )?
    } else if args.graph.is_dir() {
        kgx::read_kgx(
            &args.graph.join("nodes.tsv"),
            &args.graph.join("edges.tsv"),
            OnInvalid::Fail,
        )?
    } else {
        tsv::read_triples(&args.graph, OnInvalid::Fail)?
    };
    let (mut ents, mut rels) = (Interner::new(), Interner::new());
    let observed = graph.triples_in(&mut ents, &mut rels);
    let category: std::collections::HashMap<&str, &str> = graph
        .entities
        .iter()
        .map(|e| (e.key.as_str(), e.category.as_str()))
        .collect();
    let hidden_file = match &args.hidden {
        Some(p) => Some(tsv::read_triples(p, OnInvalid::Fail)?.triples_in(&mut ents, &mut rels)),
        None if !(0.0..1.0).contains(&args.hide) => bail!("--hide must be in [0, 1)"),
        None => None,
    };
    let only = relation_ids(&args.relations, &rels)?;
    let (visible, hidden) = match hidden_file {
        Some(hidden) if only.is_empty() => (observed, hidden),
        // A truth file's triples of other relations are facts the model may learn from.
        Some(hidden) => {
            let (hidden, rest): (Vec<Triple>, Vec<Triple>) =
                hidden.into_iter().partition(|t| only.contains(&t.relation));
            (observed.into_iter().chain(rest).collect(), hidden)
        }
        None => hide(observed, &only, args.hide),
    };
    let before = (ents.len(), rels.len());
    // Split triples naming keys the graph lacks cannot be ranked: count and drop them.
    let mut read_split = |path: &Path, what: &str| -> anyhow::Result<Vec<Triple>> {
        let batch = tsv::read_triples(path, OnInvalid::Fail)?;
        let all = batch.triples_in(&mut ents, &mut rels);
        let kept: Vec<Triple> = all
            .into_iter()
            .filter(|t| {
                (t.head as usize) < before.0
                    && (t.tail as usize) < before.0
                    && (t.relation as usize) < before.1
            })
            .collect();
        let dropped = batch.triples.len() - kept.len();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                split = what,
                "triples naming keys outside the graph were skipped"
            );
        }
        Ok(kept)
    };
    let (test, hidden) = match &args.test {
        Some(p) => (read_split(p, "test")?, hidden),
        None => set_aside(hidden, 0x7e57, 1),
    };
    let (valid, hidden) = match &args.valid {
        Some(p) => (read_split(p, "valid")?, hidden),
        None => set_aside(hidden, 0xca1b, 0),
    };
    if hidden.is_empty() {
        bail!("nothing is left hidden for the oracle: raise --hide or name more --relations");
    }
    if test.is_empty() {
        bail!("the test split is empty: give --test FILE or hide more triples");
    }
    let universe = Universe {
        entities: (0..before.0 as u32)
            .map(|i| {
                let key = ents.key(i);
                (key.into(), category.get(key).copied().unwrap_or("").into())
            })
            .collect(),
        relations: (0..before.1 as u32).map(|i| rels.key(i).into()).collect(),
    };
    let base = match &args.config {
        Some(p) => {
            use burn::config::Config;
            TrainConfig::load(p).map_err(|e| anyhow::anyhow!("{}: {e:?}", p.display()))?
        }
        None => TrainConfig::new(),
    };
    let spec = SimSpec {
        strategies,
        seeds: (0..args.seeds).collect(),
        rounds: args.rounds,
        batch: args.batch,
        max_per_entity: (args.max_per_entity > 0).then_some(args.max_per_entity),
        top_k: args.top_k,
        ensemble: args.ensemble,
        config: base
            .with_model(args.model)
            .with_dim(args.dim)
            .with_epochs(args.epochs)
            .with_regime(args.regime)
            .with_negatives(args.negatives)
            .with_batch_size(args.batch_size),
        relations: only.clone(),
        retrain_epochs: args.retrain_epochs,
        cost: args.cost,
        calibration: args.calibration,
        verdict_calibration: !args.no_verdict_calibration,
    };
    let total = (spec.strategies.len() * spec.seeds.len() * spec.rounds) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{spinner} round {pos}/{len} [{bar:30}] {msg} eta {eta}",
    )?);
    let records = simulate::run(
        &universe,
        &visible,
        &hidden,
        &valid,
        &test,
        &spec,
        &mut |r: &RoundRecord| {
            bar.set_message(format!(
                "{} seed {} round {}: {} found, MRR {:.3}",
                r.strategy, r.seed, r.round, r.cumulative_discoveries, r.test_mrr
            ));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    write_outputs(&args.out, &records, &universe, &hidden)?;
    out!("{}", summary(&records));
    out!(
        "wrote {}/rounds.csv, proposed.tsv, truth.tsv, summary.md and curves.svg",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The ids of the relations `--relations` names; an unknown name is an error listing the
/// graph's relations.
fn relation_ids(names: &[String], rels: &Interner) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        match rels.get(name) {
            Some(id) => ids.push(id),
            None => {
                let mut known: Vec<&str> = (0..rels.len() as u32).map(|i| rels.key(i)).collect();
                known.sort_unstable();
                bail!(
                    "unknown relation `{name}` in --relations; the graph has: {}",
                    known.join(", ")
                );
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Hides a seeded `fraction` of the triples of `only` (of every relation when empty) as the
/// oracle's truth; returns (visible, hidden).
fn hide(observed: Vec<Triple>, only: &[u32], fraction: f64) -> (Vec<Triple>, Vec<Triple>) {
    let (mut pool, mut visible): (Vec<Triple>, Vec<Triple>) = if only.is_empty() {
        (observed, Vec::new())
    } else {
        observed
            .into_iter()
            .partition(|t| only.contains(&t.relation))
    };
    pool.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0x5eed));
    let cut = ((1.0 - fraction) * pool.len() as f64).round() as usize;
    let hidden = pool.split_off(cut);
    visible.extend(pool);
    (visible, hidden)
}

/// Sets a seeded tenth (at least `min`, leaving one) of the hidden truth aside as an
/// evaluation split; returns (split, rest).
fn set_aside(mut hidden: Vec<Triple>, seed: u64, min: usize) -> (Vec<Triple>, Vec<Triple>) {
    hidden.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let cut = (hidden.len() / 10)
        .max(min)
        .min(hidden.len().saturating_sub(1));
    let split = hidden.split_off(hidden.len() - cut);
    (split, hidden)
}

/// Mean over seeds of each strategy's value at each round.
fn per_round(
    records: &[RoundRecord],
    f: impl Fn(&RoundRecord) -> f64,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut sums: BTreeMap<String, BTreeMap<usize, (f64, f64, usize)>> = BTreeMap::new();
    for r in records {
        let e = sums
            .entry(r.strategy.clone())
            .or_default()
            .entry(r.round)
            .or_insert((0.0, 0.0, 0));
        e.0 += r.cumulative_cost;
        e.1 += f(r);
        e.2 += 1;
    }
    sums.into_iter()
        .map(|(s, rounds)| {
            let points = rounds
                .values()
                .map(|&(c, v, n)| (c / n as f64, v / n as f64))
                .collect();
            (s, points)
        })
        .collect()
}

fn summary(records: &[RoundRecord]) -> String {
    let last = records.iter().map(|r| r.round).max().unwrap_or(0);
    let mut rows: BTreeMap<&str, Vec<&RoundRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.round == last) {
        rows.entry(&r.strategy).or_default().push(r);
    }
    let mut md = format!(
        "| strategy | discoveries after {last} rounds (mean ± sd over seeds) | mean precision | test MRR | ECE | Brier | top-200 ECE (predicted / observed) | cost |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for (s, rs) in rows {
        let k = rs.len() as f64;
        let d: Vec<f64> = rs.iter().map(|r| r.cumulative_discoveries as f64).collect();
        let mean = d.iter().sum::<f64>() / k;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k).sqrt();
        let precision = records
            .iter()
            .filter(|r| r.strategy == s)
            .map(|r| r.precision)
            .sum::<f64>()
            / records.iter().filter(|r| r.strategy == s).count().max(1) as f64;
        let mrr = rs.iter().map(|r| r.test_mrr).sum::<f64>() / k;
        let cost = rs.iter().map(|r| r.cumulative_cost).sum::<f64>() / k;
        let calibration = |f: fn(&RoundRecord) -> Option<f64>| {
            let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            if v.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.3}", v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        let (ece, brier) = (calibration(|r| r.ece), calibration(|r| r.brier));
        // Over every round of the strategy: each round's best candidates against the truth.
        let every: Vec<&RoundRecord> = records.iter().filter(|r| r.strategy == s).collect();
        let avg = |f: fn(&RoundRecord) -> Option<f64>| {
            let v: Vec<f64> = every.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let top = match (
            avg(|r| r.top_ece),
            avg(|r| r.top_predicted),
            avg(|r| r.top_observed),
        ) {
            (Some(e), Some(p), Some(o)) => format!("{e:.3} ({p:.3} / {o:.3})"),
            _ => "–".to_owned(),
        };
        md.push_str(&format!(
            "| {s} | {mean:.1} ± {sd:.1} | {precision:.3} | {mrr:.3} | {ece} | {brier} | {top} | {cost:.0} |\n"
        ));
    }
    let n = records.len().max(1) as f64;
    let phase = |f: fn(&RoundRecord) -> f64| records.iter().map(f).sum::<f64>() / n;
    md.push_str(&format!(
        "\nmean seconds per round: generate {:.2}, rank {:.2}, oracle + ingest {:.3}, warm retrain {:.2}\n",
        phase(|r| r.generate_s),
        phase(|r| r.rank_s),
        phase(|r| r.judge_s),
        phase(|r| r.train_s)
    ));
    md
}

fn write_outputs(
    dir: &Path,
    records: &[RoundRecord],
    universe: &Universe,
    hidden: &[Triple],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let line = |t: &Triple| {
        format!(
            "{}\t{}\t{}",
            universe.entities[t.head as usize].0,
            universe.relations[t.relation as usize],
            universe.entities[t.tail as usize].0
        )
    };
    let truth: std::collections::HashSet<Triple> = hidden.iter().copied().collect();
    let mut proposed = String::from("strategy\tseed\tround\thead\trelation\ttail\tconfirmed\n");
    for r in records {
        for t in &r.proposed {
            proposed.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                r.strategy,
                r.seed,
                r.round,
                line(t),
                u8::from(truth.contains(t))
            ));
        }
    }
    std::fs::write(dir.join("proposed.tsv"), proposed)?;
    let mut text = String::new();
    for t in hidden {
        text.push_str(&line(t));
        text.push('\n');
    }
    std::fs::write(dir.join("truth.tsv"), text)?;
    let mut csv = String::from(
        "strategy,seed,round,tested,confirmed,precision,cumulative_discoveries,cumulative_cost,test_mrr,ece,brier,top_ece,top_predicted,top_observed,generate_s,rank_s,judge_s,train_s\n",
    );
    for r in records {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.4},{:.4},{:.4},{:.4}\n",
            r.strategy,
            r.seed,
            r.round,
            r.tested,
            r.confirmed,
            r.precision,
            r.cumulative_discoveries,
            r.cumulative_cost,
            r.test_mrr,
            r.ece.map(|x| x.to_string()).unwrap_or_default(),
            r.brier.map(|x| x.to_string()).unwrap_or_default(),
            r.top_ece.map(|x| x.to_string()).unwrap_or_default(),
            r.top_predicted.map(|x| x.to_string()).unwrap_or_default(),
            r.top_observed.map(|x| x.to_string()).unwrap_or_default(),
            r.generate_s,
            r.rank_s,
            r.judge_s,
            r.train_s
        ));
    }
    std::fs::write(dir.join("rounds.csv"), csv)?;
    std::fs::write(dir.join("summary.md"), summary(records))?;
    let panel = |title: &str, y: &str, f: &dyn Fn(&RoundRecord) -> f64, range| Panel {
        title: title.into(),
        x_label: "labels spent (cost)".into(),
        y_label: y.into(),
        series: per_round(records, f)
            .into_iter()
            .map(|(name, points)| Series {
                name,
                points,
                markers: true,
            })
            .collect(),
        y_range: range,
    };
    let svg = crate::plot::svg(&[
        panel(
            "true edges discovered (mean over seeds)",
            "discoveries",
            &|r| r.cumulative_discoveries as f64,
            None,
        ),
        panel("test MRR (filtered)", "MRR", &|r| r.test_mrr, None),
    ]);
    std::fs::write(dir.join("curves.svg"), svg)?;
    Ok(())
}
