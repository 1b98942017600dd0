//! Compiles the crate again when sqlx's offline data or mode changes: the query macros read
//! them, but only a nightly compiler would tell cargo so.

fn main() {
    println!("cargo::rerun-if-changed=../.sqlx");
    println!("cargo::rerun-if-env-changed=SQLX_OFFLINE");
    println!("cargo::rerun-if-env-changed=SQLX_OFFLINE_DIR");
}
