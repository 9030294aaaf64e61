//! Build script of the `chopin` tool.
//!
//! * Rebuild when a template changes: they are embedded with `include_dir!`.
//! * Remember the Chopin checkout this binary is built from: `CHOPIN_CHECKOUT` is the absolute
//!   path of the workspace root when this crate sits in a checkout (`cargo install --path
//!   chopin-cli`, `cargo run -p chopin-web-cli`), and empty when it does not (a packaged crate);
//!   `chopin new` depends on that checkout by default. `CHOPIN_BUILD_COMMIT` is the checkout's
//!   commit (its first 12 hex digits), empty when unknown. It carries no `-dirty` mark: cargo
//!   reruns this script only when a file it names changes (`HEAD`, the branch's ref), not on
//!   every edit of a tracked file, so a recorded "dirty" (or "clean") would go stale.

#[allow(dead_code)]
#[path = "src/checkout.rs"]
mod checkout;
#[allow(dead_code)]
#[path = "src/git.rs"]
mod git;

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=src/checkout.rs");
    println!("cargo:rerun-if-changed=src/git.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir
        .parent()
        .filter(|root| checkout::is_checkout(root))
        .and_then(|root| root.canonicalize().ok());
    let (path, commit) = match root.as_deref().and_then(|r| Some((r, r.to_str()?))) {
        Some((root, path)) => {
            watch(root);
            let commit = git::head_sha(root)
                .map(|sha| git::Commit { sha, dirty: None }.short())
                .unwrap_or_default();
            (path.to_string(), commit)
        }
        None => (String::new(), String::new()),
    };
    println!("cargo:rustc-env=CHOPIN_CHECKOUT={path}");
    println!("cargo:rustc-env=CHOPIN_BUILD_COMMIT={commit}");
}

/// Rerun when the checkout moves to another commit, or its library crate's manifest changes.
fn watch(root: &Path) {
    let mut files = git::head_files(root);
    files.push(root.join(checkout::CORE_DIR).join("Cargo.toml"));
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
}
