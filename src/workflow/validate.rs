//! What the types cannot say about a workflow: ranges, cron syntax, durations, files that must
//! exist, and each stage's plugin settings. One function per section of the file; every
//! problem is collected (with its field path; positions are added by the caller).

use super::{AcquisitionName, Issue, Loaded, PluginKind, StageSpec, cron_schedule};
use crate::plugin::manifest::Manifest;
use crate::spec_parse::duration;
use std::path::Path;

/// Every problem the types let through.
pub(super) fn validate(l: &Loaded) -> Vec<Issue> {
    let mut c = Checks {
        l,
        issues: Vec::new(),
    };
    c.identity_and_schedules();
    c.files();
    c.model();
    c.generate_and_rank();
    c.stages();
    c.stop();
    c.issues
}

struct Checks<'a> {
    l: &'a Loaded,
    issues: Vec<Issue>,
}

impl Checks<'_> {
    fn bad(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            pos: None,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// A file (or directory) the workflow names must exist, relative to the workflow file.
    fn exists(&mut self, path: &str, p: Option<&Path>, dir: bool) {
        let Some(p) = p else { return };
        let full = self.l.resolve(p);
        let ok = if dir { full.is_dir() } else { full.is_file() };
        if !ok {
            self.bad(
                path,
                format!(
                    "{} `{}` not found (paths are relative to the workflow file)",
                    if dir { "directory" } else { "file" },
                    full.display()
                ),
            );
        }
    }

    /// A duration must parse, and be short enough to be added to the present.
    fn duration(&mut self, path: &str, value: Option<&String>) {
        if let Some(t) = value
            && let Err(e) = duration::parse(t)
        {
            self.bad(path, e);
        }
    }

    fn at_least_one(&mut self, path: &str, value: usize) {
        if value == 0 {
            self.bad(path, "must be at least 1");
        }
    }

    fn identity_and_schedules(&mut self) {
        let w = &self.l.workflow;
        let name_ok = !w.name.is_empty()
            && w.name.len() <= 64
            && w.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            self.bad(
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
            self.bad("schedule", e);
        }
        if let Some(r) = &w.retrain
            && let Err(e) = cron_schedule(&r.schedule)
        {
            self.bad("retrain.schedule", e);
        }
    }

    fn files(&mut self) {
        let w = &self.l.workflow;
        let given = [
            w.graph.import.is_some(),
            w.graph.kgx.is_some(),
            w.graph.fetch.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            self.bad("graph", "give one of `import`, `kgx` and `fetch`");
        }
        if let Some(name) = &w.graph.fetch {
            match crate::fetch::catalog_in_force() {
                Err(e) => self.bad("graph.fetch", e.to_string()),
                Ok(datasets) => {
                    if let Err(e) = crate::fetch::catalog::find(&datasets, name) {
                        self.bad("graph.fetch", e.to_string());
                    }
                }
            }
        }
        // A published graph's files may be given as the directory (or tarball) holding them.
        let import_dir = w.graph.format.is_some()
            && w.graph
                .import
                .as_deref()
                .is_some_and(|p| self.l.resolve(p).is_dir());
        if !import_dir {
            self.exists("graph.import", w.graph.import.as_deref(), false);
        }
        self.exists("graph.kgx", w.graph.kgx.as_deref(), true);
        self.exists("graph.features", w.graph.features.as_deref(), false);
        if w.graph.features.is_some()
            && w.graph.import.is_none()
            && w.graph.kgx.is_none()
            && w.graph.fetch.is_none()
        {
            self.bad(
                "graph.features",
                "features are imported with the graph: give `import` or `kgx` too",
            );
        }
        for (k, v) in &w.graph.map {
            if let Err(e) = crate::graph::table::ColumnMap::default().set(k, v) {
                self.bad(&format!("graph.map.{k}"), e.message);
            }
        }
        if let Some(d) = &w.graph.delimiter
            && let Err(e) = crate::graph::table::parse_delimiter(d)
        {
            self.bad("graph.delimiter", e);
        }
        let table_keys = w.graph.format.is_some()
            || w.graph.nodes.is_some()
            || !w.graph.map.is_empty()
            || w.graph.header.is_some()
            || w.graph.delimiter.is_some();
        if table_keys && w.graph.import.is_none() {
            self.bad(
                "graph",
                "`format`, `nodes`, `map`, `header` and `delimiter` describe `import`: give `import`",
            );
        }
        self.exists("graph.nodes", w.graph.nodes.as_deref(), false);
        if let Some(c) = &w.graph.node_features {
            if w.graph.kgx.is_none() {
                self.bad(
                    "graph.node_features",
                    "node feature columns are read from the KGX nodes file: give `kgx`",
                );
            }
            if c.vector.is_empty() && c.smiles.is_none() && c.sequence.is_none() {
                self.bad(
                    "graph.node_features",
                    "name at least one column (`vector`, `smiles` or `sequence`)",
                );
            }
        }
        self.exists("evaluate.test", w.evaluate.test.as_deref(), false);
        self.exists("evaluate.valid", w.evaluate.valid.as_deref(), false);
        for (i, f) in w.evaluate.filter.iter().enumerate() {
            self.exists(&format!("evaluate.filter[{i}]"), Some(f), false);
        }
        for (i, s) in w.stages.iter().enumerate() {
            self.exists(&format!("stages[{i}].truth"), s.truth.as_deref(), false);
        }
    }

    fn model(&mut self) {
        let m = &self.l.workflow.model;
        if m.dim == 0 || m.dim > 4096 {
            self.bad("model.dim", format!("{} is out of range 1..=4096", m.dim));
        }
        self.at_least_one("model.epochs", m.epochs);
        if m.ensemble == 0 || m.ensemble > 32 {
            self.bad(
                "model.ensemble",
                format!("{} is out of range 1..=32", m.ensemble),
            );
        }
        if !(m.lr > 0.0 && m.lr.is_finite()) {
            self.bad("model.lr", format!("{} must be positive", m.lr));
        }
        self.at_least_one("model.batch_size", m.batch_size);
        if m.walks.is_some() && m.kind != crate::model::ModelKind::Walks {
            self.bad(
                "model.walks",
                format!(
                    "is read only with `kind: walks`, not `{}`",
                    crate::training::kind_name(m.kind)
                ),
            );
        }
        if let Some(w) = &m.walks {
            for (field, why) in w.apply(crate::model::WalkConfig::new()).problems() {
                self.bad(&format!("model.walks.{field}"), why);
            }
        }
    }

    fn generate_and_rank(&mut self) {
        let w = &self.l.workflow;
        self.at_least_one("generate.top_k", w.generate.top_k);
        if let Some(n) = w.generate.max_candidates {
            self.at_least_one("generate.max_candidates", n);
        }
        let r = &w.rank;
        if r.batch == 0 || r.batch > 1_000_000 {
            self.bad(
                "rank.batch",
                format!("{} is out of range 1..=1000000", r.batch),
            );
        }
        if !(r.beta >= 0.0 && r.beta.is_finite()) {
            self.bad("rank.beta", format!("{} must be >= 0", r.beta));
        }
        if !(0.0..=1.0).contains(&r.epsilon) {
            self.bad(
                "rank.epsilon",
                format!("{} is out of range 0..=1", r.epsilon),
            );
        }
        if r.inner == AcquisitionName::Epsilon {
            self.bad("rank.inner", "an epsilon mix cannot nest another");
        }
        if let Some(n) = r.max_per_entity {
            self.at_least_one("rank.max_per_entity", n);
        }
    }

    fn stages(&mut self) {
        let w = &self.l.workflow;
        if w.stages.is_empty() && (w.retrain.is_none() || w.schedule.is_some()) {
            self.bad(
                "stages",
                "a workflow needs at least one stage (only a retrain-only workflow, with \
                 `retrain` and no `schedule`, has none)",
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in w.stages.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                self.bad(
                    &format!("stages[{i}].name"),
                    format!("stage name `{}` is used twice", s.name),
                );
            }
            self.stage(i, s);
        }
    }

    /// One stage's common settings, then what its plugin takes and needs.
    fn stage(&mut self, i: usize, s: &StageSpec) {
        let at = |f: &str| format!("stages[{i}].{f}");
        let last = i + 1 == self.l.workflow.stages.len();
        match (last, s.is_final) {
            (true, Some(false)) => self.bad(&at("final"), "the last stage must be final"),
            (false, Some(true)) => self.bad(
                &at("final"),
                "only the last stage can be final: later stages would never see a hypothesis",
            ),
            _ => {}
        }
        if s.advance.is_empty() && !last {
            self.bad(
                &at("advance"),
                "no verdict advances: later stages would never see a hypothesis",
            );
        }
        self.duration(&at("timeout"), s.timeout.as_ref());
        self.duration(&at("latency"), s.latency.as_ref());
        self.duration(&at("request_timeout"), s.request_timeout.as_ref());
        if let Some(f) = s.flip_rate
            && !(0.0..=1.0).contains(&f)
        {
            self.bad(&at("flip_rate"), format!("{f} is out of range 0..=1"));
        }
        if let Some(c) = s.cost
            && !(c >= 0.0 && c.is_finite())
        {
            self.bad(&at("cost"), format!("{c} must be >= 0"));
        }
        self.at_least_one(&at("batch"), s.batch);
        if s.retries > 20 {
            self.bad(
                &at("retries"),
                format!("{} is out of range 0..=20", s.retries),
            );
        }
        // A stage whose plugin was not found has its error already.
        if let Some(kind) = self.l.kinds.get(i).copied().flatten() {
            self.plugin_settings(i, s, kind, self.l.manifests.get(&s.plugin));
        }
    }

    /// Settings that do not belong to the stage's plugin, and settings it cannot do without
    /// (given by the stage or by its manifest).
    fn plugin_settings(
        &mut self,
        i: usize,
        s: &StageSpec,
        kind: PluginKind,
        manifest: Option<&Manifest>,
    ) {
        for f in s.foreign_fields(kind) {
            self.bad(
                &format!("stages[{i}].{f}"),
                format!("`{f}` is not a setting of the `{}` plugin", kind.name()),
            );
        }
        let from_manifest = |f: fn(&Manifest) -> bool| manifest.is_some_and(f);
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
                self.bad(
                    &format!("stages[{i}]"),
                    format!("the `{}` plugin needs `{field}`", kind.name()),
                );
            }
        }
    }

    fn stop(&mut self) {
        let stop = &self.l.workflow.stop;
        if let Some(b) = stop.budget
            && !(b > 0.0 && b.is_finite())
        {
            self.bad("stop.budget", format!("{b} must be positive"));
        }
        if stop.max_rounds == Some(0) {
            self.bad("stop.max_rounds", "must be at least 1");
        }
    }
}
