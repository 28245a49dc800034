//! SMILES → ECFP4 bits.
//!
//! ECFP4 (Morgan, radius 2: atom environments up to two bonds wide) folded to 2048 bits is
//! the common baseline for compound similarity and property models, and it is exactly RDKit's
//! default Morgan fingerprint (`GetMorganGenerator(radius=2, fpSize=2048)`: bond types on,
//! chirality off, duplicate environments dropped), so vectors here match those computed in
//! Python for the same molecules.
//!
//! Parsing and the fingerprint come from `chematic` 1.2 (pure Rust, no C++, actively released;
//! MIT/Apache-2.0), whose `rdkit_morgan_ecfp4_bitvec` reproduces RDKit bit for bit, including
//! RDKit's aromaticity model, so Kekulé and aromatic spellings of a molecule give the same
//! bits. The other crates.io candidates only parse SMILES (`purr` 0.9, last release 2021;
//! `opensmiles` 0.1; `smiles-parser` 0.4, last release 2020), which would leave ring and
//! aromaticity perception and the Morgan hashing to us with no reference to check against.
//!
//! chematic is laxer than RDKit's sanitizer: a few structures RDKit refuses (five-bonded
//! carbon, `c1cccc1`) get bits here instead of an error.

use chematic::fp::{BitVec2048, RdkitMorganError, rdkit_morgan_ecfp4_bitvec};
use chematic::perception::AromaticityError;
use chematic::smiles::{SmilesError, SmilesParseLimits, parse_with_limits};

use super::FeaturizeError;

/// Folded ECFP4 length.
pub const SMILES_WIDTH: usize = 2048;

/// Far above any drug (biologics have their own kinds); bounds one request's cost, since the
/// fingerprint grows faster than linearly (a 20,000-atom chain takes ~0.3 s).
const MAX_ATOMS: usize = 10_000;

/// The ECFP4 bits of `smiles` as 0/1 floats. Stereo marks are read and ignored.
pub(super) fn fingerprint(entity: &str, smiles: &str) -> Result<Vec<f32>, FeaturizeError> {
    let limits = SmilesParseLimits {
        max_input_bytes: MAX_ATOMS * 16,
        max_atoms: MAX_ATOMS,
        max_bonds: MAX_ATOMS * 2,
    };
    let molecule =
        parse_with_limits(smiles, &limits).map_err(|e| syntax_error(entity, smiles, e))?;
    let bits = rdkit_morgan_ecfp4_bitvec(&molecule).map_err(|e| FeaturizeError::Smiles {
        entity: entity.to_owned(),
        message: structure_message(e),
    })?;
    Ok(to_floats(&bits))
}

fn to_floats(bits: &BitVec2048) -> Vec<f32> {
    (0..SMILES_WIDTH)
        .map(|i| if bits.get(i) { 1.0 } else { 0.0 })
        .collect()
}

fn structure_message(e: RdkitMorganError) -> String {
    match e {
        RdkitMorganError::Aromaticity(AromaticityError::KekulizationFailed { reason }) => {
            format!("aromatic system cannot be kekulized: {reason}")
        }
        other => other.to_string(),
    }
}

/// Turns the parser's error into ours, with a 1-based character position. The parser reports
/// unclosed rings and parentheses at the end of the input; we point at the opening instead,
/// which is where the mistake usually is.
fn syntax_error(entity: &str, smiles: &str, e: SmilesError) -> FeaturizeError {
    let at = |byte: usize, message: String| FeaturizeError::SmilesSyntax {
        entity: entity.to_owned(),
        position: char_position(smiles, byte),
        message,
    };
    let whole = |message: String| FeaturizeError::Smiles {
        entity: entity.to_owned(),
        message,
    };
    let lexed = || Lexed::new(smiles);
    match e {
        SmilesError::EmptyInput => whole("empty string".into()),
        SmilesError::ResourceLimit {
            resource,
            actual,
            limit,
        } => whole(format!(
            "{actual} {resource}, more than the {limit} allowed"
        )),
        SmilesError::UnexpectedEnd { pos } => at(pos, "unexpected end".into()),
        SmilesError::UnknownElement { symbol, pos } => {
            at(pos, format!("unknown element '{symbol}'"))
        }
        SmilesError::UnmatchedRingClosure { pos, .. }
        | SmilesError::UnmatchedExtendedRingClosure { pos, .. } => match lexed().unclosed_ring() {
            Some((label, byte)) => at(byte, format!("unclosed ring {label}")),
            None => at(pos, "unclosed ring".into()),
        },
        SmilesError::MismatchedParentheses { pos } => match lexed().unclosed_branch() {
            Some(byte) => at(byte, "unclosed parenthesis".into()),
            None => at(pos, "unbalanced parenthesis".into()),
        },
        SmilesError::InvalidBracketAtom { detail, pos } => {
            at(pos, format!("invalid bracket atom: {detail}"))
        }
        SmilesError::ConflictingRingBond { ring_num, pos } => at(
            pos,
            format!("ring {ring_num} has different bonds at its two ends"),
        ),
        SmilesError::ConflictingExtendedRingBond { ring_num, pos } => at(
            pos,
            format!("ring {ring_num} has different bonds at its two ends"),
        ),
        SmilesError::NestingTooDeep { pos } => at(pos, "branches nested too deeply".into()),
        SmilesError::UnexpectedCharacter { pos } => {
            let found = smiles.get(pos..).and_then(|s| s.chars().next());
            match found {
                Some(c) => at(pos, format!("unexpected character {c:?}")),
                None => at(pos, "unexpected character".into()),
            }
        }
        SmilesError::UnsupportedChiralityClass { class, pos } => {
            at(pos, format!("unsupported chirality class '@{class}'"))
        }
        SmilesError::InvalidValence {
            element,
            atom,
            valence,
            max,
        } => {
            let message = format!("{element} has {valence} bonds, more than {max}");
            match lexed().atoms.get(atom) {
                Some(&byte) => at(byte, message),
                None => whole(message),
            }
        }
    }
}

/// 1-based character position of a byte offset (offsets past the end point just after it).
fn char_position(s: &str, byte: usize) -> usize {
    let mut end = byte.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].chars().count() + 1
}

/// Just enough of the SMILES grammar to locate what the parser's errors leave unplaced: atoms,
/// branch openings and ring labels, by byte offset.
#[derive(Debug, Default)]
struct Lexed {
    /// Where each atom starts, in input order (the parser's atom numbering).
    atoms: Vec<usize>,
    /// Branches still open at the end.
    open_branches: Vec<usize>,
    /// Ring labels still open at the end, with where they were opened.
    open_rings: Vec<(u32, usize)>,
}

impl Lexed {
    fn new(smiles: &str) -> Self {
        let b = smiles.as_bytes();
        let mut lexed = Lexed::default();
        let mut i = 0;
        while i < b.len() {
            let start = i;
            i += 1;
            match b[start] {
                b'[' => {
                    lexed.atoms.push(start);
                    while i < b.len() && b[i] != b']' {
                        i += 1;
                    }
                    i += 1;
                }
                b'(' => lexed.open_branches.push(start),
                b')' => {
                    lexed.open_branches.pop();
                }
                b'%' => {
                    let label = if b.get(i) == Some(&b'(') {
                        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                        let label = number(&b[i + 1..i + 1 + digits]);
                        i += 1 + digits + 1;
                        label
                    } else {
                        let digits = b[i..].iter().take(2).take_while(|c| c.is_ascii_digit());
                        let digits = digits.count();
                        let label = number(&b[i..i + digits]);
                        i += digits;
                        label
                    };
                    lexed.ring(label, start);
                }
                d @ b'0'..=b'9' => lexed.ring(u32::from(d - b'0'), start),
                b'C' if b.get(i) == Some(&b'l') => {
                    lexed.atoms.push(start);
                    i += 1;
                }
                b'B' if b.get(i) == Some(&b'r') => {
                    lexed.atoms.push(start);
                    i += 1;
                }
                c if c.is_ascii_alphabetic() || c == b'*' => lexed.atoms.push(start),
                _ => {}
            }
        }
        lexed
    }

    /// A label opens a ring, and its next use closes it.
    fn ring(&mut self, label: u32, at: usize) {
        match self.open_rings.iter().position(|&(l, _)| l == label) {
            Some(k) => {
                self.open_rings.swap_remove(k);
            }
            None => self.open_rings.push((label, at)),
        }
    }

    fn unclosed_ring(&self) -> Option<(u32, usize)> {
        self.open_rings.iter().copied().min_by_key(|&(_, at)| at)
    }

    fn unclosed_branch(&self) -> Option<usize> {
        self.open_branches.last().copied()
    }
}

fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::featurize::tanimoto;

    fn fp(smiles: &str) -> Vec<f32> {
        fingerprint("m", smiles).unwrap_or_else(|e| panic!("{smiles}: {e}"))
    }

    fn on_bits(smiles: &str) -> Vec<usize> {
        let v = fp(smiles);
        assert!(v.iter().all(|&x| x == 0.0 || x == 1.0), "{smiles}: not 0/1");
        (0..v.len()).filter(|&i| v[i] == 1.0).collect()
    }

    fn error(smiles: &str) -> String {
        match fingerprint("my-mol", smiles) {
            Ok(_) => panic!("{smiles:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    const ASPIRIN: &str = "CC(=O)Oc1ccccc1C(=O)O";
    const SALICYLIC_ACID: &str = "OC(=O)c1ccccc1O";
    const CAFFEINE: &str = "CN1C=NC2=C1C(=O)N(C(=O)N2C)C";

    /// Pinned so a dependency change that moves bits fails here. Benzene's bits and ethanol's
    /// 80, 294, 807 and 1057 are the folds (mod 2048) of RDKit's sparse ids (98513984, 2763854213,
    /// 3218693969; 2245384272, 3542456614, 864662311, 2246728737).
    #[test]
    fn bits_are_pinned_and_match_rdkit() {
        assert_eq!(on_bits("c1ccccc1"), [389, 1088, 1873]);
        assert_eq!(on_bits("CCO"), [80, 222, 294, 807, 1057, 1410]);
        assert_eq!(
            on_bits(ASPIRIN),
            [
                389, 456, 650, 695, 807, 909, 1017, 1035, 1047, 1057, 1088, 1199, 1380, 1410, 1447,
                1468, 1616, 1729, 1750, 1775, 1873, 1917, 1970, 1991
            ]
        );
    }

    #[test]
    fn spelling_does_not_change_the_fingerprint() {
        assert_eq!(fp("OCC"), fp("CCO"));
        assert_eq!(
            fp("C1=CC=CC=C1"),
            fp("c1ccccc1"),
            "Kekulé vs aromatic benzene"
        );
        assert_eq!(fp("OC(=O)c1c(O)cccc1"), fp(SALICYLIC_ACID), "atom order");
        assert_eq!(fp("C%12CCCCC%12"), fp("C1CCCCC1"), "two-digit ring label");
        assert_eq!(
            fp("C[C@H](N)C(=O)O"),
            fp("CC(N)C(=O)O"),
            "stereo is ignored"
        );
        assert_eq!(fp("F/C=C/F"), fp("FC=CF"), "double-bond stereo is ignored");
    }

    #[test]
    fn similar_molecules_share_bits_and_different_ones_do_not() {
        let (aspirin, salicylic, caffeine) = (fp(ASPIRIN), fp(SALICYLIC_ACID), fp(CAFFEINE));
        let shared = aspirin
            .iter()
            .zip(&salicylic)
            .filter(|(a, b)| **a == 1.0 && **b == 1.0)
            .count();
        assert!(
            shared >= 10,
            "aspirin and salicylic acid share {shared} bits"
        );
        let near = tanimoto(&aspirin, &salicylic);
        let far = tanimoto(&aspirin, &caffeine);
        assert!(near > 2.0 * far, "near {near}, far {far}");
        let (benzene, cyclohexane) = (on_bits("c1ccccc1"), on_bits("C1CCCCC1"));
        assert!(
            benzene.iter().all(|b| !cyclohexane.contains(b)),
            "{benzene:?} {cyclohexane:?}"
        );
    }

    #[test]
    fn charges_brackets_isotopes_and_fragments_parse() {
        for smiles in [
            "C[N+](=O)[O-]",
            "[NH4+].[Cl-]",
            "[13CH4]",
            "c1cc[nH]c1",
            "CC(C)(C)C(=O)[O-].[Na+]",
            "C%(123)CC%(123)",
            "Clc1ccc(Br)cc1",
        ] {
            assert!(!on_bits(smiles).is_empty(), "{smiles}");
        }
        // RDKit's mass invariant is the isotope's mass less the element's average weight,
        // truncated: 13C (0.99) counts as plain carbon, 14C (1.99) does not.
        assert_eq!(on_bits("[13CH4]"), on_bits("C"));
        assert_ne!(on_bits("[14CH4]"), on_bits("C"), "isotope");
        assert_ne!(on_bits("C[N+](C)(C)C"), on_bits("CN(C)C"), "charge");
    }

    #[test]
    fn invalid_smiles_name_the_entity_and_the_position() {
        let cases = [
            (
                "CCC1CCCC",
                "my-mol: invalid SMILES at position 4: unclosed ring 1",
            ),
            (
                "C%12CC",
                "my-mol: invalid SMILES at position 2: unclosed ring 12",
            ),
            (
                "CC(C",
                "my-mol: invalid SMILES at position 3: unclosed parenthesis",
            ),
            (
                "CC)C",
                "my-mol: invalid SMILES at position 3: unexpected character ')'",
            ),
            (
                "C[Zz]C",
                "my-mol: invalid SMILES at position 3: invalid bracket atom: missing element symbol",
            ),
            (
                "CQC",
                "my-mol: invalid SMILES at position 2: unexpected character 'Q'",
            ),
            (
                "CC[C",
                "my-mol: invalid SMILES at position 5: invalid bracket atom: missing ']'",
            ),
            (
                "CCO(C)C",
                "my-mol: invalid SMILES at position 3: O has 3 bonds, more than 2",
            ),
            ("", "my-mol: invalid SMILES: empty string"),
        ];
        for (smiles, expected) in cases {
            assert_eq!(error(smiles), expected, "{smiles:?}");
        }
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            error("CCé"),
            "my-mol: invalid SMILES at position 3: unexpected character 'é'"
        );
        assert_eq!(char_position("aé", 3), 3);
        assert_eq!(char_position("aé", 2), 2, "inside a character");
        assert_eq!(char_position("ab", 9), 3, "past the end");
    }

    #[test]
    fn unkekulizable_aromatic_rings_are_refused() {
        assert_eq!(
            error("c1ccnc1N(:n)"),
            "my-mol: invalid SMILES: aromatic system cannot be kekulized: atom 4 (C) cannot be \
             assigned a double bond"
        );
    }

    #[test]
    fn oversized_molecules_are_refused_before_fingerprinting() {
        let message = error(&"C".repeat(MAX_ATOMS + 1));
        assert!(message.contains("allowed"), "{message}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Garbage in gives an error or bits, never a panic, and a position inside the input.
        #[test]
        fn any_input_is_handled(s in r"[CNOSPFIcnosp()\[\]=#%0-9@+\-H.*/\\:é lr]{0,40}") {
            match fingerprint("m", &s) {
                Ok(v) => proptest::prop_assert_eq!(v.len(), SMILES_WIDTH),
                Err(FeaturizeError::SmilesSyntax { position, .. }) => {
                    proptest::prop_assert!((1..=s.chars().count() + 1).contains(&position));
                }
                Err(_) => {}
            }
        }
    }

    /// `cargo test --release --lib featurize -- --ignored`: drug-sized molecules must stay far
    /// below a millisecond each, since `ask` featurizes whole categories.
    #[test]
    #[ignore = "timing; meaningful in release builds only"]
    fn two_thousand_drugs_take_well_under_a_second() {
        let drugs = [
            ASPIRIN,
            CAFFEINE,
            "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",
            "CN1CCC[C@H]1c2cccnc2",
            "CC12CCC3C(CCC4=CC(=O)CCC34C)C1CCC2O",
            "COc1ccc2[nH]cc(CCNC(C)=O)c2c1",
            "CN(C)CCCN1c2ccccc2CCc2ccccc21",
            "Clc1ccc2c(c1)C(=NCC(=O)N2C)c1ccccc1",
            "CC(C)NCC(O)COc1cccc2ccccc12",
            "CC1=C(C(=O)N(N1C)c1ccccc1)N(C)CS(=O)(=O)O",
        ];
        let start = std::time::Instant::now();
        let on: usize = (0..2000)
            .map(|i| on_bits(drugs[i % drugs.len()]).len())
            .sum();
        let elapsed = start.elapsed();
        println!("2000 SMILES in {elapsed:?} ({on} bits set)");
        assert!(elapsed.as_secs_f64() < 0.5, "{elapsed:?}");
    }

    #[test]
    fn lexer_places_atoms_rings_and_branches() {
        let l = Lexed::new("[NH4+]C(Cl)%10CBr1");
        assert_eq!(l.atoms, [0, 6, 8, 14, 15]);
        assert_eq!(l.open_rings, [(10, 11), (1, 17)]);
        assert_eq!(l.unclosed_ring(), Some((10, 11)));
        assert_eq!(l.unclosed_branch(), None);
    }
}
