//! Priors from features: per category and feature kind, a ridge regression from an entity's
//! feature vector to its trained embedding row, fitted on the trained entities that have
//! features. A new entity with features starts from (and is pulled towards) what its
//! features predict; without them, from its category's mean row.
//!
//! Ridge rather than an MLP: a few hundred to a few thousand examples per category, a closed
//! form with a held-out choice of the penalty, and nothing to tune per graph. The primal
//! (`d x d`) or dual (`n x n`) system is solved, whichever is smaller, so 2048-bit
//! fingerprints on 1.5K compounds cost a 1.5K system.

use super::kge::KgeModel;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// One category's map from one kind of feature vector to an embedding row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorMap {
    pub category: String,
    pub kind: String,
    pub dim: usize,
    pub width: usize,
    x_mean: Vec<f32>,
    x_scale: Vec<f32>,
    y_mean: Vec<f32>,
    /// `dim x width`, row-major, on standardized features.
    weights: Vec<f32>,
    pub lambda: f64,
    pub fitted_on: usize,
    /// Held-out R² of the chosen penalty (share of the rows' variance the features explain).
    pub holdout_r2: f64,
}

/// Every map of one ensemble member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Priors {
    pub maps: Vec<PriorMap>,
}

/// The trained entities of one category with a feature vector of one kind.
pub struct Examples<'a> {
    pub category: &'a str,
    pub kind: &'a str,
    /// `(entity id in the model, feature vector)`; every vector has the same length.
    pub rows: Vec<(u32, &'a [f32])>,
}

/// Fewer examples than this: no map (the category mean is as good).
pub const MIN_EXAMPLES: usize = 10;
/// At most this many examples enter a fit (a seeded sample), bounding the dual system.
const MAX_EXAMPLES: usize = 4_000;
const PENALTIES: [f64; 7] = [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4];

impl Priors {
    /// Fits one map per group of examples against `model`'s entity rows.
    pub fn fit(model: &KgeModel, groups: &[Examples<'_>], seed: u64) -> Self {
        let maps = groups
            .iter()
            .filter_map(|g| PriorMap::fit(model, g, seed))
            .collect();
        Self { maps }
    }

    pub fn get(&self, category: &str, kind: &str) -> Option<&PriorMap> {
        self.maps
            .iter()
            .find(|m| m.category == category && m.kind == kind)
    }
}

impl PriorMap {
    fn fit(model: &KgeModel, g: &Examples<'_>, seed: u64) -> Option<Self> {
        let mut rows = g.rows.clone();
        if rows.len() < MIN_EXAMPLES {
            return None;
        }
        let dim = rows[0].1.len();
        if dim == 0 || rows.iter().any(|r| r.1.len() != dim) {
            return None;
        }
        let mut rng = StdRng::seed_from_u64(seed);
        rows.shuffle(&mut rng);
        rows.truncate(MAX_EXAMPLES);
        let width = model.entities.width;
        let n = rows.len();
        // Standardize on every example.
        let mut x_mean = vec![0f64; dim];
        for (_, x) in &rows {
            for (m, &v) in x_mean.iter_mut().zip(*x) {
                *m += f64::from(v);
            }
        }
        x_mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut x_scale = vec![0f64; dim];
        for (_, x) in &rows {
            for ((s, &v), m) in x_scale.iter_mut().zip(*x).zip(&x_mean) {
                *s += (f64::from(v) - m).powi(2);
            }
        }
        x_scale.iter_mut().for_each(|s| {
            *s = if *s > 0.0 {
                (*s / n as f64).sqrt()
            } else {
                1.0
            }
        });
        let xs: Vec<Vec<f64>> = rows
            .iter()
            .map(|(_, x)| {
                x.iter()
                    .zip(&x_mean)
                    .zip(&x_scale)
                    .map(|((&v, m), s)| (f64::from(v) - m) / s)
                    .collect()
            })
            .collect();
        let ys: Vec<Vec<f64>> = rows
            .iter()
            .map(|(id, _)| {
                model
                    .entities
                    .row(*id as usize)
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect()
            })
            .collect();
        // Choose the penalty on a fifth held out, then refit on everything.
        let cut = n - (n / 5).max(1);
        let (train_x, test_x) = xs.split_at(cut);
        let (train_y, test_y) = ys.split_at(cut);
        let y_mean_train = column_mean(train_y, width);
        let total: f64 = test_y
            .iter()
            .map(|y| {
                y.iter()
                    .zip(&y_mean_train)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
            })
            .sum();
        let mut best: Option<(f64, f64)> = None;
        for &lambda in &PENALTIES {
            let Some(w) = ridge(train_x, train_y, &y_mean_train, lambda) else {
                continue;
            };
            let err: f64 = test_x
                .iter()
                .zip(test_y)
                .map(|(x, y)| {
                    predict(&w, x, &y_mean_train, width)
                        .iter()
                        .zip(y)
                        .map(|(p, t)| (p - t).powi(2))
                        .sum::<f64>()
                })
                .sum();
            if best.is_none_or(|b| err < b.1) {
                best = Some((lambda, err));
            }
        }
        let (lambda, err) = best?;
        let y_mean = column_mean(&ys, width);
        let weights = ridge(&xs, &ys, &y_mean, lambda)?;
        Some(Self {
            category: g.category.to_owned(),
            kind: g.kind.to_owned(),
            dim,
            width,
            x_mean: x_mean.iter().map(|&v| v as f32).collect(),
            x_scale: x_scale.iter().map(|&v| v as f32).collect(),
            y_mean: y_mean.iter().map(|&v| v as f32).collect(),
            weights: weights.iter().map(|&v| v as f32).collect(),
            lambda,
            fitted_on: n,
            holdout_r2: if total > 0.0 { 1.0 - err / total } else { 0.0 },
        })
    }

    /// The prior row for a feature vector; `None` if its length is not the map's.
    pub fn prior(&self, x: &[f32]) -> Option<Vec<f32>> {
        if x.len() != self.dim {
            return None;
        }
        let mut out = self.y_mean.clone();
        for (i, &v) in x.iter().enumerate() {
            let z = (v - self.x_mean[i]) / self.x_scale[i];
            if z == 0.0 {
                continue;
            }
            let w = &self.weights[i * self.width..(i + 1) * self.width];
            for (o, &wj) in out.iter_mut().zip(w) {
                *o += z * wj;
            }
        }
        Some(out)
    }
}

fn column_mean(ys: &[Vec<f64>], width: usize) -> Vec<f64> {
    let mut m = vec![0f64; width];
    for y in ys {
        for (a, b) in m.iter_mut().zip(y) {
            *a += b;
        }
    }
    let n = ys.len().max(1) as f64;
    m.iter_mut().for_each(|a| *a /= n);
    m
}

fn predict(w: &[f64], x: &[f64], y_mean: &[f64], width: usize) -> Vec<f64> {
    let mut out = y_mean.to_vec();
    for (i, &v) in x.iter().enumerate() {
        for (o, wj) in out.iter_mut().zip(&w[i * width..(i + 1) * width]) {
            *o += v * wj;
        }
    }
    out
}

/// Ridge weights (`d x width`) of centred targets on `xs`, by the primal or dual system.
fn ridge(xs: &[Vec<f64>], ys: &[Vec<f64>], y_mean: &[f64], lambda: f64) -> Option<Vec<f64>> {
    let n = xs.len();
    let d = xs.first()?.len();
    let width = y_mean.len();
    let yc: Vec<Vec<f64>> = ys
        .iter()
        .map(|y| y.iter().zip(y_mean).map(|(a, b)| a - b).collect())
        .collect();
    if d <= n {
        // (XᵀX + λI) W = XᵀY
        let mut a = vec![0f64; d * d];
        let mut b = vec![0f64; d * width];
        for (x, y) in xs.iter().zip(&yc) {
            for i in 0..d {
                if x[i] == 0.0 {
                    continue;
                }
                for j in 0..d {
                    a[i * d + j] += x[i] * x[j];
                }
                for j in 0..width {
                    b[i * width + j] += x[i] * y[j];
                }
            }
        }
        for i in 0..d {
            a[i * d + i] += lambda;
        }
        solve_spd(&mut a, d, &mut b, width)?;
        Some(b)
    } else {
        // W = Xᵀ (XXᵀ + λI)⁻¹ Y
        let mut k = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v: f64 = xs[i].iter().zip(&xs[j]).map(|(a, b)| a * b).sum();
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] += lambda;
        }
        let mut alpha: Vec<f64> = yc.iter().flatten().copied().collect();
        solve_spd(&mut k, n, &mut alpha, width)?;
        let mut w = vec![0f64; d * width];
        for (x, a) in xs.iter().zip(alpha.chunks(width)) {
            for i in 0..d {
                if x[i] == 0.0 {
                    continue;
                }
                for j in 0..width {
                    w[i * width + j] += x[i] * a[j];
                }
            }
        }
        Some(w)
    }
}

/// Solves `A X = B` in place for symmetric positive definite `A` (`n x n`) by Cholesky;
/// `B` (`n x m`) becomes `X`. `None` if `A` is not positive definite.
fn solve_spd(a: &mut [f64], n: usize, b: &mut [f64], m: usize) -> Option<()> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    // L y = b, then Lᵀ x = y, column block at a time.
    for i in 0..n {
        for k in 0..i {
            let l = a[i * n + k];
            if l == 0.0 {
                continue;
            }
            for c in 0..m {
                b[i * m + c] -= l * b[k * m + c];
            }
        }
        let d = a[i * n + i];
        for c in 0..m {
            b[i * m + c] /= d;
        }
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            let l = a[k * n + i];
            if l == 0.0 {
                continue;
            }
            for c in 0..m {
                b[i * m + c] -= l * b[k * m + c];
            }
        }
        let d = a[i * n + i];
        for c in 0..m {
            b[i * m + c] /= d;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::TrainConfig;
    use crate::model::tables::Table;
    use rand::Rng;

    /// Rows that are a linear function of the features plus a little noise: the map
    /// recovers them on entities it did not see, in both the primal and the dual form.
    #[test]
    fn recovers_a_linear_map_primal_and_dual() {
        // (examples, feature dims, least held-out R², most error relative to the mean row)
        for (n, d, r2, ratio) in [(200usize, 5usize, 0.9, 0.2), (60, 100, 0.3, 0.8)] {
            let mut rng = StdRng::seed_from_u64(1);
            let config = TrainConfig::new().with_dim(4);
            let mut model = KgeModel::init(&config, n + 20, 2, &mut rng);
            // Only the first four features matter: learnable from fewer examples than features.
            let truth: Vec<f32> = (0..d * 8)
                .map(|i| {
                    if i < 32 {
                        rng.random::<f32>() - 0.5
                    } else {
                        0.0
                    }
                })
                .collect();
            let feats: Vec<Vec<f32>> = (0..n + 20)
                .map(|_| (0..d).map(|_| rng.random::<f32>()).collect())
                .collect();
            let mut data = Vec::new();
            for x in &feats {
                for j in 0..8 {
                    let v: f32 = (0..d).map(|i| x[i] * truth[i * 8 + j]).sum();
                    data.push(v + 0.01 * (rng.random::<f32>() - 0.5));
                }
            }
            model.entities = Table::from_data(n + 20, 8, data);
            let group = Examples {
                category: "Compound",
                kind: "vector",
                rows: (0..n as u32)
                    .map(|i| (i, feats[i as usize].as_slice()))
                    .collect(),
            };
            let priors = Priors::fit(&model, &[group], 3);
            let map = priors.get("Compound", "vector").expect("a map");
            assert!(map.holdout_r2 > r2, "n={n} d={d}: r2 {}", map.holdout_r2);
            // Unseen entities: prediction closer than the mean row.
            let mean = mean_of(&model, n);
            let (mut err_map, mut err_mean) = (0.0, 0.0);
            for (i, x) in feats.iter().enumerate().skip(n) {
                let p = map.prior(x).expect("right width");
                let y = model.entities.row(i);
                err_map += dist(&p, y);
                err_mean += dist(&mean, y);
            }
            assert!(
                err_map < ratio * err_mean,
                "n={n} d={d}: {err_map} vs {err_mean}"
            );
            assert!(map.prior(&[1.0]).is_none());
            assert!(priors.get("Disease", "vector").is_none());
        }
    }

    fn mean_of(model: &KgeModel, n: usize) -> Vec<f32> {
        let mut m = vec![0f32; model.entities.width];
        for i in 0..n {
            for (a, b) in m.iter_mut().zip(model.entities.row(i)) {
                *a += b / n as f32;
            }
        }
        m
    }

    fn dist(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn too_few_examples_give_no_map() {
        let model = KgeModel::init(
            &TrainConfig::new().with_dim(4),
            5,
            1,
            &mut StdRng::seed_from_u64(1),
        );
        let x = [1.0f32, 2.0];
        let group = Examples {
            category: "C",
            kind: "vector",
            rows: (0..5).map(|i| (i, &x[..])).collect(),
        };
        assert!(Priors::fit(&model, &[group], 1).maps.is_empty());
    }
}
