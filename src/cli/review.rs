//! `hypograph serve`, `user`, `review` and `retract`: the people side of review stages.

use crate::plugin::Outcome;
use crate::store::{Action, QueueFilter, Review, Role, Store, StoreError, User};
use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Workflow files, for the dashboard's next scheduled runs.
    #[arg(long, default_value = "workflows")]
    pub workflows: std::path::PathBuf,
    /// Serve /metrics to anyone (for a scraper on a trusted network); by default it needs an
    /// admin's bearer token.
    #[arg(long)]
    pub metrics_public: bool,
    /// Where people reach the server (e.g. behind a TLS proxy); an `https://` URL marks the
    /// sign-in cookies `Secure`.
    #[arg(long, value_parser = public_url)]
    pub public_url: Option<String>,
}

/// `--public-url`: an absolute `http://` or `https://` URL.
pub(super) fn public_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(t.to_owned()),
        _ => Err(format!(
            "`{s}` is not an http:// or https:// URL with a host"
        )),
    }
}

/// A bearer token given on the command line or in `HYPOGRAPH_TOKEN`; `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.trim().to_owned()))
    }
}

/// The user behind `token`, checked exactly as the API checks a bearer token for `action`
/// (`Store::authorize`), who must also be `name` when one is given: having the database file
/// is not enough to act as someone.
pub(super) async fn acting_user(
    store: &Store,
    name: Option<&str>,
    token: Option<&Token>,
    action: Action,
) -> anyhow::Result<User> {
    let Some(token) = token.filter(|t| !t.0.is_empty()) else {
        bail!(
            "a token is required: give {}'s token with --token or HYPOGRAPH_TOKEN (printed by `hypograph user add`)",
            name.map_or_else(|| "your".to_owned(), |n| format!("`{n}`"))
        );
    };
    let user = match store.authorize(&token.0, action).await {
        Ok(u) => u,
        Err(StoreError::Unauthorized(m) | StoreError::Forbidden(m)) => {
            bail!("the token is refused: {m}")
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(name) = name
        && user.name != name
    {
        bail!(
            "the token belongs to `{}`, not `{name}`: each user acts with their own token",
            user.name
        );
    }
    Ok(user)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Reviewer,
    Admin,
    Service,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user and print their bearer token (shown once; only its hash is stored).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A service's workflow: the one whose callbacks it may answer (more with `user
        /// scope`). A service without one answers nothing.
        #[arg(long)]
        workflow: Option<String>,
        /// With --workflow: only this stage of it (by name); by default every stage that
        /// takes callbacks.
        #[arg(long, requires = "workflow")]
        stage: Option<String>,
    },
    /// Let a service answer the callbacks of another workflow (or one stage of it).
    Scope {
        name: String,
        #[arg(long)]
        workflow: String,
        #[arg(long)]
        stage: Option<String>,
    },
    /// Revoke a user's token: its API calls and web sessions fail at once (`rotate` issues a
    /// new one).
    Revoke { name: String },
    /// Replace a user's token with a new one, printed once; the old one stops working at once.
    Rotate { name: String },
    /// Disable a user: their token is refused everywhere until `user enable`.
    Disable { name: String },
    /// Enable a disabled user again (with the token they had).
    Enable { name: String },
    /// Users, their roles, state and scopes.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Who changed an account, for the audit page: the command line and the OS user running it.
fn actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        Ok(u) if !u.is_empty() => format!("cli ({u})"),
        _ => "cli".to_owned(),
    }
}

fn scope_of(workflow: String, stage: Option<String>) -> anyhow::Result<crate::store::Scope> {
    if workflow.trim().is_empty() || stage.as_deref().is_some_and(|s| s.trim().is_empty()) {
        bail!("--workflow and --stage need a name");
    }
    Ok(crate::store::Scope { workflow, stage })
}

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// The reviewer (a user created with `hypograph user add`).
    #[arg(long = "as")]
    reviewer: String,
    /// The reviewer's token (as printed by `hypograph user add`).
    #[arg(long, env = "HYPOGRAPH_TOKEN", hide_env_values = true)]
    token: Option<Token>,
    #[arg(long)]
    workflow: Option<String>,
    #[arg(long)]
    relation: Option<String>,
    /// Only hypotheses whose head or tail is this entity.
    #[arg(long)]
    entity: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RetractArgs {
    /// The verdict's id (see `hypograph graph blame` or the API).
    verdict: i64,
    #[arg(long)]
    reason: String,
    /// Who retracts it (an admin); by default the owner of the token.
    #[arg(long)]
    by: Option<String>,
    /// The admin's token (as printed by `hypograph user add`).
    #[arg(long, env = "HYPOGRAPH_TOKEN", hide_env_values = true)]
    token: Option<Token>,
    #[arg(long)]
    json: bool,
}

pub async fn serve(store: &Store, data_dir: &Path, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    eprintln!("hypograph serve: listening on http://{addr}");
    let stop = super::rounds::stop_on_signals();
    let options = crate::server::ServeOptions {
        workflows: Some(args.workflows).filter(|p| p.is_dir()),
        metrics_public: args.metrics_public,
        data_dir: data_dir.to_owned(),
        public_url: args.public_url,
    };
    crate::server::serve(store.clone(), options, listener, stop).await?;
    eprintln!("hypograph serve: stopped");
    Ok(ExitCode::SUCCESS)
}

pub async fn user(store: &Store, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Add {
            name,
            role,
            workflow,
            stage,
        } => {
            let role = match role {
                RoleArg::Reviewer => Role::Reviewer,
                RoleArg::Admin => Role::Admin,
                RoleArg::Service => Role::Service,
            };
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
            if !valid {
                bail!("`{name}` is not a user name (letters, digits, - _ . @; at most 64)");
            }
            let scope = workflow.map(|w| scope_of(w, stage)).transpose()?;
            if scope.is_some() && role != Role::Service {
                bail!(
                    "--workflow scopes a service's callbacks; a {} is not scoped",
                    role.as_str()
                );
            }
            let token = store
                .create_user(&name, role, scope.as_ref(), &actor())
                .await?;
            eprintln!(
                "user `{name}` ({}) created; their token (shown once):",
                role.as_str()
            );
            if role == Role::Service && scope.is_none() {
                eprintln!(
                    "note: `{name}` serves no workflow yet and can answer no callback: `hypograph user scope {name} --workflow W`"
                );
            }
            out!("{token}");
        }
        UserCommand::Scope {
            name,
            workflow,
            stage,
        } => {
            let scope = scope_of(workflow, stage)?;
            store.scope_user(&name, &scope, &actor()).await?;
            eprintln!("`{name}` may now answer callbacks of {scope}");
        }
        UserCommand::Revoke { name } => {
            store.revoke_user(&name, &actor()).await?;
            eprintln!(
                "`{name}`'s token is revoked and their sessions ended; `hypograph user rotate {name}` issues a new one"
            );
        }
        UserCommand::Rotate { name } => {
            let token = store.rotate_user(&name, &actor()).await?;
            eprintln!("`{name}`'s new token (shown once; the old one no longer works):");
            out!("{token}");
        }
        UserCommand::Disable { name } => {
            store.set_disabled(&name, true, &actor()).await?;
            eprintln!("`{name}` is disabled and their sessions ended");
        }
        UserCommand::Enable { name } => {
            store.set_disabled(&name, false, &actor()).await?;
            eprintln!("`{name}` is enabled again");
        }
        UserCommand::List { json } => {
            let users = store.accounts().await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    let state = if u.disabled {
                        "disabled"
                    } else if u.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    let scopes: Vec<String> = u.scopes.iter().map(ToString::to_string).collect();
                    out!(
                        "{}\t{}\t{}\t{state}\t{}",
                        u.name,
                        u.role.as_str(),
                        u.created_at,
                        scopes.join(",")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One key (raw mode on a terminal) or one line's first character (pipes, tests).
fn read_key(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> anyhow::Result<Option<char>> {
    if std::io::stdin().is_terminal() {
        use crossterm::event::{Event, KeyCode, KeyEvent, read};
        crossterm::terminal::enable_raw_mode()?;
        let key = loop {
            match read() {
                Ok(Event::Key(KeyEvent {
                    code: KeyCode::Char(c),
                    ..
                })) => break Ok(Some(c)),
                Ok(Event::Key(KeyEvent {
                    code: KeyCode::Esc, ..
                })) => break Ok(Some('q')),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        crossterm::terminal::disable_raw_mode()?;
        println!();
        return Ok(key?);
    }
    match lines.next() {
        Some(line) => Ok(line?.trim().chars().next().or(Some('s'))),
        None => Ok(None),
    }
}

pub async fn review(store: &Store, args: ReviewArgs) -> anyhow::Result<ExitCode> {
    if store.user_by_name(&args.reviewer).await?.is_none() {
        bail!(
            "no user `{}`: create one with `hypograph user add`",
            args.reviewer
        );
    }
    let user = acting_user(
        store,
        Some(&args.reviewer),
        args.token.as_ref(),
        Action::Review,
    )
    .await?;
    store.ensure_review_indexes().await?;
    let items = store
        .review_queue(
            &user.name,
            &QueueFilter {
                workflow: args.workflow,
                relation: args.relation,
                entity: args.entity,
                limit: 500,
                offset: 0,
            },
        )
        .await?;
    if items.is_empty() {
        out!("nothing waits for {}'s review", user.name);
        return Ok(ExitCode::SUCCESS);
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let (mut done, total) = (0usize, items.len());
    for (n, item) in items.iter().enumerate() {
        let h = &item.hypothesis;
        let name = |n: &str, k: &str| {
            if n.is_empty() {
                k.to_owned()
            } else {
                format!("{n} ({k})")
            }
        };
        out!("");
        out!(
            "[{}/{total}] {} round {} · stage {} · {}/{} reviews",
            n + 1,
            item.workflow,
            item.round_number,
            item.stage_name,
            item.reviews,
            item.quorum
        );
        out!(
            "  {} [{}]  --{}-->  {} [{}]",
            name(&h.head_name, &h.head),
            h.head_category,
            h.relation,
            name(&h.tail_name, &h.tail),
            h.tail_category
        );
        out!(
            "  model probability {:.3} ± {:.3}, acquisition value {:.3} (rank {})",
            h.score,
            h.spread,
            h.acquisition,
            h.rank + 1
        );
        for p in crate::ask::paths::Path::list_of(h.model_paths.as_ref()) {
            out!("  model path: {p}");
        }
        for v in store.verdicts(h.id).await? {
            if let Some(r) = v["evidence"]["rationale"].as_str() {
                out!(
                    "  stage {} said {}: {r}",
                    v["stage"],
                    v["verdict"].as_str().unwrap_or("?")
                );
            }
        }
        print!("  [c]onfirm  [r]efute  [u]nsure  [s]kip  [q]uit > ");
        std::io::stdout().flush()?;
        let verdict = match read_key(&mut lines)? {
            Some('c') => Outcome::Confirmed,
            Some('r') => Outcome::Refuted,
            Some('u') => Outcome::Inconclusive,
            Some('q') | None => break,
            _ => continue,
        };
        let r = store
            .record_review(&Review {
                hypothesis: h.id,
                reviewer: &user,
                verdict,
                confidence: 1.0,
                comment: None,
                client: "cli",
            })
            .await;
        match r {
            Ok(r) => {
                done += 1;
                out!(
                    "  recorded {} ({}/{} reviews{})",
                    verdict.as_str(),
                    r.reviews,
                    r.quorum,
                    if r.escalated {
                        ", reviewers disagree: escalated to an admin"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => out!("  not recorded: {e}"),
        }
    }
    out!(
        "{done} verdict{} recorded",
        if done == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn retract(store: &Store, args: RetractArgs) -> anyhow::Result<ExitCode> {
    if args.reason.trim().is_empty() {
        bail!("a retraction needs a reason");
    }
    let user = acting_user(
        store,
        args.by.as_deref(),
        args.token.as_ref(),
        Action::Retract,
    )
    .await?;
    let r = store
        .retract(args.verdict, &args.reason, &user.name)
        .await?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        out!(
            "verdict {} retracted (retraction {}): hypothesis {} {}{}",
            r.verdict_id,
            r.id,
            r.hypothesis,
            match r.outcome.as_str() {
                "requeued" => "is back in its stage's queue".to_owned(),
                "unchanged" =>
                    "is unchanged: the verdicts still standing decide as before".to_owned(),
                status => format!("is now {status}"),
            },
            r.version
                .map(|v| format!("; version {v} brought the graph in line"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
