//! Integration tests: one binary, so the crate links once.

mod bad_input;
mod browser;
mod daemon;
mod history;
mod import;
mod migrations;
mod model;
mod plugins;
mod replay;
mod review;
mod rounds;
mod schema;
mod store_api;
mod support;
mod train_cli;
