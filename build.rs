//! Rebuilds the crate when a migration is added or edited: `sqlx::migrate!` embeds
//! `db/migrations` and `db/postgres` at compile time, and cargo does not otherwise watch them.

fn main() {
    println!("cargo:rerun-if-changed=db/migrations");
    println!("cargo:rerun-if-changed=db/postgres");
}
