//! `hypograph entity search`: finding entities by name or id.

use crate::store::Store;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Subcommand)]
pub enum EntityCommand {
    /// Entities whose id or name contains TEXT (case-insensitive): ids that start with it
    /// first, then names that do.
    Search {
        text: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(store: &Store, cmd: EntityCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EntityCommand::Search { text, limit, json } => {
            let started = Instant::now();
            let hits = store.search_entities(&text, limit.clamp(1, 10_000)).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&hits)?);
                return Ok(ExitCode::SUCCESS);
            }
            for h in &hits {
                let category = if h.category.is_empty() {
                    "-"
                } else {
                    &h.category
                };
                out!("{}\t{category}\t{}", h.key, h.name);
            }
            tracing::info!(
                found = hits.len(),
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "entity search"
            );
            Ok(if hits.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
