//! `hypograph ask`: a prompt file or one entity's flags in, a ranked answer out.

use crate::ask::{Answer, Asker, Basis, Flags, Problem, prompt};
use crate::store::{Action, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// A prompt file (YAML): entities, edges, context, predict, top. Or use the flags below
    /// for one entity.
    prompt: Option<PathBuf>,
    /// The new entity's id.
    #[arg(long)]
    entity: Option<String>,
    /// Its category (one of the graph's).
    #[arg(long)]
    category: Option<String>,
    /// Its display name.
    #[arg(long)]
    name: Option<String>,
    /// Its structure, for compounds.
    #[arg(long)]
    smiles: Option<String>,
    /// Its protein or nucleic-acid sequence.
    #[arg(long)]
    sequence: Option<String>,
    /// Its feature vector, comma-separated.
    #[arg(long)]
    vector: Option<String>,
    /// A claimed edge, 'HEAD RELATION TAIL' (repeatable).
    #[arg(long = "edge")]
    edges: Vec<String>,
    /// Known entities of interest (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    context: Vec<String>,
    /// Relations to predict (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    relations: Vec<String>,
    /// What to predict, e.g. 'my-mol treats ?' (repeatable; default: every relation).
    #[arg(long)]
    predict: Vec<String>,
    /// Rows in the answer.
    #[arg(long)]
    top: Option<usize>,
    /// Model id (default: the newest).
    #[arg(long)]
    model: Option<i64>,
    #[arg(long)]
    json: bool,
    /// Send the answer into this workflow (its file) as pinned candidates of its next round,
    /// with the new entities as a graph version of their own.
    #[arg(long, value_name = "WORKFLOW")]
    submit: Option<PathBuf>,
    /// Rows to submit, by rank (comma-separated; default: every row shown).
    #[arg(long, value_delimiter = ',', requires = "submit")]
    pick: Vec<usize>,
    /// Add the prompt's edges to the graph as facts named as yours, instead of submitting
    /// them for review.
    #[arg(long = "assert", requires = "submit")]
    assert_edges: bool,
    /// A reviewer's or admin's token (as printed by `hypograph user add`).
    #[arg(long, env = "HYPOGRAPH_TOKEN", hide_env_values = true)]
    token: Option<super::review::Token>,
}

pub async fn ask(store: &Store, data_dir: &Path, args: AskArgs) -> anyhow::Result<ExitCode> {
    let (prompt, origin) = match &args.prompt {
        Some(path) => {
            if args.entity.is_some() || !args.edges.is_empty() {
                anyhow::bail!("give a prompt file or --entity/--edge flags, not both");
            }
            let (mut p, o) = prompt::read(path)?;
            if let Some(top) = args.top {
                p.top = top;
            }
            (p, o)
        }
        None => prompt::from_flags(&Flags {
            entity: args.entity.clone(),
            category: args.category.clone(),
            name: args.name.clone(),
            smiles: args.smiles.clone(),
            sequence: args.sequence.clone(),
            vector: args.vector.clone(),
            edges: args.edges.clone(),
            context: args.context.clone(),
            relations: args.relations.clone(),
            predict: args.predict.clone(),
            top: args.top,
        })?,
    };
    // Check who submits, and where to, before any work.
    let target = match &args.submit {
        Some(file) => {
            let user =
                super::review::acting_user(store, None, args.token.as_ref(), Action::Ask).await?;
            let loaded = super::rounds::load(file)?;
            Some((loaded.workflow.name.clone(), user.name))
        }
        None => None,
    };
    let asker = Asker::load(store, data_dir, args.model).await?;
    let prompt = std::sync::Arc::new(prompt);
    let p = prompt.clone();
    let (answer, origin) = tokio::task::spawn_blocking(move || {
        let answer = asker.answer(&p, &origin);
        (answer, origin)
    })
    .await?;
    let answer = answer?;
    let submitted = match &target {
        Some((workflow, user)) => {
            let s = crate::ask::submission(
                &prompt,
                &answer,
                &args.pick,
                args.assert_edges,
                workflow,
                user,
            )
            .map_err(|p| anyhow::anyhow!("--pick: {}", p.message))?;
            match store.submit_ask(&s).await {
                Ok(summary) => Some(summary),
                // Located like the prompt's other problems: the entity's line or flag.
                Err(e @ crate::store::StoreError::EntityExists { index, .. }) => {
                    let at = format!("entities[{index}].id");
                    return Err(origin.locate(vec![Problem::new(at, e.to_string())]).into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    if args.json {
        let mut v = serde_json::to_value(&answer)?;
        if let Some(s) = &submitted {
            v["submitted"] = serde_json::to_value(s)?;
        }
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print(&answer);
        if let (Some(s), Some((workflow, _))) = (&submitted, &target) {
            out!("");
            let version = s.version.map_or("no new graph version".to_owned(), |v| {
                format!("graph version {v}")
            });
            out!(
                "submitted to `{workflow}` (submission {}): {} row(s) wait for its next round; {version}",
                s.submission,
                s.pinned.len()
            );
            for k in &s.already_known {
                out!(
                    "  not submitted: {} {} {}: {}",
                    k.triple[0],
                    k.triple[1],
                    k.triple[2],
                    k.reason
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn basis_text(b: Basis) -> &'static str {
    match b {
        Basis::Edges => "claimed edges",
        Basis::Features => "FEATURES ONLY (a prior, not evidence)",
        Basis::CategoryMean => "CATEGORY ONLY (a prior, not evidence)",
    }
}

fn print(a: &Answer) {
    out!(
        "model {} on graph version {}: {} candidates scored in {:.0} ms",
        a.model,
        a.graph_version,
        a.candidates,
        a.seconds * 1000.0
    );
    for e in &a.entities {
        let prior = e
            .prior
            .as_deref()
            .map_or(String::new(), |k| format!(", prior from {k}"));
        out!(
            "{} ({}{}): placed on {}, {} claimed edge(s){prior}",
            e.id,
            if e.category.is_empty() {
                "no category"
            } else {
                &e.category
            },
            if e.name.is_empty() {
                String::new()
            } else {
                format!(", {}", e.name)
            },
            basis_text(e.basis),
            e.edges
        );
        if !e.similar.is_empty() {
            let like: Vec<String> = e
                .similar
                .iter()
                .map(|s| format!("{} {:.2}", crate::cli::named(&s.id, &s.name), s.similarity))
                .collect();
            out!("  behaves like: {}", like.join(", "));
        }
    }
    out!("");
    out!("rank  probability  spread  triple");
    for r in &a.rows {
        let flag = if r.no_edges {
            "  [no edges: prior only]"
        } else {
            ""
        };
        out!(
            "{:>4}  {:>11.3}  {:>6.3}  {} {} {}{flag}",
            r.rank,
            r.probability,
            r.spread,
            crate::cli::named(&r.head, &r.head_name),
            r.relation,
            crate::cli::named(&r.tail, &r.tail_name)
        );
        for p in &r.paths {
            out!("                           via {p}");
        }
    }
    if !a.claims.is_empty() {
        out!("");
        out!(
            "claims (* in paths; not graph facts until reviewed or asserted), with the prior's probability:"
        );
        for c in &a.claims {
            out!(
                "  {} {} {}  ({:.3} ± {:.3})",
                crate::cli::named(&c.head, &c.head_name),
                c.relation,
                crate::cli::named(&c.tail, &c.tail_name),
                c.prior_probability,
                c.prior_spread
            );
        }
    }
}
