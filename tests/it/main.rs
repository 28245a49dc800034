//! Integration tests: one binary, so the crate links once.

mod bad_input;
mod history;
mod import;
mod replay;
mod store_api;
mod support;
