//! Per-stage plugin call counts and latency in this process, for `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, Default)]
pub struct StageStats {
    pub ok: u64,
    pub errors: u64,
    pub seconds: f64,
}

static STATS: Mutex<BTreeMap<String, StageStats>> = Mutex::new(BTreeMap::new());

/// Records one submission.
pub fn record(stage: &str, ok: bool, seconds: f64) {
    if let Ok(mut m) = STATS.lock() {
        let e = m.entry(stage.to_owned()).or_default();
        if ok {
            e.ok += 1;
        } else {
            e.errors += 1;
        }
        e.seconds += seconds;
    }
}

pub fn snapshot() -> Vec<(String, StageStats)> {
    STATS
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}
