//! The range of every numeric setting, in one place: the workflow schema (`minimum`/`maximum`
//! from these constants), `validate`, the `train` flags, and the checks where a value is used
//! (a round's stored workflow, a saved training config) all read them. The bounds stop what
//! can only be a typo or a wrapped number (a 16 PB top-k heap) before any work starts; they
//! are generous on purpose, so a value inside them may still want more memory than a machine
//! has.

use std::fmt;

/// An interval a setting must lie in; NaN lies in none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range<T> {
    pub min: T,
    pub max: T,
    /// `min` itself is excluded (a learning rate of 0 learns nothing).
    pub above_min: bool,
    /// `max` itself is excluded (a dropout of 1 drops everything).
    pub below_max: bool,
}

impl<T> Range<T> {
    /// `min..=max`.
    pub const fn closed(min: T, max: T) -> Self {
        Self {
            min,
            max,
            above_min: false,
            below_max: false,
        }
    }

    /// `(min, max]`.
    pub const fn above(min: T, max: T) -> Self {
        Self {
            min,
            max,
            above_min: true,
            below_max: false,
        }
    }

    /// `[min, max)`.
    pub const fn below(min: T, max: T) -> Self {
        Self {
            min,
            max,
            above_min: false,
            below_max: true,
        }
    }
}

impl<T: Copy + PartialOrd + fmt::Display> Range<T> {
    pub fn contains(&self, v: T) -> bool {
        let low = if self.above_min {
            v > self.min
        } else {
            v >= self.min
        };
        let high = if self.below_max {
            v < self.max
        } else {
            v <= self.max
        };
        low && high
    }

    /// `v`, or why it is not a value of this setting.
    pub fn check(&self, v: T) -> Result<T, String> {
        if self.contains(v) {
            Ok(v)
        } else {
            Err(format!("{v} is out of range {self}"))
        }
    }
}

impl<T: Copy + Into<serde_json::Value>> Range<T> {
    /// Writes the range into a field's JSON Schema (`#[schemars(transform = R.schema())]`);
    /// an array's items take it.
    pub fn schema(self) -> impl FnMut(&mut schemars::Schema) {
        move |schema: &mut schemars::Schema| {
            let bounds = |obj: &mut serde_json::Map<String, serde_json::Value>| {
                let min = if self.above_min {
                    "exclusiveMinimum"
                } else {
                    "minimum"
                };
                let max = if self.below_max {
                    "exclusiveMaximum"
                } else {
                    "maximum"
                };
                obj.remove("minimum");
                obj.insert(min.into(), self.min.into());
                obj.insert(max.into(), self.max.into());
            };
            if let Some(items) = schema.get_mut("items").and_then(|i| i.as_object_mut()) {
                bounds(items);
            } else if let Some(obj) = schema.as_object_mut() {
                bounds(obj);
            }
        }
    }
}

/// A clap value parser for a flag of this range: `--negatives 1e14` is a usage error (exit 2)
/// naming the range, before anything is opened.
pub fn flag<T>(range: Range<T>) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: Copy + PartialOrd + fmt::Display + std::str::FromStr + Send + Sync + 'static,
    T::Err: fmt::Display,
{
    move |s: &str| {
        let v: T = s.trim().parse().map_err(|e: T::Err| e.to_string())?;
        range.check(v)
    }
}

impl<T: fmt::Display> fmt::Display for Range<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.above_min || self.below_max {
            let open = if self.above_min { '(' } else { '[' };
            let close = if self.below_max { ')' } else { ']' };
            write!(f, "{open}{}, {}{close}", self.min, self.max)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
}

/// Training (the workflow's `model` section, `hypograph train`'s flags, a saved config).
pub mod train {
    use super::Range;

    pub const DIM: Range<usize> = Range::closed(1, 4096);
    pub const NEGATIVES: Range<usize> = Range::closed(1, 65_536);
    pub const LR: Range<f64> = Range::above(0.0, 10.0);
    pub const BATCH_SIZE: Range<usize> = Range::closed(1, 1 << 20);
    /// Epochs of a training; a workflow's first training needs at least one.
    pub const EPOCHS: Range<usize> = Range::closed(0, 100_000);
    pub const FIRST_EPOCHS: Range<usize> = Range::closed(1, 100_000);
    pub const EVAL_EVERY: Range<usize> = Range::closed(0, 100_000);
    pub const PATIENCE: Range<usize> = Range::closed(0, 100_000);
    pub const ENSEMBLE: Range<usize> = Range::closed(1, 32);
    pub const LABEL_SMOOTHING: Range<f64> = Range::below(0.0, 1.0);
    pub const MARGIN: Range<f64> = Range::closed(0.0, 1000.0);
    pub const ADVERSARIAL_TEMPERATURE: Range<f64> = Range::above(0.0, 1000.0);
    pub const REG_WEIGHT: Range<f64> = Range::closed(0.0, 1000.0);
    pub const INIT_SCALE: Range<f64> = Range::above(0.0, 100.0);
}

/// The walk transformer (`model.walks`, the walk flags of `train`).
pub mod walks {
    use super::Range;

    pub const D_MODEL: Range<usize> = Range::closed(1, 4096);
    pub const LAYERS: Range<usize> = Range::closed(1, 64);
    pub const HEADS: Range<usize> = Range::closed(1, 64);
    pub const D_FF: Range<usize> = Range::closed(1, 16_384);
    /// With `WALK_LENGTH`, at most 1,027 tokens a sequence.
    pub const CONTEXT_WALKS: Range<usize> = Range::closed(0, 32);
    pub const WALK_LENGTH: Range<usize> = Range::closed(0, 16);
    pub const MIN_WALKS: Range<usize> = Range::closed(0, 32);
    pub const SAMPLES: Range<usize> = Range::closed(1, 64);
    pub const QUERIES_PER_EPOCH: Range<usize> = Range::closed(1, 1 << 32);
    /// With `BATCH_SIZE`, at most 64M candidate scores a batch.
    pub const SAMPLED_NEGATIVES: Range<usize> = Range::closed(1, 4_096);
    pub const BATCH_SIZE: Range<usize> = Range::closed(1, 16_384);
    /// Probabilities and shares: dropout, id_dropout, mask_prob, warmup.
    pub const SHARE: Range<f64> = Range::below(0.0, 1.0);
    pub const LR: Range<f64> = Range::above(0.0, 1.0);
    /// walks_per_entity, mask_weight, refuted_weight, bce_weight.
    pub const WEIGHT: Range<f64> = Range::closed(0.0, 100.0);
    pub const RARITY_ALPHA: Range<f64> = Range::closed(0.0, 10.0);
    pub const WEIGHT_DECAY: Range<f64> = Range::closed(0.0, 10.0);
}

/// The message-passing models (`model::gnn`).
pub mod gnn {
    use super::Range;

    pub const DIM: Range<usize> = Range::closed(1, 1024);
    pub const LAYERS: Range<usize> = Range::closed(1, 32);
    /// Each query of a batch holds `nodes x dim` floats per layer while it trains.
    pub const BATCH_SIZE: Range<usize> = Range::closed(1, 256);
    pub const NEGATIVES: Range<usize> = Range::closed(1, 65_536);
    pub const QUERIES_PER_EPOCH: Range<usize> = Range::closed(1, 1 << 32);
    pub const LR: Range<f64> = Range::above(0.0, 1.0);
    pub const PRUNE_SENDERS: Range<usize> = Range::closed(1, 1 << 32);
}

/// The rest of a workflow.
pub mod workflow {
    use super::Range;

    pub const SEED: Range<u64> = Range::closed(0, u64::MAX);
    pub const MAX_ATTEMPTS: Range<u32> = Range::closed(1, 100);
    pub const RETRAIN_EPOCHS: Range<usize> = Range::closed(0, 100_000);
    pub const TOP_K: Range<usize> = Range::closed(1, 1_000_000);
    pub const MAX_CANDIDATES: Range<usize> = Range::closed(1, 100_000_000);
    pub const RANK_BATCH: Range<usize> = Range::closed(1, 1_000_000);
    pub const BETA: Range<f64> = Range::closed(0.0, 1000.0);
    /// epsilon, flip_rate, stale_below.
    pub const PROBABILITY: Range<f64> = Range::closed(0.0, 1.0);
    pub const MAX_PER_ENTITY: Range<usize> = Range::closed(1, 1_000_000);
    pub const RETRIES: Range<u32> = Range::closed(0, 20);
    pub const COST: Range<f64> = Range::closed(0.0, 1e9);
    pub const STAGE_BATCH: Range<usize> = Range::closed(1, 1_000_000);
    pub const OUTAGE: Range<u32> = Range::closed(0, 1000);
    pub const CONCURRENCY: Range<usize> = Range::closed(1, 256);
    pub const BREAKER: Range<u32> = Range::closed(1, 1000);
    pub const PRICE_PER_1K: Range<f64> = Range::closed(0.0, 1000.0);
    pub const QUORUM: Range<u32> = Range::closed(1, 100);
    pub const MAX_ROUNDS: Range<u64> = Range::closed(1, 1_000_000);
    pub const BUDGET: Range<f64> = Range::above(0.0, 1e12);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_open_and_closed() {
        let r = Range::closed(1usize, 4);
        assert!(r.contains(1) && r.contains(4) && !r.contains(0) && !r.contains(5));
        assert_eq!(r.check(5), Err("5 is out of range 1..=4".to_owned()));
        let lr = Range::above(0.0, 10.0);
        assert!(!lr.contains(0.0) && lr.contains(10.0) && !lr.contains(f64::NAN));
        assert_eq!(lr.check(0.0), Err("0 is out of range (0, 10]".to_owned()));
        let share = Range::below(0.0, 1.0);
        assert!(share.contains(0.0) && !share.contains(1.0));
        assert_eq!(share.to_string(), "[0, 1)");
    }
}
