//! `hypograph pinned`: rows submitted from `ask`, waiting for a workflow's next round, taken
//! into one (with their hypothesis's status), or skipped with the reason.

use crate::store::{PinnedInfo, PinnedStatus, Store};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum PinnedCommand {
    /// Every submitted row, oldest first: waiting, claimed by a round, or skipped.
    List {
        /// Only this workflow's rows.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(store: &Store, cmd: PinnedCommand) -> anyhow::Result<ExitCode> {
    let PinnedCommand::List { workflow, json } = cmd;
    let rows = store.pinned(workflow.as_deref()).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out!("no pinned rows");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:>5}  {:<12}  {:<10}  {:<10}  {:>5}  {:>6}  {:<10}  triple / outcome",
        "id",
        "workflow",
        "asker",
        "origin",
        "p",
        "spread",
        "status"
    );
    for p in &rows {
        out!(
            "{:>5}  {:<12}  {:<10}  {:<10}  {:>5.3}  {:>6.3}  {:<10}  {} {} {}{}",
            p.id,
            p.workflow,
            p.asker,
            p.origin.as_str(),
            p.probability,
            p.spread,
            p.status.as_str(),
            crate::cli::named(&p.head, &p.head_name),
            p.relation,
            crate::cli::named(&p.tail, &p.tail_name),
            outcome(p)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a row went: its round and hypothesis, or why it was skipped.
fn outcome(p: &PinnedInfo) -> String {
    let round = p
        .round_number
        .map(|n| format!("round {n}"))
        .unwrap_or_default();
    match p.status {
        PinnedStatus::Waiting => String::new(),
        PinnedStatus::Claimed => format!(
            "  ({round}, hypothesis {}: {})",
            p.hypothesis.unwrap_or_default(),
            p.hypothesis_status.as_deref().unwrap_or("?")
        ),
        PinnedStatus::Skipped => format!(
            "  ({round}: {})",
            p.reason.as_deref().unwrap_or("no reason recorded")
        ),
    }
}
