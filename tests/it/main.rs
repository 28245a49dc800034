//! Integration tests: one binary, so the crate links once.

mod access;
mod ask;
mod ask_api;
mod bad_input;
mod browser;
mod daemon;
mod durability;
mod entity;
mod features;
mod history;
mod import;
mod migrations;
mod model;
mod pinned;
mod plugins;
mod replay;
mod retraction;
mod review;
mod rounds;
mod schema;
mod sources;
mod store_api;
mod support;
mod train_cli;
