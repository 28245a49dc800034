//! The scoring functions as burn tensor programs. Every model reduces to a query built from
//! (head, relation) or (relation, tail) and compared with candidate entities by one matrix
//! product, so scoring a batch against shared negatives or all entities is a GEMM. Negatives
//! drawn per positive (`against_each`) are a batched elementwise product and sum instead.

use super::config::ModelKind;
use burn::tensor::Tensor;

/// Entity rows: real part, and imaginary part for complex models. `[n, dim]` each.
#[derive(Debug, Clone)]
pub struct Ent {
    pub re: Tensor<2>,
    pub im: Option<Tensor<2>>,
}

impl Ent {
    /// Rows `idx` of these entities (differentiable).
    pub fn select(&self, idx: &Tensor<1, burn::tensor::Int>) -> Ent {
        Ent {
            re: self.re.clone().select(0, idx.clone()),
            im: self.im.as_ref().map(|im| im.clone().select(0, idx.clone())),
        }
    }
}

/// Relation rows: `re`/`im` for ComplEx, `re` for DistMult, phases in `re` for RotatE.
#[derive(Debug, Clone)]
pub struct Rel {
    pub re: Tensor<2>,
    pub im: Option<Tensor<2>>,
}

/// Which side of the triple is being predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Tail,
    Head,
}

/// A batch of queries ready to be compared with candidates.
#[derive(Debug, Clone)]
pub struct Query {
    re: Tensor<2>,
    im: Option<Tensor<2>>,
    /// RotatE: scores are negative distances to the query point, not inner products.
    distance: bool,
}

/// Builds the query for predicting `side` given the other entity `e` (`[b, dim]`) and the
/// relation `r` (`[b, dim]`).
pub fn query(kind: ModelKind, side: Side, e: &Ent, r: &Rel) -> Query {
    match kind {
        ModelKind::Distmult => Query {
            re: e.re.clone() * r.re.clone(),
            im: None,
            distance: false,
        },
        ModelKind::Complex => {
            let (er, ei) = (e.re.clone(), complex_part(&e.im));
            let (rr, ri) = (r.re.clone(), complex_part(&r.im));
            match side {
                // h*r, compared with t by Re(<q, conj t>) = q_re.t_re + q_im.t_im
                Side::Tail => Query {
                    re: er.clone() * rr.clone() - ei.clone() * ri.clone(),
                    im: Some(er * ri + ei * rr),
                    distance: false,
                },
                // Re(<h, r conj(t)>) = h_re.u_re - h_im.u_im with u = r conj(t)
                Side::Head => Query {
                    re: rr.clone() * er.clone() + ri.clone() * ei.clone(),
                    im: Some(-(ri * er - rr * ei)),
                    distance: false,
                },
            }
        }
        ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn => {
            unreachable!("only embedding models score with model::score")
        }
        ModelKind::Rotate => {
            let (er, ei) = (e.re.clone(), complex_part(&e.im));
            let (c, s) = (r.re.clone().cos(), r.re.clone().sin());
            match side {
                // h * r
                Side::Tail => Query {
                    re: er.clone() * c.clone() - ei.clone() * s.clone(),
                    im: Some(er * s + ei * c),
                    distance: true,
                },
                // t * conj(r), since |r| = 1
                Side::Head => Query {
                    re: er.clone() * c.clone() + ei.clone() * s.clone(),
                    im: Some(ei * c - er * s),
                    distance: true,
                },
            }
        }
    }
}

/// A batch of queries computed elsewhere (`[b, width]` rows, `[re | im]` for complex models),
/// as [`query`] would have built them: for entities that are not rows of the model's table.
pub fn query_from_rows(
    kind: ModelKind,
    rows: Vec<f32>,
    b: usize,
    device: &burn::tensor::Device,
) -> Query {
    let width = rows.len() / b.max(1);
    let t: Tensor<2> = Tensor::from_data(burn::tensor::TensorData::new(rows, [b, width]), device);
    match kind {
        ModelKind::Distmult => Query {
            re: t,
            im: None,
            distance: false,
        },
        _ => {
            let k = width / 2;
            Query {
                re: t.clone().narrow(1, 0, k),
                im: Some(t.narrow(1, k, k)),
                distance: kind == ModelKind::Rotate,
            }
        }
    }
}

fn complex_part(t: &Option<Tensor<2>>) -> Tensor<2> {
    t.clone().expect("complex model without imaginary part")
}

const DIST_EPS: f64 = 1e-9;

impl Query {
    /// Scores every query against every candidate: `[b, n]`.
    pub fn against(&self, cand: &Ent) -> Tensor<2> {
        let mut dot = self.re.clone().matmul(cand.re.clone().transpose());
        if let (Some(qi), Some(ci)) = (&self.im, &cand.im) {
            dot = dot + qi.clone().matmul(ci.clone().transpose());
        }
        if !self.distance {
            return dot;
        }
        // ||q - c||^2 = ||q||^2 + ||c||^2 - 2 q.c
        let q2 = self.sq_norm(); // [b, 1]
        let c2 = sq_norm(&cand.re, &cand.im).transpose(); // [1, n]
        let d2 = q2 + c2 - dot * 2.0;
        -(d2.clamp_min(DIST_EPS).sqrt())
    }

    /// Scores query `i` against its own block of candidates, rows `i*n..(i+1)*n` of `cand`
    /// (`[b*n, dim]`, e.g. gathered with [`Ent::select`]): `[b, n]`. Entry `(i, j)` equals
    /// `against` of query `i` and candidate row `i*n + j`.
    pub fn against_each(&self, cand: &Ent) -> Tensor<2> {
        let [b, d] = self.re.dims();
        let n = cand.re.dims()[0] / b.max(1);
        assert_eq!(
            cand.re.dims()[0],
            b * n,
            "candidate rows not a multiple of queries"
        );
        let q = |t: &Tensor<2>| t.clone().unsqueeze_dim::<3>(1); // [b, 1, d]
        let block = |c: &Tensor<2>| c.clone().reshape([b, n, d]); // [b, n, d]
        let pairs = [
            (Some(&self.re), Some(&cand.re)),
            (self.im.as_ref(), cand.im.as_ref()),
        ];
        let mut acc: Option<Tensor<3>> = None;
        for (qt, ct) in pairs {
            let (Some(qt), Some(ct)) = (qt, ct) else {
                continue;
            };
            let term = if self.distance {
                let diff = q(qt) - block(ct);
                (diff.clone() * diff).sum_dim(2)
            } else {
                (q(qt) * block(ct)).sum_dim(2)
            }; // [b, n, 1]
            acc = Some(match acc {
                Some(a) => a + term,
                None => term,
            });
        }
        let acc = acc.expect("real part present").reshape([b, n]);
        if self.distance {
            -(acc.clamp_min(DIST_EPS).sqrt())
        } else {
            acc
        }
    }

    /// Scores query `i` against candidate `i`: `[b, 1]`.
    pub fn with(&self, cand: &Ent) -> Tensor<2> {
        if self.distance {
            let dr = self.re.clone() - cand.re.clone();
            let mut d2 = (dr.clone() * dr).sum_dim(1);
            if let (Some(qi), Some(ci)) = (&self.im, &cand.im) {
                let di = qi.clone() - ci.clone();
                d2 = d2 + (di.clone() * di).sum_dim(1);
            }
            return -(d2.clamp_min(DIST_EPS).sqrt());
        }
        let mut dot = (self.re.clone() * cand.re.clone()).sum_dim(1);
        if let (Some(qi), Some(ci)) = (&self.im, &cand.im) {
            dot = dot + (qi.clone() * ci.clone()).sum_dim(1);
        }
        dot
    }

    fn sq_norm(&self) -> Tensor<2> {
        sq_norm(&self.re, &self.im)
    }
}

fn sq_norm(re: &Tensor<2>, im: &Option<Tensor<2>>) -> Tensor<2> {
    // Products, not powi_scalar: burn evaluates the latter with scalar powf.
    let mut n = (re.clone() * re.clone()).sum_dim(1);
    if let Some(im) = im {
        n = n + (im.clone() * im.clone()).sum_dim(1);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(v: &[f32], rows: usize) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(v.to_vec(), [rows, v.len() / rows]),
            &Device::flex(),
        )
    }

    fn to_vec(x: Tensor<2>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().expect("f32 data")
    }

    /// Reference scores in plain complex arithmetic.
    fn reference(kind: ModelKind, h: (f32, f32), r: (f32, f32), tl: (f32, f32)) -> f32 {
        match kind {
            ModelKind::Distmult => h.0 * r.0 * tl.0,
            ModelKind::Complex => {
                // Re(h * r * conj(t))
                let hr = (h.0 * r.0 - h.1 * r.1, h.0 * r.1 + h.1 * r.0);
                hr.0 * tl.0 + hr.1 * tl.1
            }
            ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn => {
                unreachable!("only embedding models score with model::score")
            }
            ModelKind::Rotate => {
                let (c, s) = (r.0.cos(), r.0.sin());
                let hr = (h.0 * c - h.1 * s, h.0 * s + h.1 * c);
                -((hr.0 - tl.0).powi(2) + (hr.1 - tl.1).powi(2)).sqrt()
            }
        }
    }

    #[test]
    fn both_sides_and_both_forms_match_the_reference() {
        // Three entities with one complex dimension; relation (0.7, -0.4).
        let ents = [(0.3f32, -1.2f32), (0.8, 0.5), (-0.6, 0.9)];
        let rel = (0.7f32, -0.4f32);
        for kind in [ModelKind::Complex, ModelKind::Distmult, ModelKind::Rotate] {
            let complex = kind != ModelKind::Distmult;
            let all = Ent {
                re: t(&ents.map(|e| e.0), 3),
                im: complex.then(|| t(&ents.map(|e| e.1), 3)),
            };
            let r = Rel {
                re: t(&[rel.0], 1),
                im: (kind == ModelKind::Complex).then(|| t(&[rel.1], 1)),
            };
            let rel_c = if kind == ModelKind::Complex {
                rel
            } else {
                (rel.0, 0.0)
            };
            let ent_c = |e: (f32, f32)| if complex { e } else { (e.0, 0.0) };
            for (i, &e) in ents.iter().enumerate() {
                let one = Ent {
                    re: t(&[e.0], 1),
                    im: complex.then(|| t(&[e.1], 1)),
                };
                let tails = to_vec(query(kind, Side::Tail, &one, &r).against(&all));
                let heads = to_vec(query(kind, Side::Head, &one, &r).against(&all));
                for (j, &c) in ents.iter().enumerate() {
                    let want_tail = reference(kind, ent_c(e), rel_c, ent_c(c));
                    let want_head = reference(kind, ent_c(c), rel_c, ent_c(e));
                    assert!(
                        (tails[j] - want_tail).abs() < 1e-4,
                        "{kind:?} tail {i}->{j}"
                    );
                    assert!(
                        (heads[j] - want_head).abs() < 1e-4,
                        "{kind:?} head {j}->{i}"
                    );
                }
                let pair = to_vec(query(kind, Side::Tail, &one, &r).with(&one));
                let want = reference(kind, ent_c(e), rel_c, ent_c(e));
                assert!((pair[0] - want).abs() < 1e-4, "{kind:?} pair {i}");
            }
        }
    }

    /// Per-positive blocks agree with `against` (all pairs) picked at each query's own
    /// candidates, and with `with` one pair at a time; both sides, all three models, dim 2.
    #[test]
    fn per_positive_blocks_match_all_pairs_scoring() {
        let dev = Device::flex();
        let idx = |v: &[u32]| -> Tensor<1, burn::tensor::Int> {
            Tensor::from_data(
                TensorData::new(v.iter().map(|&x| i64::from(x)).collect(), [v.len()]),
                &dev,
            )
        };
        // Five entities, two relations, dim 2.
        let e_re = [0.3f32, -1.2, 0.8, 0.5, -0.6, 0.9, 0.1, 0.4, -0.7, 0.2];
        let e_im = [0.5f32, 0.1, -0.3, 0.8, 0.6, -0.9, 0.2, -0.4, 0.7, 0.3];
        let r_re = [0.7f32, -0.4, 1.1, 0.25];
        let r_im = [-0.2f32, 0.9, 0.35, -0.6];
        // Three queries (entity, relation), each with its own three candidates (repeats allowed).
        let given = [0u32, 3, 4];
        let rels = [1u32, 0, 1];
        let cands = [[1u32, 2, 4], [0, 0, 3], [2, 1, 0]];
        let flat: Vec<u32> = cands.iter().flatten().copied().collect();
        for kind in [ModelKind::Complex, ModelKind::Distmult, ModelKind::Rotate] {
            let complex = kind != ModelKind::Distmult;
            let all = Ent {
                re: t(&e_re, 5),
                im: complex.then(|| t(&e_im, 5)),
            };
            let rel_all = Rel {
                re: t(&r_re, 2),
                im: (kind == ModelKind::Complex).then(|| t(&r_im, 2)),
            };
            let e = all.select(&idx(&given));
            let r = Rel {
                re: rel_all.re.clone().select(0, idx(&rels)),
                im: rel_all.im.clone().map(|im| im.select(0, idx(&rels))),
            };
            let block = all.select(&idx(&flat));
            for side in [Side::Tail, Side::Head] {
                let q = query(kind, side, &e, &r);
                let each = to_vec(q.against_each(&block)); // [3, 3]
                let full = to_vec(q.against(&all)); // [3, 5]
                for (i, row) in cands.iter().enumerate() {
                    for (j, &c) in row.iter().enumerate() {
                        let got = each[i * 3 + j];
                        let want = full[i * 5 + c as usize];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{kind:?} {side:?} query {i} candidate {c}: {got} vs {want}"
                        );
                    }
                }
                // `with` pairs query i with row i: the first column of each block.
                let firsts: Vec<u32> = cands.iter().map(|row| row[0]).collect();
                let with_first = to_vec(q.with(&all.select(&idx(&firsts))));
                for i in 0..3 {
                    assert!(
                        (with_first[i] - each[i * 3]).abs() < 1e-4,
                        "{kind:?} {side:?} with vs each, query {i}"
                    );
                }
            }
        }
    }
}
