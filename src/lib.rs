//! hypograph: turns a biomedical knowledge graph into a hypothesis-testing machine.
//!
//! See `ARCHITECTURE.md` for the data flow and which module owns what.

pub mod acquire;
pub mod ask;
pub mod cli;
pub mod engine;
pub mod featurize;
pub mod fetch;
pub mod graph;
pub mod limits;
pub mod logging;
pub mod model;
pub mod plot;
pub mod plugin;
pub mod progress;
pub mod schedule;
pub mod server;
pub mod simulate;
pub mod spec_parse;
pub mod store;
pub mod training;
pub mod workflow;
