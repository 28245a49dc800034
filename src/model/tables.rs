//! Embedding tables live in host memory and are updated sparsely: burn computes the loss and
//! its gradient on the rows a batch touches, and only those rows take an optimizer step.
//! burn's own optimizer would zero and update every row of a 47K-entity table per step.

use super::config::OptimizerKind;
use rand::Rng;
use rayon::prelude::*;

const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;
const ADAGRAD_EPS: f32 = 1e-10;

/// Below this many updated floats a step stays on the calling thread.
const PARALLEL_STEP: usize = 1 << 16;
/// Rows per parallel block of a step.
const STEP_BLOCK: usize = 256;

/// One optimizer's update rule for a step, with its bias correction folded in.
#[derive(Clone, Copy)]
enum Update {
    Adagrad { lr: f32 },
    Adam { step: f32 },
}

impl Update {
    fn new(opt: OptimizerKind, lr: f32, t: u64) -> Self {
        match opt {
            OptimizerKind::Adagrad => Update::Adagrad { lr },
            OptimizerKind::Adam => {
                let t = t.max(1) as i32;
                let step = lr * (1.0 - ADAM_BETA2.powi(t)).sqrt() / (1.0 - ADAM_BETA1.powi(t));
                Update::Adam { step }
            }
        }
    }

    /// Updates one row's parameters `p` and state (`first`, and `second` for Adam; Adagrad
    /// ignores it).
    fn apply(self, g: &[f32], p: &mut [f32], first: &mut [f32], second: &mut [f32]) {
        let w = g.len();
        let (p, first) = (&mut p[..w], &mut first[..w]);
        match self {
            Update::Adam { step } => {
                let v = &mut second[..w];
                for j in 0..w {
                    first[j] = ADAM_BETA1 * first[j] + (1.0 - ADAM_BETA1) * g[j];
                    v[j] = ADAM_BETA2 * v[j] + (1.0 - ADAM_BETA2) * g[j] * g[j];
                    p[j] -= step * first[j] / (v[j].sqrt() + ADAM_EPS);
                }
            }
            Update::Adagrad { lr } => {
                for j in 0..w {
                    first[j] += g[j] * g[j];
                    p[j] -= lr * g[j] / (first[j].sqrt() + ADAGRAD_EPS);
                }
            }
        }
    }
}

/// A `rows x width` table of f32, row-major, with its optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub rows: usize,
    pub width: usize,
    pub data: Vec<f32>,
    /// Adagrad: sum of squared gradients. Adam: first moments.
    first: Vec<f32>,
    /// Adam: second moments.
    second: Vec<f32>,
}

impl Table {
    pub fn from_data(rows: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * width, "table data has the wrong length");
        Self {
            rows,
            width,
            data,
            first: Vec::new(),
            second: Vec::new(),
        }
    }

    /// Gaussian rows with standard deviation `scale`.
    pub fn normal(rows: usize, width: usize, scale: f32, rng: &mut impl Rng) -> Self {
        let data = (0..rows * width).map(|_| scale * gaussian(rng)).collect();
        Self::from_data(rows, width, data)
    }

    /// Uniform rows in `[lo, hi)`.
    pub fn uniform(rows: usize, width: usize, lo: f32, hi: f32, rng: &mut impl Rng) -> Self {
        let data = (0..rows * width)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect();
        Self::from_data(rows, width, data)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.width..(i + 1) * self.width]
    }

    /// Copies rows `ids`, columns `cols`, into a new row-major buffer.
    pub fn gather(&self, ids: &[u32], cols: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * cols.len());
        for &i in ids {
            let row = self.row(i as usize);
            out.extend_from_slice(&row[cols.clone()]);
        }
        out
    }

    /// Grows the table to `rows`, filling new rows with `fill` (warm start on a newer graph).
    pub fn grow(&mut self, rows: usize, mut fill: impl FnMut() -> f32) {
        if rows <= self.rows {
            return;
        }
        self.data
            .extend((0..(rows - self.rows) * self.width).map(|_| fill()));
        for state in [&mut self.first, &mut self.second] {
            if !state.is_empty() {
                state.resize(rows * self.width, 0.0);
            }
        }
        self.rows = rows;
    }

    /// One optimizer step on rows `ids` (distinct), whose gradients are `grads`
    /// (`ids.len() x cols.len()`, row-major), restricted to columns `cols`. Rows are
    /// independent, so large steps update blocks of rows on rayon's threads; the result does
    /// not depend on the number of threads.
    pub fn step(
        &mut self,
        ids: &[u32],
        cols: std::ops::Range<usize>,
        grads: &[f32],
        opt: OptimizerKind,
        lr: f32,
        t: u64,
    ) {
        let w = cols.len();
        debug_assert_eq!(grads.len(), ids.len() * w);
        if self.first.is_empty() {
            self.first = vec![0.0; self.data.len()];
        }
        if opt == OptimizerKind::Adam && self.second.is_empty() {
            self.second = vec![0.0; self.data.len()];
        }
        let update = Update::new(opt, lr, t);
        let width = self.width;
        let row = |k: usize, i: u32| {
            let base = i as usize * width + cols.start;
            (&grads[k * w..(k + 1) * w], base..base + w)
        };
        if ids.len() * w < PARALLEL_STEP {
            for (k, &i) in ids.iter().enumerate() {
                let (g, span) = row(k, i);
                let second = match opt {
                    OptimizerKind::Adam => &mut self.second[span.clone()],
                    OptimizerKind::Adagrad => &mut [],
                };
                update.apply(
                    g,
                    &mut self.data[span.clone()],
                    &mut self.first[span],
                    second,
                );
            }
            return;
        }
        // Blocks of rows as disjoint mutable chunks; each finds its ids in the sorted order.
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_unstable_by_key(|&k| ids[k as usize]);
        let span = STEP_BLOCK * width;
        let block =
            |b: usize, data: &mut [f32], first: &mut [f32], mut second: Option<&mut [f32]>| {
                let (lo, hi) = ((b * STEP_BLOCK) as u32, ((b + 1) * STEP_BLOCK) as u32);
                let from = order.partition_point(|&k| ids[k as usize] < lo);
                let to = order.partition_point(|&k| ids[k as usize] < hi);
                for &k in &order[from..to] {
                    let (g, s) = row(k as usize, ids[k as usize]);
                    let s = s.start - b * span..s.end - b * span;
                    update.apply(
                        g,
                        &mut data[s.clone()],
                        &mut first[s.clone()],
                        match second.as_deref_mut() {
                            Some(v) => &mut v[s],
                            None => &mut [],
                        },
                    );
                }
            };
        match opt {
            OptimizerKind::Adam => self
                .data
                .par_chunks_mut(span)
                .zip(self.first.par_chunks_mut(span))
                .zip(self.second.par_chunks_mut(span))
                .enumerate()
                .for_each(|(b, ((d, f), s))| block(b, d, f, Some(s))),
            OptimizerKind::Adagrad => self
                .data
                .par_chunks_mut(span)
                .zip(self.first.par_chunks_mut(span))
                .enumerate()
                .for_each(|(b, (d, f))| block(b, d, f, None)),
        }
    }

    /// The optimizer state, first and second moments (each empty before the first step;
    /// Adagrad has no second).
    pub fn state(&self) -> (&[f32], &[f32]) {
        (&self.first, &self.second)
    }

    /// Restores optimizer state saved by [`Table::state`]; each part is empty or one value per
    /// parameter.
    pub fn set_state(&mut self, first: Vec<f32>, second: Vec<f32>) -> Result<(), String> {
        for (what, v) in [("first", &first), ("second", &second)] {
            if !v.is_empty() && v.len() != self.data.len() {
                return Err(format!(
                    "{what} moments hold {} values for a table of {}",
                    v.len(),
                    self.data.len()
                ));
            }
        }
        self.first = first;
        self.second = second;
        Ok(())
    }

    /// Forgets the optimizer state (another optimizer's state would be misread).
    pub fn drop_state(&mut self) {
        self.first = Vec::new();
        self.second = Vec::new();
    }
}

/// A standard normal sample (Box-Muller).
pub fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_step_touches_only_given_rows() {
        let mut t = Table::from_data(3, 2, vec![1.0; 6]);
        t.step(&[1], 0..2, &[0.5, -0.5], OptimizerKind::Adagrad, 0.1, 1);
        assert_eq!(t.row(0), &[1.0, 1.0]);
        assert_eq!(t.row(2), &[1.0, 1.0]);
        // Adagrad's first step moves each coordinate by lr against the gradient's sign.
        assert!((t.row(1)[0] - 0.9).abs() < 1e-6 && (t.row(1)[1] - 1.1).abs() < 1e-6);
        let mut a = Table::from_data(2, 2, vec![0.0; 4]);
        a.step(&[0], 1..2, &[2.0], OptimizerKind::Adam, 0.01, 1);
        assert_eq!(a.row(0)[0], 0.0);
        assert!((a.row(0)[1] + 0.01).abs() < 1e-6, "{:?}", a.row(0));
        assert_eq!(a.row(1), &[0.0, 0.0]);
    }

    /// A large step (blocks of rows on rayon's threads) equals row-by-row steps, bit for bit.
    #[test]
    fn parallel_step_matches_row_by_row() {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (rows, width) = (2000, 64);
        let mut ids: Vec<u32> = (0..rows as u32).collect();
        ids.shuffle(&mut rng);
        ids.truncate(1500);
        assert!(ids.len() * width >= PARALLEL_STEP);
        let grads: Vec<f32> = (0..ids.len() * width).map(|_| gaussian(&mut rng)).collect();
        for opt in [OptimizerKind::Adam, OptimizerKind::Adagrad] {
            let start = Table::normal(rows, width, 0.1, &mut rng);
            let (mut whole, mut by_row) = (start.clone(), start.clone());
            for t in 1..=2 {
                whole.step(&ids, 0..width, &grads, opt, 0.01, t);
                for (k, &i) in ids.iter().enumerate() {
                    let g = &grads[k * width..(k + 1) * width];
                    by_row.step(&[i], 0..width, g, opt, 0.01, t);
                }
            }
            assert_eq!(whole, by_row, "{opt:?}");
            assert_ne!(whole.data, start.data);
        }
    }

    #[test]
    fn grow_keeps_old_rows() {
        let mut t = Table::from_data(1, 2, vec![3.0, 4.0]);
        t.grow(3, || 0.5);
        assert_eq!(t.rows, 3);
        assert_eq!(t.row(0), &[3.0, 4.0]);
        assert_eq!(t.row(2), &[0.5, 0.5]);
    }
}
