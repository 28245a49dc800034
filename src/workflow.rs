//! Workflow files: the YAML spec, its validation (every problem reported as
//! `FILE:LINE:COL: field.path: message`), the plugins its stages name, and the check of its
//! graph source (`source`). Knows nothing of running rounds.

pub mod source;
pub mod spec;
mod validate;

pub use crate::spec_parse::duration::parse as parse_duration;
pub use crate::spec_parse::{DocError as WorkflowError, Issue, Pos, Positions};
pub use spec::*;

use crate::plugin::manifest::{self, Manifest, ManifestKind};
use crate::spec_parse;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A parsed, interpolated and validated workflow.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub workflow: Workflow,
    /// The file as written, before interpolation: what rounds store (it holds no secrets).
    pub text: String,
    pub file: PathBuf,
    /// Relative paths in the workflow are relative to this directory.
    pub dir: PathBuf,
    /// The manifests the stages name, by plugin name.
    pub manifests: BTreeMap<String, Manifest>,
    /// Each stage's plugin kind (built-in, or its manifest's).
    pub kinds: Vec<Option<PluginKind>>,
}

impl Loaded {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }
}

/// Reads and validates a workflow file, with the process environment for `${VAR}`.
pub fn load(file: &Path) -> Result<Loaded, WorkflowError> {
    let text = spec_parse::read(file)?;
    parse(file, &text, &|name| std::env::var(name).ok())
}

/// Parses and validates `text` (named `file` in errors), looking variables up with `env`.
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, WorkflowError> {
    let fail = |issues: Vec<Issue>| WorkflowError {
        file: file.to_owned(),
        issues,
    };
    let (workflow, structural, positions) = spec_parse::parse_partial::<Workflow>(text, env);
    let Some(workflow) = workflow else {
        return Err(fail(structural));
    };
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let plugins_dir = match &workflow.plugins_dir {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => dir.join(p),
        None => dir.join("..").join("plugins"),
    };
    let mut loaded = Loaded {
        workflow,
        text: text.to_owned(),
        file: file.to_owned(),
        dir,
        manifests: BTreeMap::new(),
        kinds: Vec::new(),
    };
    let mut problems = resolve_plugins(&mut loaded, &plugins_dir, env);
    problems.extend(validate::validate(&loaded));
    for issue in &mut problems {
        issue.pos = positions.find(&issue.path);
    }
    // Fields taken out for structural errors fall back to defaults: whatever the checks say
    // about them (or below them) repeats an error already reported.
    let shadowed = |p: &str| {
        structural.iter().any(|s| {
            !s.path.is_empty()
                && (p == s.path
                    || p.starts_with(&format!("{}.", s.path))
                    || p.starts_with(&format!("{}[", s.path)))
        })
    };
    let mut all = structural.clone();
    all.extend(problems.into_iter().filter(|p| !shadowed(&p.path)));
    all.sort_by_key(|i| i.pos.map(|p| (p.line, p.col)));
    if all.is_empty() {
        Ok(loaded)
    } else {
        Err(fail(all))
    }
}

/// Finds each stage's plugin: a built-in kind, or a manifest `<plugins dir>/<name>.yaml`.
fn resolve_plugins(
    l: &mut Loaded,
    plugins_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<Issue> {
    let mut issues = Vec::new();
    for (i, stage) in l.workflow.stages.iter().enumerate() {
        if let Some(kind) = PluginKind::builtin(&stage.plugin) {
            l.kinds.push(Some(kind));
            continue;
        }
        let file = plugins_dir.join(format!("{}.yaml", stage.plugin));
        let valid_name = !stage.plugin.is_empty()
            && stage
                .plugin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name || !file.is_file() {
            issues.push(Issue {
                pos: None,
                path: format!("stages[{i}].plugin"),
                message: format!(
                    "unknown plugin `{}` (built-in: oracle, http, command, llm, human; no manifest {})",
                    stage.plugin,
                    file.display()
                ),
            });
            l.kinds.push(None);
            continue;
        }
        match manifest::load(&file, env) {
            Ok(m) => {
                l.kinds.push(Some(m.kind.into()));
                l.manifests.insert(stage.plugin.clone(), m);
            }
            Err(e) => {
                issues.push(Issue {
                    pos: None,
                    path: format!("stages[{i}].plugin"),
                    message: format!("manifest `{}` is invalid:\n{e}", stage.plugin),
                });
                l.kinds.push(None);
            }
        }
    }
    issues
}

/// A cron expression as the `cron` crate takes it: the classic 5 fields get seconds = 0.
pub fn cron_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("bad cron expression `{expr}`: {e}"))
}

/// The JSON Schema of workflow files, for editors and `hypograph schema workflow`.
pub fn schema() -> serde_json::Value {
    spec_parse::schema::generate::<Workflow>("hypograph workflow")
}

impl From<ManifestKind> for PluginKind {
    fn from(k: ManifestKind) -> Self {
        match k {
            ManifestKind::Http => PluginKind::Http,
            ManifestKind::Command => PluginKind::Command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ASSAY_URL" => Some("http://127.0.0.1:9/assay".into()),
            "DIM" => Some("32".into()),
            _ => None,
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("w.yaml"), text, &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_owned).collect(),
        }
    }

    const GOOD: &str = "name: t\nmodel:\n  dim: ${DIM}\nstages:\n  - name: assay\n    plugin: http\n    url: ${ASSAY_URL}\n";

    #[test]
    fn interpolates_with_types() {
        let l = parse(Path::new("w.yaml"), GOOD, &env).expect("valid");
        assert_eq!(l.workflow.model.dim, 32);
        assert_eq!(
            l.workflow.stages[0].url.as_deref(),
            Some("http://127.0.0.1:9/assay")
        );
        assert!(
            l.text.contains("${ASSAY_URL}"),
            "the stored text keeps the reference"
        );
    }

    #[test]
    fn every_structural_error_with_its_line() {
        let text = "name: t\nmodle:\n  dim: 3\nrank:\n  batch: many\nstages:\n  - name: a\n    plugin: oracel\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("w.yaml:2:1: modle: unknown field `modle`"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("w.yaml:5:3: rank.batch"),
            "sorted by line: {e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("w.yaml:5:3: rank.batch: invalid type")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("w.yaml:8:5: stages[0].plugin: unknown plugin `oracel`")),
            "{e:?}"
        );
    }

    #[test]
    fn semantic_errors_name_their_fields() {
        let text = "name: t\nschedule: \"61 * * * * *\"\nstages:\n  - name: a\n    plugin: oracle\n    truth: /nonexistent/truth.tsv\n    flip_rate: 2\n    url: http://x\n";
        let e = errors(text);
        assert!(
            e.iter()
                .any(|l| l.starts_with("w.yaml:2:1: schedule: bad cron expression")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("w.yaml:6:5: stages[0].truth: file")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("w.yaml:7:5: stages[0].flip_rate: 2 is out of range")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|l| l.starts_with(
                "w.yaml:8:5: stages[0].url: `url` is not a setting of the `oracle` plugin"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn missing_variables_and_bad_yaml() {
        let e = errors("name: t\nstages:\n  - name: a\n    plugin: http\n    url: ${NOPE}\n");
        assert_eq!(
            e,
            vec!["w.yaml:5:5: stages[0].url: environment variable `NOPE` is not set"]
        );
        let e = errors("name: t\nstages: [\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("w.yaml:3:1: (document): not valid YAML"),
            "{e:?}"
        );
        let e = errors("name: t\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("w.yaml:1:1: stages: a workflow needs at least one stage"),
            "{e:?}"
        );
    }

    #[test]
    fn five_field_cron_gets_seconds() {
        assert!(cron_schedule("*/5 * * * *").is_ok());
        assert!(cron_schedule("*/5 * * * * *").is_ok());
        assert!(cron_schedule("every day").is_err());
    }
}
