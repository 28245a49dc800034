//! Sequences → k-mer composition, in one layout for nucleic acids and proteins alike, so that
//! a category holding both still has one width:
//!
//! | dims | meaning |
//! | --- | --- |
//! | `0..256` ([`NUCLEIC`]) | 4-mer frequencies of a nucleic acid, `A C G T` in base 4, first base most significant; U counts as T; 4-mers with N are skipped |
//! | `256..276` ([`AMINO_ACIDS`]) | amino-acid frequencies of a protein, in the order of [`AMINO`] |
//! | `276..676` ([`DIPEPTIDES`]) | dipeptide frequencies, `20 × first + second` |
//!
//! Each block that is used sums to 1; the other kind's blocks are zero. A sequence is nucleic
//! when it has only `ACGTUN`, otherwise a protein (so a peptide of only those residues reads
//! as nucleic). Case is ignored, and so is whitespace (wrapped FASTA lines).
//!
//! Protein letters beyond the 20: B (D or N) and Z (E or Q) count half to each, U
//! (selenocysteine) counts as C, O (pyrrolysine) as K, and X (unknown) is skipped.

use std::ops::Range;

use super::FeaturizeError;

/// Width of the whole layout.
pub const SEQUENCE_WIDTH: usize = 676;
pub const NUCLEIC: Range<usize> = 0..256;
pub const AMINO_ACIDS: Range<usize> = 256..276;
pub const DIPEPTIDES: Range<usize> = 276..676;
/// The 20 standard amino acids, in dimension order.
pub const AMINO: &[u8; 20] = b"ACDEFGHIKLMNPQRSTVWY";

const K_NUCLEIC: usize = 4;
const K_PROTEIN: usize = 2;

pub(super) fn composition(entity: &str, sequence: &str) -> Result<Vec<f32>, FeaturizeError> {
    let invalid = |message: String| FeaturizeError::Sequence {
        entity: entity.to_owned(),
        message,
    };
    let mut length = 0usize;
    let mut nucleic = true;
    for (i, c) in sequence.chars().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let upper = c.to_ascii_uppercase();
        if !upper.is_ascii_uppercase() || upper == 'J' {
            return Err(FeaturizeError::SequenceCharacter {
                entity: entity.to_owned(),
                position: i + 1,
                found: c,
            });
        }
        nucleic &= matches!(upper, 'A' | 'C' | 'G' | 'T' | 'U' | 'N');
        length += 1;
    }
    if length == 0 {
        return Err(invalid("empty".into()));
    }
    let residues = sequence
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase());
    let mut out = vec![0.0f32; SEQUENCE_WIDTH];
    if nucleic {
        if length < K_NUCLEIC {
            return Err(invalid(format!(
                "{length} nucleotides, fewer than k = {K_NUCLEIC}"
            )));
        }
        if !kmers(residues, &mut out[NUCLEIC]) {
            return Err(invalid(format!("no {K_NUCLEIC}-mer without N")));
        }
    } else {
        if length < K_PROTEIN {
            return Err(invalid(format!(
                "{length} residue, fewer than k = {K_PROTEIN}"
            )));
        }
        let (singles, pairs) = out[AMINO_ACIDS.start..].split_at_mut(AMINO_ACIDS.len());
        if !amino_acids(residues, singles, pairs) {
            return Err(invalid("no standard amino acid".into()));
        }
    }
    Ok(out)
}

/// Counts 4-mers into `out` (256 dims) and normalizes; false if none was countable.
fn kmers(bases: impl Iterator<Item = u8>, out: &mut [f32]) -> bool {
    const MASK: usize = (1 << (2 * K_NUCLEIC)) - 1;
    let mut counts = [0u32; 1 << (2 * K_NUCLEIC)];
    let (mut code, mut run) = (0usize, 0usize);
    for b in bases {
        let base = match b {
            b'A' => 0,
            b'C' => 1,
            b'G' => 2,
            b'T' | b'U' => 3,
            _ => {
                run = 0;
                continue;
            }
        };
        code = ((code << 2) | base) & MASK;
        run += 1;
        if run >= K_NUCLEIC {
            counts[code] += 1;
        }
    }
    for (o, &c) in out.iter_mut().zip(&counts) {
        *o = c as f32;
    }
    normalize(out)
}

/// Counts amino acids (20 dims) and dipeptides (400 dims) and normalizes each block; false if
/// no standard amino acid was countable (a block without pairs stays zero).
fn amino_acids(residues: impl Iterator<Item = u8>, singles: &mut [f32], pairs: &mut [f32]) -> bool {
    let mut previous: Option<Parts> = None;
    for r in residues {
        let current = Parts::of(r);
        if let Some(current) = current {
            for (a, w) in current.iter() {
                singles[a] += w;
            }
            if let Some(previous) = previous {
                for (a, wa) in previous.iter() {
                    for (b, wb) in current.iter() {
                        pairs[20 * a + b] += wa * wb;
                    }
                }
            }
        }
        previous = current;
    }
    normalize(pairs);
    normalize(singles)
}

/// Scales `block` to sum to 1; false when it is all zero.
fn normalize(block: &mut [f32]) -> bool {
    let total: f32 = block.iter().sum();
    if total <= 0.0 {
        return false;
    }
    for v in block {
        *v /= total;
    }
    true
}

/// The standard amino acids a residue letter counts as, with weights summing to 1 (none for X).
#[derive(Clone, Copy)]
struct Parts {
    index: [usize; 2],
    weight: [f32; 2],
    len: usize,
}

impl Parts {
    fn of(letter: u8) -> Option<Parts> {
        let one = |c: u8| {
            AMINO.iter().position(|&a| a == c).map(|i| Parts {
                index: [i, 0],
                weight: [1.0, 0.0],
                len: 1,
            })
        };
        let half = |a: u8, b: u8| {
            let (a, b) = (one(a)?.index[0], one(b)?.index[0]);
            Some(Parts {
                index: [a, b],
                weight: [0.5, 0.5],
                len: 2,
            })
        };
        match letter {
            b'B' => half(b'D', b'N'),
            b'Z' => half(b'E', b'Q'),
            b'U' => one(b'C'),
            b'O' => one(b'K'),
            other => one(other),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.index[..self.len]
            .iter()
            .copied()
            .zip(self.weight[..self.len].iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(sequence: &str) -> Vec<f32> {
        composition("s", sequence).unwrap_or_else(|e| panic!("{sequence}: {e}"))
    }

    fn error(sequence: &str) -> String {
        match composition("gene-1", sequence) {
            Ok(_) => panic!("{sequence:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn kmer(s: &[u8; 4]) -> usize {
        s.iter()
            .map(|b| b"ACGT".iter().position(|x| x == b).expect("base"))
            .fold(0, |code, base| code * 4 + base)
    }

    fn sum(v: &[f32]) -> f32 {
        v.iter().sum()
    }

    #[test]
    fn nucleic_acids_fill_only_the_kmer_block() {
        let v = features("ACGTACGT");
        assert_eq!(v.len(), SEQUENCE_WIDTH);
        // 5 windows: ACGT, CGTA, GTAC, TACG, ACGT.
        assert_eq!(v[kmer(b"ACGT")], 0.4);
        assert_eq!(v[kmer(b"CGTA")], 0.2);
        assert_eq!(v[kmer(b"TACG")], 0.2);
        assert!((sum(&v[NUCLEIC]) - 1.0).abs() < 1e-6);
        assert_eq!(sum(&v[AMINO_ACIDS.start..]), 0.0);
    }

    #[test]
    fn rna_case_and_whitespace_do_not_matter() {
        assert_eq!(features("acgu\nacgu"), features("ACGTACGT"));
    }

    #[test]
    fn kmers_spanning_an_n_are_skipped() {
        let v = features("AAAANCCCC");
        assert_eq!(v[kmer(b"AAAA")], 0.5);
        assert_eq!(v[kmer(b"CCCC")], 0.5);
        assert!(error("ACGNACGNACG").ends_with("no 4-mer without N"));
    }

    #[test]
    fn proteins_fill_composition_and_dipeptides() {
        let v = features("MKMK");
        let (m, k) = (10, 8);
        assert_eq!(AMINO[m], b'M');
        assert_eq!(AMINO[k], b'K');
        assert_eq!(v[AMINO_ACIDS.start + m], 0.5);
        assert_eq!(v[AMINO_ACIDS.start + k], 0.5);
        // pairs MK, KM, MK
        let mk = DIPEPTIDES.start + 20 * m + k;
        let km = DIPEPTIDES.start + 20 * k + m;
        assert!((v[mk] - 2.0 / 3.0).abs() < 1e-6);
        assert!((v[km] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(sum(&v[NUCLEIC]), 0.0);
        assert!((sum(&v[AMINO_ACIDS]) - 1.0).abs() < 1e-6);
        assert!((sum(&v[DIPEPTIDES]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn ambiguous_residues_spread_over_what_they_may_be() {
        let v = features("BX");
        let (d, n) = (2, 11);
        assert_eq!((AMINO[d], AMINO[n]), (b'D', b'N'));
        assert_eq!(v[AMINO_ACIDS.start + d], 0.5);
        assert_eq!(v[AMINO_ACIDS.start + n], 0.5);
        assert_eq!(sum(&v[DIPEPTIDES]), 0.0, "no pair without X");
        assert_eq!(features("MU"), features("MC"), "selenocysteine counts as C");
        assert!(error("XXX").ends_with("no standard amino acid"));
    }

    #[test]
    fn detection_needs_a_protein_only_letter() {
        let nucleic = features("ACGTN");
        assert!(sum(&nucleic[NUCLEIC]) > 0.0);
        let protein = features("ACGTE");
        assert_eq!(sum(&protein[NUCLEIC]), 0.0);
        assert!(sum(&protein[AMINO_ACIDS]) > 0.0);
    }

    #[test]
    fn invalid_characters_name_entity_and_position() {
        assert_eq!(
            error("MKT-AY"),
            "gene-1: invalid sequence at position 4: '-' is neither a nucleotide nor an amino acid"
        );
        assert_eq!(
            error("AC GJ"),
            "gene-1: invalid sequence at position 5: 'J' is neither a nucleotide nor an amino acid"
        );
        assert!(error("ACGTé").contains("position 5: 'é'"));
        assert!(
            error("ACGT\u{a0}ACGT").contains("position 5"),
            "only ASCII spaces wrap"
        );
    }

    #[test]
    fn empty_or_shorter_than_k_is_an_error() {
        assert_eq!(error(""), "gene-1: invalid sequence: empty");
        assert_eq!(error(" \n"), "gene-1: invalid sequence: empty");
        assert_eq!(
            error("ACG"),
            "gene-1: invalid sequence: 3 nucleotides, fewer than k = 4"
        );
        assert_eq!(
            error("M"),
            "gene-1: invalid sequence: 1 residue, fewer than k = 2"
        );
    }
}
