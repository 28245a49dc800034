//! Plugin manifests (`plugins/NAME.yaml`): an external assay service or program described once
//! and named by workflow stages. Settings a stage gives override the manifest's.

use crate::spec_parse::schema::DURATION;
use crate::spec_parse::{self, DocError, Issue, duration};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    Http,
    Command,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub kind: ManifestKind,
    #[serde(default)]
    pub description: String,
    /// http: where batches are posted.
    #[serde(default)]
    pub url: Option<String>,
    /// http: where pending jobs are polled.
    #[serde(default)]
    pub poll_url: Option<String>,
    /// command: program and arguments (relative programs resolve against the manifest's
    /// directory, which is also the working directory).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// "30s", "5m", ...
    #[serde(default)]
    #[schemars(extend("pattern" = DURATION))]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Cost per hypothesis.
    #[serde(default)]
    pub cost: Option<f64>,
    /// Environment variables the plugin needs; a missing one is a validation error.
    #[serde(default)]
    pub env: Vec<String>,
    /// The variable holding the bearer token sent to the service.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Where the manifest was read from.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The JSON Schema of manifests, for editors and `hypograph schema manifest`.
pub fn schema() -> serde_json::Value {
    spec_parse::schema::generate::<Manifest>("hypograph plugin manifest")
}

/// Reads and checks a manifest.
pub fn load(file: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Manifest, DocError> {
    let text = spec_parse::read(file)?;
    let (mut m, positions): (Manifest, _) = spec_parse::parse_doc(file, &text, env)?;
    m.dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut issues = Vec::new();
    let mut bad = |path: &str, message: String| {
        issues.push(Issue {
            pos: positions.find(path),
            path: path.to_owned(),
            message,
        })
    };
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if m.name != stem {
        bad(
            "name",
            format!("`{}` must match the file name `{stem}`", m.name),
        );
    }
    match m.kind {
        ManifestKind::Http if m.url.is_none() => bad("url", "an http plugin needs `url`".into()),
        ManifestKind::Command if m.command.as_ref().is_none_or(|c| c.is_empty()) => {
            bad("command", "a command plugin needs `command`".into())
        }
        _ => {}
    }
    if let Some(t) = &m.timeout
        && let Err(e) = duration::parse(t)
    {
        bad("timeout", e);
    }
    if m.concurrency == Some(0) {
        bad("concurrency", "must be at least 1".into());
    }
    for (i, var) in m.env.iter().enumerate() {
        if env(var).is_none() {
            bad(
                &format!("env[{i}]"),
                format!("environment variable `{var}` is not set"),
            );
        }
    }
    if issues.is_empty() {
        Ok(m)
    } else {
        Err(DocError {
            file: file.to_owned(),
            issues,
        })
    }
}
