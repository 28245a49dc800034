//! What the types cannot say about a workflow: ranges, cron syntax, durations, files that must
//! exist, and each stage's plugin settings. One function per section of the file; every
//! problem is collected (with its field path; positions are added by the caller).

use super::{AcquisitionName, Issue, Loaded, PluginKind, StageSpec, cron_schedule};
use crate::limits::{self, Range};
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

    /// A number must lie in its setting's range (`crate::limits`).
    fn range<T>(&mut self, path: &str, value: T, range: Range<T>)
    where
        T: Copy + PartialOrd + std::fmt::Display,
    {
        if let Err(why) = range.check(value) {
            self.bad(path, why);
        }
    }

    /// As [`Self::range`], for a setting that may be left out.
    fn optional<T>(&mut self, path: &str, value: Option<T>, range: Range<T>)
    where
        T: Copy + PartialOrd + std::fmt::Display,
    {
        if let Some(v) = value {
            self.range(path, v, range);
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
        self.range(
            "max_attempts",
            w.max_attempts,
            limits::workflow::MAX_ATTEMPTS,
        );
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
        use limits::train as l;
        self.range("model.dim", m.dim, l::DIM);
        self.range("model.negatives", m.negatives, l::NEGATIVES);
        self.range("model.lr", m.lr, l::LR);
        self.range("model.batch_size", m.batch_size, l::BATCH_SIZE);
        // ULTRA's published weights answer as they are: a first training of 0 epochs is
        // zero-shot. Every other kind needs at least one.
        if m.kind == crate::model::ModelKind::Ultra {
            self.range("model.epochs", m.epochs, l::EPOCHS);
        } else {
            self.range("model.epochs", m.epochs, l::FIRST_EPOCHS);
        }
        self.range(
            "model.retrain_epochs",
            m.retrain_epochs,
            limits::workflow::RETRAIN_EPOCHS,
        );
        self.range("model.ensemble", m.ensemble, l::ENSEMBLE);
        if m.walks.is_some() && m.kind != crate::model::ModelKind::Walks {
            self.bad(
                "model.walks",
                format!(
                    "is read only with `kind: walks`, not `{}`",
                    crate::training::kind_name(m.kind)
                ),
            );
        }
        if m.gnn.is_some() && !crate::model::gnn::is_gnn(m.kind) {
            self.bad(
                "model.gnn",
                format!(
                    "is read only with `kind: ultra` or `kind: gnn`, not `{}`",
                    crate::training::kind_name(m.kind)
                ),
            );
        }
        if let Some(g) = &m.gnn {
            for (field, why) in g.config().problems() {
                self.bad(&format!("model.gnn.{field}"), why);
            }
        }
        if let Some(w) = &m.walks {
            for (field, why) in w.apply(crate::model::WalkConfig::new()).problems() {
                self.bad(&format!("model.walks.{field}"), why);
            }
        }
    }

    fn generate_and_rank(&mut self) {
        let w = &self.l.workflow;
        use limits::workflow as l;
        self.range("generate.top_k", w.generate.top_k, l::TOP_K);
        self.optional(
            "generate.max_candidates",
            w.generate.max_candidates,
            l::MAX_CANDIDATES,
        );
        let r = &w.rank;
        self.range("rank.batch", r.batch, l::RANK_BATCH);
        self.range("rank.beta", r.beta, l::BETA);
        self.range("rank.epsilon", r.epsilon, l::PROBABILITY);
        if r.inner == AcquisitionName::Epsilon {
            self.bad("rank.inner", "an epsilon mix cannot nest another");
        }
        self.optional("rank.max_per_entity", r.max_per_entity, l::MAX_PER_ENTITY);
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
        use limits::workflow as l;
        self.optional(&at("flip_rate"), s.flip_rate, l::PROBABILITY);
        self.optional(&at("cost"), s.cost, l::COST);
        self.range(&at("batch"), s.batch, l::STAGE_BATCH);
        self.range(&at("retries"), s.retries, l::RETRIES);
        self.optional(&at("outage"), s.outage, l::OUTAGE);
        self.optional(&at("concurrency"), s.concurrency, l::CONCURRENCY);
        self.optional(&at("breaker"), s.breaker, l::BREAKER);
        self.optional(&at("quorum"), s.quorum, l::QUORUM);
        self.optional(&at("stale_below"), s.stale_below, l::PROBABILITY);
        if let Some(prices) = s.price_per_1k {
            for (j, p) in prices.into_iter().enumerate() {
                self.range(&at(&format!("price_per_1k[{j}]")), p, l::PRICE_PER_1K);
            }
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
        use limits::workflow as l;
        self.optional("stop.budget", stop.budget, l::BUDGET);
        self.optional("stop.max_rounds", stop.max_rounds, l::MAX_ROUNDS);
    }
}
