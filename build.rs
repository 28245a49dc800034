//! Rebuilds the crate when a migration is added or edited: `sqlx::migrate!` embeds
//! `db/migrations` at compile time, and cargo does not otherwise watch that directory.

fn main() {
    println!("cargo:rerun-if-changed=db/migrations");
}
