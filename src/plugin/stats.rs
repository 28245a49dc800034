//! Plugin calls made by this process, as Prometheus metrics for `/metrics`: a counter per
//! stage, plugin and outcome, and a latency histogram per stage and plugin. Process-wide, so
//! the engine records without a handle and the server (`daemon --bind`) reads the same values.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    stage: String,
    plugin: String,
    /// `ok` or `error`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
    plugin: String,
}

/// 5 ms to about 80 s: an oracle answers in microseconds, an assay service or an LLM in
/// seconds, a command plugin may take a minute.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

struct PluginMetrics {
    calls: Family<CallLabels, Counter>,
    latency: Family<StageLabels, Histogram, fn() -> Histogram>,
}

static METRICS: LazyLock<PluginMetrics> = LazyLock::new(|| PluginMetrics {
    calls: Family::default(),
    latency: Family::new_with_constructor(latency_histogram),
});

/// Records one submission to `plugin` (its name in the workflow) at `stage`.
pub fn record(stage: &str, plugin: &str, ok: bool, seconds: f64) {
    let m = &*METRICS;
    m.calls
        .get_or_create(&CallLabels {
            stage: stage.to_owned(),
            plugin: plugin.to_owned(),
            outcome: if ok { "ok" } else { "error" },
        })
        .inc();
    m.latency
        .get_or_create(&StageLabels {
            stage: stage.to_owned(),
            plugin: plugin.to_owned(),
        })
        .observe(seconds);
}

/// Adds the plugin metrics to a registry being scraped (the families are shared, not copied).
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "plugin_calls",
        "Plugin submissions by stage, plugin and outcome",
        m.calls.clone(),
    );
    registry.register(
        "plugin_call_seconds",
        "Plugin submission latency by stage and plugin",
        m.latency.clone(),
    );
}
