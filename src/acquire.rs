//! Choosing what to test next: candidate generation over a relation's domain and range, and
//! acquisition functions over an ensemble's per-candidate mean, spread and member
//! probabilities, with per-entity diversity and cost. Pure: takes seeds, returns orderings;
//! storage lives elsewhere.

mod functions;
pub mod generate;

pub use functions::{Acquisition, Candidate, Pick, mutual_information, select};
pub use generate::{
    GenerateSpec, Scored, generate, generate_reporting, sample_like_candidates, sample_uniform,
};
