//! Entity features as numeric vectors: what a learned map turns into an embedding prior for an
//! entity the graph has no edges for yet.
//!
//! Each kind has one fixed layout, so every vector of a kind (and so of a category that uses
//! it) has one width and one meaning per dimension:
//!
//! | kind | vector | width |
//! | --- | --- | --- |
//! | `smiles` | ECFP4 (Morgan, radius 2) folded to 2048 bits, as 0/1 ([`smiles`]) | [`SMILES_WIDTH`] |
//! | `sequence` | 4-mer frequencies of nucleic acids, then amino-acid and dipeptide frequencies of proteins ([`sequence`]) | [`SEQUENCE_WIDTH`] |
//! | `vector` | the values as given, finite only | the data's |

pub mod sequence;
pub mod smiles;

pub use sequence::SEQUENCE_WIDTH;
pub use smiles::SMILES_WIDTH;

use crate::graph::FeatureValue;

/// Why a feature value could not be turned into a vector. Every variant names the entity, and
/// positions are 1-based characters of the value as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeaturizeError {
    #[error("{entity}: invalid SMILES at position {position}: {message}")]
    SmilesSyntax {
        entity: String,
        position: usize,
        message: String,
    },
    /// No character to point at: an empty string, a size limit, or a molecule that parses but
    /// has no valid structure (e.g. an aromatic ring that cannot be kekulized).
    #[error("{entity}: invalid SMILES: {message}")]
    Smiles { entity: String, message: String },
    #[error(
        "{entity}: invalid sequence at position {position}: {found:?} is neither a nucleotide nor an amino acid"
    )]
    SequenceCharacter {
        entity: String,
        position: usize,
        found: char,
    },
    #[error("{entity}: invalid sequence: {message}")]
    Sequence { entity: String, message: String },
    #[error("{entity}: vector element {index} is {value}; features must be finite")]
    NonFinite {
        entity: String,
        index: usize,
        value: f32,
    },
    #[error("{entity}: empty vector")]
    EmptyVector { entity: String },
}

/// The numeric vector a model learns from. `entity` only names the entity in errors.
pub fn featurize(entity: &str, value: &FeatureValue) -> Result<Vec<f32>, FeaturizeError> {
    match value {
        FeatureValue::Smiles(s) => smiles::fingerprint(entity, s),
        FeatureValue::Sequence(s) => sequence::composition(entity, s),
        FeatureValue::Vector(v) => vector(entity, v),
    }
}

/// The vector's width for a kind (vectors: None, their width is the data's; so is an unknown
/// kind's).
pub fn width(kind: &str) -> Option<usize> {
    match kind {
        "smiles" => Some(SMILES_WIDTH),
        "sequence" => Some(SEQUENCE_WIDTH),
        _ => None,
    }
}

/// Generalized (Ružička) Tanimoto similarity, Σmin/Σmax over non-negative vectors: on 0/1
/// fingerprints it is the usual |a∧b| / |a∨b|. Two all-zero vectors have similarity 0. Vectors
/// of different lengths are compared on their common prefix.
pub fn tanimoto(a: &[f32], b: &[f32]) -> f32 {
    let (mut both, mut either) = (0.0f32, 0.0f32);
    for (&x, &y) in a.iter().zip(b) {
        both += x.min(y);
        either += x.max(y);
    }
    if either > 0.0 { both / either } else { 0.0 }
}

/// A precomputed vector (a language model's embedding, ...): kept as is, but a NaN or infinity
/// would poison the learned map, so it is refused here with the entity's name.
fn vector(entity: &str, values: &[f32]) -> Result<Vec<f32>, FeaturizeError> {
    if values.is_empty() {
        return Err(FeaturizeError::EmptyVector {
            entity: entity.to_owned(),
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(FeaturizeError::NonFinite {
            entity: entity.to_owned(),
            index,
            value,
        });
    }
    Ok(values.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_documented_width() {
        let cases = [
            (FeatureValue::Smiles("CCO".into()), Some(2048)),
            (FeatureValue::Sequence("ACGTACGT".into()), Some(676)),
            (FeatureValue::Sequence("MKTAYIAK".into()), Some(676)),
            (FeatureValue::Vector(vec![0.5, -1.0, 2.0]), None),
        ];
        for (value, expected) in cases {
            let v = featurize("e", &value).expect("valid value");
            assert_eq!(width(value.kind()), expected, "{}", value.kind());
            assert_eq!(v.len(), expected.unwrap_or(3), "{}", value.kind());
        }
        assert_eq!(width("image"), None);
    }

    #[test]
    fn vectors_pass_through_unchanged() {
        let v = featurize("e", &FeatureValue::Vector(vec![0.5, -1.0, 1e30])).expect("finite");
        assert_eq!(v, vec![0.5, -1.0, 1e30]);
    }

    #[test]
    fn non_finite_and_empty_vectors_are_refused_with_entity_and_index() {
        let err =
            featurize("emb-7", &FeatureValue::Vector(vec![1.0, 2.0, f32::NAN])).expect_err("NaN");
        assert_eq!(
            err.to_string(),
            "emb-7: vector element 2 is NaN; features must be finite"
        );
        let err = featurize("emb-7", &FeatureValue::Vector(vec![f32::NEG_INFINITY]))
            .expect_err("infinity");
        assert!(matches!(err, FeaturizeError::NonFinite { index: 0, .. }));
        assert_eq!(
            featurize("emb-7", &FeatureValue::Vector(vec![])),
            Err(FeaturizeError::EmptyVector {
                entity: "emb-7".into()
            })
        );
    }

    #[test]
    fn tanimoto_is_intersection_over_union_on_bits() {
        let a = [1.0, 1.0, 0.0, 1.0];
        let b = [1.0, 0.0, 1.0, 1.0];
        assert_eq!(tanimoto(&a, &b), 0.5);
        assert_eq!(tanimoto(&a, &a), 1.0);
        assert_eq!(tanimoto(&[0.0; 4], &[0.0; 4]), 0.0);
    }
}
