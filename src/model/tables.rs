//! Embedding tables live in host memory and are updated sparsely: burn computes the loss and
//! its gradient on the rows a batch touches, and only those rows take an optimizer step.
//! burn's own optimizer would zero and update every row of a 47K-entity table per step.

use super::config::OptimizerKind;
use rand::Rng;

const ADAM_BETA1: f32 = 0.9;
const ADAM_BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;
const ADAGRAD_EPS: f32 = 1e-10;

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
    /// (`ids.len() x cols.len()`, row-major), restricted to columns `cols`.
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
        match opt {
            OptimizerKind::Adagrad => {
                for (k, &i) in ids.iter().enumerate() {
                    let base = i as usize * self.width + cols.start;
                    let g = &grads[k * w..(k + 1) * w];
                    let p = &mut self.data[base..base + w];
                    let acc = &mut self.first[base..base + w];
                    for j in 0..w {
                        acc[j] += g[j] * g[j];
                        p[j] -= lr * g[j] / (acc[j].sqrt() + ADAGRAD_EPS);
                    }
                }
            }
            OptimizerKind::Adam => {
                let t = t.max(1) as i32;
                let step = lr * (1.0 - ADAM_BETA2.powi(t)).sqrt() / (1.0 - ADAM_BETA1.powi(t));
                for (k, &i) in ids.iter().enumerate() {
                    let base = i as usize * self.width + cols.start;
                    let g = &grads[k * w..(k + 1) * w];
                    let p = &mut self.data[base..base + w];
                    let m = &mut self.first[base..base + w];
                    let v = &mut self.second[base..base + w];
                    for j in 0..w {
                        m[j] = ADAM_BETA1 * m[j] + (1.0 - ADAM_BETA1) * g[j];
                        v[j] = ADAM_BETA2 * v[j] + (1.0 - ADAM_BETA2) * g[j] * g[j];
                        p[j] -= step * m[j] / (v[j].sqrt() + ADAM_EPS);
                    }
                }
            }
        }
    }

    /// Drops optimizer state (it is not part of a checkpoint).
    pub fn without_state(&self) -> Self {
        Self::from_data(self.rows, self.width, self.data.clone())
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

    #[test]
    fn grow_keeps_old_rows() {
        let mut t = Table::from_data(1, 2, vec![3.0, 4.0]);
        t.grow(3, || 0.5);
        assert_eq!(t.rows, 3);
        assert_eq!(t.row(0), &[3.0, 4.0]);
        assert_eq!(t.row(2), &[0.5, 0.5]);
    }
}
