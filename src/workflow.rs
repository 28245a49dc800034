//! Workflow files: parsing, `${VAR}` interpolation from the environment and validation, with
//! every problem reported as `FILE:LINE:COL: field.path: message`. Knows nothing of running.

mod positions;
pub mod spec;

pub use positions::{Pos, Positions};
pub use spec::*;

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub pos: Option<Pos>,
    /// Dotted field path (`stages[0].plugin`); empty for the whole document.
    pub path: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkflowError {
    pub file: PathBuf,
    pub issues: Vec<Issue>,
}

impl std::fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (line, col) = issue.pos.map_or((1, 1), |p| (p.line, p.col));
            let path = if issue.path.is_empty() {
                "(document)"
            } else {
                &issue.path
            };
            write!(
                f,
                "{}:{line}:{col}: {path}: {}",
                self.file.display(),
                issue.message
            )?;
        }
        Ok(())
    }
}

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
    pub manifests: BTreeMap<String, crate::plugin::manifest::Manifest>,
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
    let text = std::fs::read_to_string(file).map_err(|e| WorkflowError {
        file: file.to_owned(),
        issues: vec![Issue {
            pos: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
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
    let (workflow, structural, positions) = parse_partial::<Workflow>(text, env);
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
    problems.extend(validate(&loaded));
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

/// Parses one YAML document into `T` with `${VAR}` interpolation, reporting every problem
/// with its position. Shared by workflow files and plugin manifests.
pub fn parse_doc<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(T, Positions), WorkflowError> {
    let (doc, issues, positions) = parse_partial::<T>(text, env);
    match doc {
        Some(d) if issues.is_empty() => Ok((d, positions)),
        _ => Err(WorkflowError {
            file: file.to_owned(),
            issues,
        }),
    }
}

/// As far as a document parses: the value (with offending fields taken out) if any, and
/// every problem found, sorted by position.
fn parse_partial<T: serde::de::DeserializeOwned>(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<T>, Vec<Issue>, Positions) {
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let issue = Issue {
                pos: e.location().map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                }),
                path: String::new(),
                message: format!("not valid YAML: {}", strip_location(&e.to_string())),
            };
            return (None, vec![issue], Positions::default());
        }
    };
    let positions = Positions::of(text);
    let mut issues = Vec::new();
    interpolate(&mut value, "", env, &mut issues);
    for issue in &mut issues {
        issue.pos = positions.find(&issue.path);
    }
    let doc = deserialize::<T>(value, &positions, &mut issues);
    issues.sort_by_key(|i| i.pos.map(|p| (p.line, p.col)));
    (doc, issues, positions)
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
        match crate::plugin::manifest::load(&file, env) {
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

/// serde_yaml appends " at line L column C"; the position is printed separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Replaces `${VAR}` in every string. A value that is exactly `${VAR}` takes the variable's
/// YAML type (so `dim: ${DIM}` can be a number).
fn interpolate(
    v: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<Issue>,
) {
    match v {
        Value::String(s) if s.contains("${") => {
            let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    issues.push(Issue {
                        pos: None,
                        path: path.to_owned(),
                        message: "unclosed `${` (write `${NAME}`)".into(),
                    });
                    return;
                };
                let name = &after[..end];
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    issues.push(Issue {
                        pos: None,
                        path: path.to_owned(),
                        message: format!("`${{{name}}}` is not a variable name"),
                    });
                    return;
                }
                match env(name) {
                    Some(val) => out.push_str(&val),
                    None => {
                        issues.push(Issue {
                            pos: None,
                            path: path.to_owned(),
                            message: format!("environment variable `{name}` is not set"),
                        });
                        return;
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *v = match serde_yaml::from_str::<Value>(&out) {
                Ok(typed @ (Value::Number(_) | Value::Bool(_))) if whole => typed,
                _ => Value::String(out),
            };
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, issues);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &p, env, issues);
            }
        }
        _ => {}
    }
}

/// Deserializes, collecting every structural error: after each one the offending field is
/// taken out and the rest is tried again, so one run reports all of them.
fn deserialize<T: serde::de::DeserializeOwned>(
    mut value: Value,
    positions: &Positions,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..50 {
        let result: Result<T, _> = serde_path_to_error::deserialize(value.clone());
        let err = match result {
            Ok(w) => return Some(w),
            Err(e) => e,
        };
        let mut path = err.path().to_string();
        if path == "." {
            path.clear();
        }
        let message = strip_location(&err.inner().to_string());
        // Make sure an unknown field's path names the field itself.
        let target = match message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) if path == field || path.ends_with(&format!(".{field}")) => path.clone(),
            Some(field) if path.is_empty() => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path.clone(),
        };
        // A required field we took out ourselves: its error is already reported, so take
        // out the whole parent instead.
        let consequence = message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
            .is_some_and(|f| {
                let full = if path.is_empty() {
                    f.to_owned()
                } else {
                    format!("{path}.{f}")
                };
                removed.contains(&full)
            });
        if !consequence {
            issues.push(Issue {
                pos: positions.find(&target),
                path: target.clone(),
                message,
            });
        }
        if target.is_empty() || !remove(&mut value, &target) {
            break;
        }
        removed.push(target);
    }
    None
}

/// Removes the node at a dotted path; false when there is none.
fn remove(v: &mut Value, path: &str) -> bool {
    let (parent, last) = match path.rfind(['.', '[']) {
        Some(i) => (&path[..i], &path[i..]),
        None => ("", path),
    };
    let Some(node) = lookup(v, parent) else {
        return false;
    };
    if let Some(index) = last.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let (Value::Sequence(items), Ok(i)) = (node, index.parse::<usize>()) else {
            return false;
        };
        if i < items.len() {
            // Replace rather than remove, so later indices keep their positions; a null
            // item then fails on its own and is removed from the parent next time.
            items.remove(i);
            return true;
        }
        return false;
    }
    let key = last.trim_start_matches('.');
    match node {
        Value::Mapping(m) => m.remove(key).is_some(),
        _ => false,
    }
}

fn lookup<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if path.is_empty() {
        return Some(v);
    }
    let mut cur = v;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = match cur {
                Value::Mapping(m) => m.get_mut(key)?,
                _ => return None,
            };
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            let i: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = match cur {
                Value::Sequence(items) => items.get_mut(i)?,
                _ => return None,
            };
        }
    }
    Some(cur)
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

/// Checks what the types cannot: ranges, cron syntax, plugin settings, files.
fn validate(l: &Loaded) -> Vec<Issue> {
    let w = &l.workflow;
    let mut issues = Vec::new();
    let mut bad = |path: &str, message: String| {
        issues.push(Issue {
            pos: None,
            path: path.to_owned(),
            message,
        })
    };
    let name_ok = !w.name.is_empty()
        && w.name.len() <= 64
        && w.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        bad(
            "name",
            format!(
                "`{}` is not a workflow name (letters, digits, `-` and `_`, at most 64)",
                w.name
            ),
        );
    }
    if let Some(s) = &w.schedule
        && let Err(e) = cron_schedule(s)
    {
        bad("schedule", e);
    }
    if let Some(r) = &w.retrain
        && let Err(e) = cron_schedule(&r.schedule)
    {
        bad("retrain.schedule", e);
    }
    if w.graph.import.is_some() && w.graph.kgx.is_some() {
        bad("graph", "give `import` or `kgx`, not both".into());
    }
    let mut file = |path: &str, p: &Option<PathBuf>, dir: bool| {
        if let Some(p) = p {
            let full = l.resolve(p);
            let ok = if dir { full.is_dir() } else { full.is_file() };
            if !ok {
                issues.push(Issue {
                    pos: None,
                    path: path.to_owned(),
                    message: format!(
                        "{} `{}` not found (paths are relative to the workflow file)",
                        if dir { "directory" } else { "file" },
                        full.display()
                    ),
                });
            }
        }
    };
    file("graph.import", &w.graph.import, false);
    file("graph.kgx", &w.graph.kgx, true);
    file("evaluate.test", &w.evaluate.test, false);
    file("evaluate.valid", &w.evaluate.valid, false);
    for (i, s) in w.stages.iter().enumerate() {
        file(&format!("stages[{i}].truth"), &s.truth, false);
    }
    for (i, f) in w.evaluate.filter.iter().enumerate() {
        file(&format!("evaluate.filter[{i}]"), &Some(f.clone()), false);
    }
    let mut bad = |path: &str, message: String| {
        issues.push(Issue {
            pos: None,
            path: path.to_owned(),
            message,
        })
    };
    let m = &w.model;
    if m.dim == 0 || m.dim > 4096 {
        bad("model.dim", format!("{} is out of range 1..=4096", m.dim));
    }
    if m.epochs == 0 {
        bad("model.epochs", "must be at least 1".into());
    }
    if m.ensemble == 0 || m.ensemble > 32 {
        bad(
            "model.ensemble",
            format!("{} is out of range 1..=32", m.ensemble),
        );
    }
    if !(m.lr > 0.0 && m.lr.is_finite()) {
        bad("model.lr", format!("{} must be positive", m.lr));
    }
    if m.batch_size == 0 {
        bad("model.batch_size", "must be at least 1".into());
    }
    if w.generate.top_k == 0 {
        bad("generate.top_k", "must be at least 1".into());
    }
    if w.generate.max_candidates == Some(0) {
        bad("generate.max_candidates", "must be at least 1".into());
    }
    let r = &w.rank;
    if r.batch == 0 || r.batch > 1_000_000 {
        bad(
            "rank.batch",
            format!("{} is out of range 1..=1000000", r.batch),
        );
    }
    if !(r.beta >= 0.0 && r.beta.is_finite()) {
        bad("rank.beta", format!("{} must be >= 0", r.beta));
    }
    if !(0.0..=1.0).contains(&r.epsilon) {
        bad(
            "rank.epsilon",
            format!("{} is out of range 0..=1", r.epsilon),
        );
    }
    if r.inner == AcquisitionName::Epsilon {
        bad("rank.inner", "an epsilon mix cannot nest another".into());
    }
    if r.max_per_entity == Some(0) {
        bad("rank.max_per_entity", "must be at least 1".into());
    }
    if w.stages.is_empty() && (w.retrain.is_none() || w.schedule.is_some()) {
        bad(
            "stages",
            "a workflow needs at least one stage (only a retrain-only workflow, with `retrain` \
             and no `schedule`, has none)"
                .into(),
        );
    }
    let mut names = std::collections::HashSet::new();
    let last = w.stages.len().saturating_sub(1);
    for (i, s) in w.stages.iter().enumerate() {
        let at = |f: &str| format!("stages[{i}].{f}");
        if !names.insert(s.name.as_str()) {
            bad(
                &at("name"),
                format!("stage name `{}` is used twice", s.name),
            );
        }
        // A stage whose plugin was not found has its error already.
        let Some(kind) = l.kinds.get(i).copied().flatten() else {
            continue;
        };
        let manifest = l.manifests.get(&s.plugin);
        for f in s.foreign_fields(kind) {
            bad(
                &at(f),
                format!("`{f}` is not a setting of the `{}` plugin", kind.name()),
            );
        }
        match (i == last, s.is_final) {
            (true, Some(false)) => bad(&at("final"), "the last stage must be final".into()),
            (false, Some(true)) => bad(
                &at("final"),
                "only the last stage can be final: later stages would never see a hypothesis"
                    .into(),
            ),
            _ => {}
        }
        if let Some(t) = &s.timeout
            && let Err(e) = parse_duration(t)
        {
            bad(&at("timeout"), e);
        }
        if let Some(t) = &s.latency
            && let Err(e) = parse_duration(t)
        {
            bad(&at("latency"), e);
        }
        if let Some(f) = s.flip_rate
            && !(0.0..=1.0).contains(&f)
        {
            bad(&at("flip_rate"), format!("{f} is out of range 0..=1"));
        }
        if let Some(c) = s.cost
            && !(c >= 0.0 && c.is_finite())
        {
            bad(&at("cost"), format!("{c} must be >= 0"));
        }
        if s.batch == 0 {
            bad(&at("batch"), "must be at least 1".into());
        }
        if s.retries > 20 {
            bad(
                &at("retries"),
                format!("{} is out of range 0..=20", s.retries),
            );
        }
        if s.advance.is_empty() && i != last {
            bad(
                &at("advance"),
                "no verdict advances: later stages would never see a hypothesis".into(),
            );
        }
        let from_manifest =
            |f: fn(&crate::plugin::manifest::Manifest) -> bool| manifest.is_some_and(f);
        let required: &[(&str, bool)] = match kind {
            PluginKind::Oracle => &[("truth", s.truth.is_some())],
            PluginKind::Http => &[("url", s.url.is_some() || from_manifest(|m| m.url.is_some()))],
            PluginKind::Llm => &[
                ("endpoint", s.endpoint.is_some()),
                ("model", s.model.is_some()),
            ],
            PluginKind::Command => &[(
                "command",
                s.command.as_ref().is_some_and(|c| !c.is_empty())
                    || from_manifest(|m| m.command.as_ref().is_some_and(|c| !c.is_empty())),
            )],
            PluginKind::Human => &[],
        };
        for (field, present) in required {
            if !present {
                bad(
                    &format!("stages[{i}]"),
                    format!("the `{}` plugin needs `{field}`", kind.name()),
                );
            }
        }
    }
    if let Some(b) = w.stop.budget
        && !(b > 0.0 && b.is_finite())
    {
        bad("stop.budget", format!("{b} must be positive"));
    }
    if w.stop.max_rounds == Some(0) {
        bad("stop.max_rounds", "must be at least 1".into());
    }
    issues
}

/// Relations the workflow names that the graph does not have, as issues.
pub fn check_relations(l: &Loaded, known: &dyn Fn(&str) -> bool) -> Result<(), WorkflowError> {
    let positions = Positions::of(&l.text);
    let issues: Vec<Issue> = l
        .workflow
        .generate
        .relations
        .iter()
        .enumerate()
        .filter(|(_, r)| !known(r))
        .map(|(i, r)| {
            let path = format!("generate.relations[{i}]");
            Issue {
                pos: positions.find(&path),
                path,
                message: format!("relation `{r}` is not in the graph"),
            }
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(WorkflowError {
            file: l.file.clone(),
            issues,
        })
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

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("72h"),
            Ok(std::time::Duration::from_secs(72 * 3600))
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_duration("2"), Ok(std::time::Duration::from_secs(2)));
        assert!(parse_duration("3 weeks").is_err());
    }
}
