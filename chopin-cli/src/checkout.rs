//! What makes a folder a Chopin checkout: `chopin-core/Cargo.toml` whose package is
//! `chopin-web-core`. Shared by the build script (`build.rs` includes this file with `#[path]`)
//! and by `chopin new`.

use std::path::Path;

/// The package name of Chopin's library crate. Its library name is `chopin_core`; the package
/// name differs because `chopin-core` on crates.io belongs to another project.
pub const CORE_PACKAGE: &str = "chopin-web-core";

/// The folder of the library crate inside a checkout.
pub const CORE_DIR: &str = "chopin-core";

/// The `name` of the `[package]` table of a `Cargo.toml`, read line by line (enough for the
/// manifests Chopin writes: `name = "…"` on a line of its own).
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "name" {
            let value = value.trim();
            let value = value.split('#').next().unwrap_or(value).trim();
            return value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string);
        }
    }
    None
}

/// Whether `root` holds a Chopin checkout: `<root>/chopin-core/Cargo.toml` names the package
/// `chopin-web-core`.
pub fn is_checkout(root: &Path) -> bool {
    std::fs::read_to_string(root.join(CORE_DIR).join("Cargo.toml"))
        .ok()
        .and_then(|text| package_name(&text))
        .is_some_and(|name| name == CORE_PACKAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_package_name_only_from_the_package_table() {
        let manifest = "[workspace]\nname = \"nope\"\n\n[package]\nversion = \"1\"\nname = \"chopin-web-core\" # the library\n\n[dependencies]\nname = \"x\"\n";
        assert_eq!(package_name(manifest).as_deref(), Some(CORE_PACKAGE));
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
        assert_eq!(package_name("[package]\nname.workspace = true\n"), None);
    }

    #[test]
    fn this_repository_is_a_checkout_and_another_crate_is_not() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(is_checkout(root));
        let dir = tempfile::TempDir::new().unwrap();
        assert!(!is_checkout(dir.path()));
        // The other project's crate of the same folder name is not ours.
        std::fs::create_dir(dir.path().join("chopin-core")).unwrap();
        std::fs::write(
            dir.path().join("chopin-core/Cargo.toml"),
            "[package]\nname = \"chopin-core\"\nversion = \"0.5.0\"\n",
        )
        .unwrap();
        assert!(!is_checkout(dir.path()));
    }
}
