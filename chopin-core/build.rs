//! Build-time `cfg` aliases, so that a condition repeated across the crate is written once.

fn main() {
    // Set by docs.rs (`[package.metadata.docs.rs]` in Cargo.toml) for the `doc(cfg)` labels.
    println!("cargo::rustc-check-cfg=cfg(docsrs)");
    cfg_aliases::cfg_aliases! {
        // A database backend is compiled in (the `db` module exists).
        chopin_db: { any(feature = "sqlite", feature = "postgres") },
    }
}
