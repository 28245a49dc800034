//! Every weight of the network in one flat vector, laid out in a fixed order under the names
//! ULTRA's checkpoints use, so loading a checkpoint is a copy by name, an optimizer steps one
//! slice, and no weight depends on a graph's vocabulary (relations are nodes of the relation
//! graph, not rows of a table).

use super::pth::Tensor;
use rand::Rng;
use std::collections::BTreeMap;
use std::ops::Range;

/// The relation graph's four edge types: head-head, tail-tail, head-tail, tail-head.
pub const INTERACTIONS: usize = 4;

/// The network's size: ULTRA's published weights are 64 wide and 6 layers deep in both
/// networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub dim: usize,
    pub layers: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Self { dim: 64, layers: 6 }
    }
}

/// Where one layer's weights lie in the flat vector.
#[derive(Debug, Clone)]
pub struct LayerSlots {
    pub norm_weight: Range<usize>,
    pub norm_bias: Range<usize>,
    /// `dim x 2 dim`, row-major (PyTorch's `out x in`): the input state, then the aggregate.
    pub linear_weight: Range<usize>,
    pub linear_bias: Range<usize>,
    /// Relation level: the interaction types' vectors (`4 x dim`). Entity level: empty.
    pub relation: Range<usize>,
    /// Entity level: the two-layer projection of relation representations to this layer's
    /// relation vectors (`dim x dim` each). Relation level: empty.
    pub project0_weight: Range<usize>,
    pub project0_bias: Range<usize>,
    pub project2_weight: Range<usize>,
    pub project2_bias: Range<usize>,
}

/// The layout of every weight.
#[derive(Debug, Clone)]
pub struct Layout {
    pub shape: Shape,
    pub relation_layers: Vec<LayerSlots>,
    pub entity_layers: Vec<LayerSlots>,
    /// The scoring MLP: `2 dim x 2 dim`, then `1 x 2 dim`.
    pub mlp0_weight: Range<usize>,
    pub mlp0_bias: Range<usize>,
    pub mlp2_weight: Range<usize>,
    pub mlp2_bias: Range<usize>,
    /// (checkpoint name, shape, slot), in layout order.
    pub named: Vec<(String, Vec<usize>, Range<usize>)>,
    pub len: usize,
}

impl Layout {
    pub fn new(shape: Shape) -> Self {
        let d = shape.dim;
        let mut named = Vec::new();
        let mut at = 0usize;
        let mut slot = |name: String, dims: Vec<usize>| -> Range<usize> {
            let n: usize = dims.iter().product();
            let r = at..at + n;
            at += n;
            named.push((name, dims, r.clone()));
            r
        };
        let mut layer = |net: &str, i: usize, entity: bool| -> LayerSlots {
            let p = format!("{net}.layers.{i}");
            let norm_weight = slot(format!("{p}.layer_norm.weight"), vec![d]);
            let norm_bias = slot(format!("{p}.layer_norm.bias"), vec![d]);
            let linear_weight = slot(format!("{p}.linear.weight"), vec![d, 2 * d]);
            let linear_bias = slot(format!("{p}.linear.bias"), vec![d]);
            if entity {
                LayerSlots {
                    norm_weight,
                    norm_bias,
                    linear_weight,
                    linear_bias,
                    relation: 0..0,
                    project0_weight: slot(format!("{p}.relation_projection.0.weight"), vec![d, d]),
                    project0_bias: slot(format!("{p}.relation_projection.0.bias"), vec![d]),
                    project2_weight: slot(format!("{p}.relation_projection.2.weight"), vec![d, d]),
                    project2_bias: slot(format!("{p}.relation_projection.2.bias"), vec![d]),
                }
            } else {
                LayerSlots {
                    norm_weight,
                    norm_bias,
                    linear_weight,
                    linear_bias,
                    relation: slot(format!("{p}.relation.weight"), vec![INTERACTIONS, d]),
                    project0_weight: 0..0,
                    project0_bias: 0..0,
                    project2_weight: 0..0,
                    project2_bias: 0..0,
                }
            }
        };
        let relation_layers = (0..shape.layers)
            .map(|i| layer("relation_model", i, false))
            .collect();
        let entity_layers = (0..shape.layers)
            .map(|i| layer("entity_model", i, true))
            .collect();
        let mlp0_weight = slot("entity_model.mlp.0.weight".into(), vec![2 * d, 2 * d]);
        let mlp0_bias = slot("entity_model.mlp.0.bias".into(), vec![2 * d]);
        let mlp2_weight = slot("entity_model.mlp.2.weight".into(), vec![1, 2 * d]);
        let mlp2_bias = slot("entity_model.mlp.2.bias".into(), vec![1]);
        Self {
            shape,
            relation_layers,
            entity_layers,
            mlp0_weight,
            mlp0_bias,
            mlp2_weight,
            mlp2_bias,
            named,
            len: at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("the checkpoint has no tensor {0}")]
    Missing(String),
    #[error("tensor {name} is {got:?}, this network needs {want:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("the checkpoint's network is not the ULTRA shape: {0}")]
    Unknown(String),
}

/// The weights, flat.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Params {
    /// Fresh weights as PyTorch initializes them: linear layers uniform in +-1/sqrt(fan_in),
    /// layer norms the identity, relation embeddings standard normal.
    pub fn random(shape: Shape, rng: &mut impl Rng) -> Self {
        let layout = Layout::new(shape);
        let mut data = vec![0f32; layout.len];
        for (name, dims, slot) in &layout.named {
            let fan_in = *dims.last().unwrap_or(&1) as f32;
            let bound = 1.0 / fan_in.sqrt();
            let out = &mut data[slot.clone()];
            if name.ends_with("layer_norm.weight") {
                out.fill(1.0);
            } else if name.ends_with("layer_norm.bias") {
                out.fill(0.0);
            } else if name.ends_with("relation.weight") {
                for x in out.iter_mut() {
                    *x = standard_normal(rng);
                }
            } else if name.ends_with(".bias") {
                // A bias's bound is its layer's fan-in: the weight's second dimension.
                let w = layout
                    .named
                    .iter()
                    .find(|(n, _, _)| *n == name.replace(".bias", ".weight"));
                let fan = w.and_then(|(_, d, _)| d.last()).copied().unwrap_or(1) as f32;
                let b = 1.0 / fan.sqrt();
                for x in out.iter_mut() {
                    *x = rng.random_range(-b..b);
                }
            } else {
                for x in out.iter_mut() {
                    *x = rng.random_range(-bound..bound);
                }
            }
        }
        Self { shape, data }
    }

    /// The weights of a state dict with ULTRA's names; its shape is read from the tensors.
    pub fn from_state_dict(dict: &BTreeMap<String, Tensor>) -> Result<Self, ParamsError> {
        let dim = dict
            .get("entity_model.layers.0.layer_norm.weight")
            .map(|t| t.data.len())
            .ok_or_else(|| {
                ParamsError::Missing("entity_model.layers.0.layer_norm.weight".into())
            })?;
        let layers = (0..)
            .take_while(|i| dict.contains_key(&format!("entity_model.layers.{i}.linear.weight")))
            .count();
        let shape = Shape { dim, layers };
        let layout = Layout::new(shape);
        let mut data = vec![0f32; layout.len];
        for (name, dims, slot) in &layout.named {
            let t = dict
                .get(name)
                .ok_or_else(|| ParamsError::Missing(name.clone()))?;
            if &t.shape != dims {
                return Err(ParamsError::Shape {
                    name: name.clone(),
                    got: t.shape.clone(),
                    want: dims.clone(),
                });
            }
            data[slot.clone()].copy_from_slice(&t.data);
        }
        let known: std::collections::HashSet<&str> =
            layout.named.iter().map(|(n, _, _)| n.as_str()).collect();
        if let Some(extra) = dict.keys().find(|k| !known.contains(k.as_str())) {
            return Err(ParamsError::Unknown(format!("unexpected tensor {extra}")));
        }
        Ok(Self { shape, data })
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.shape)
    }
}

fn standard_normal(rng: &mut impl Rng) -> f32 {
    // Box-Muller: rand's distributions live in rand_distr, not worth a dependency here.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_ultras_and_loads_by_name() {
        let layout = Layout::new(Shape::default());
        assert_eq!(layout.named.len(), 82);
        let dict =
            super::super::pth::read_state_dict(super::super::EMBEDDED_CHECKPOINT, Some("model"))
                .expect("readable");
        let p = Params::from_state_dict(&dict).expect("loads");
        assert_eq!(p.shape, Shape::default());
        assert_eq!(p.data.len(), layout.len);
        let w = &dict["entity_model.mlp.0.bias"].data;
        assert_eq!(&p.data[layout.mlp0_bias.clone()], w.as_slice());
        let mut broken = dict.clone();
        broken.remove("relation_model.layers.2.relation.weight");
        assert!(matches!(
            Params::from_state_dict(&broken),
            Err(ParamsError::Missing(n)) if n.contains("layers.2.relation")
        ));
    }
}
