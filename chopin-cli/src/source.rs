//! Where a new project gets Chopin from: the `chopin-core` dependency line of its `Cargo.toml`.
//!
//! Chopin is not on crates.io, and the names `chopin-core`, `chopin-macros` and `chopin-cli`
//! there belong to another project. So a generated project never names a registry version: it
//! depends on a local checkout by path (by default the checkout this `chopin` was built from)
//! or on a git repository, and always with `package = "chopin-web-core"`, so that no
//! resolution can land on somebody else's crate. The dependency keeps the name `chopin-core`
//! (library `chopin_core`), so the project's code reads `use chopin_core::…`.

use std::path::{Path, PathBuf};

use crate::checkout::{CORE_DIR, CORE_PACKAGE, is_checkout};
use crate::git::{self, Commit};
use crate::output::{CliError, CliResult};

/// Where the generated project's `chopin-core` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChopinSource {
    /// A local checkout, by path.
    Checkout {
        /// The checkout's root folder (holding `chopin-core/`), absolute.
        root: PathBuf,
        /// Its commit, when it is a git checkout.
        commit: Option<Commit>,
    },
    /// A git repository, fetched by cargo.
    Git {
        /// The repository's URL.
        url: String,
        /// The revision or tag to use (cargo's default branch when `None`).
        pin: Option<GitPin>,
    },
}

/// A pinned git revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitPin {
    /// A commit (`rev = "…"`).
    Rev(String),
    /// A tag (`tag = "…"`).
    Tag(String),
}

/// The source options of `chopin new`, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct SourceArgs {
    /// `--chopin-path <dir>`.
    pub chopin_path: Option<PathBuf>,
    /// `--chopin-git <url>`.
    pub chopin_git: Option<String>,
    /// `--rev <sha>`.
    pub rev: Option<String>,
    /// `--tag <tag>`.
    pub tag: Option<String>,
}

/// The checkout this binary was built from (recorded by `build.rs`), if any.
pub fn built_from() -> Option<&'static Path> {
    let path = env!("CHOPIN_CHECKOUT");
    (!path.is_empty()).then(|| Path::new(path))
}

/// The commit this binary was built from (recorded by `build.rs`), if known.
pub fn built_at() -> Option<&'static str> {
    let commit = env!("CHOPIN_BUILD_COMMIT");
    (!commit.is_empty()).then_some(commit)
}

/// The fix offered whenever no usable source was found.
const SOURCE_OPTIONS: &str = "pass `--chopin-path <checkout>` (a folder holding chopin-core/), or `--chopin-git <url>` (with `--rev <sha>` or `--tag <tag>`), or reinstall the tool from a checkout: `cargo install --path chopin-cli`";

/// Pick the source from the options, defaulting to `remembered` (the checkout this binary was
/// built from, see [`built_from`]). Checks that a checkout really holds Chopin's library crate,
/// so that `chopin new` fails before writing anything.
pub fn resolve(args: &SourceArgs, remembered: Option<&Path>) -> CliResult<ChopinSource> {
    if args.rev.is_some() && args.tag.is_some() {
        return Err(CliError::new("`--rev` and `--tag` cannot be used together")
            .hint("pin the git source with one of them"));
    }
    if let Some(url) = &args.chopin_git {
        if args.chopin_path.is_some() {
            return Err(CliError::new(
                "`--chopin-path` and `--chopin-git` cannot be used together",
            )
            .hint("pick one source for Chopin"));
        }
        let url = url.trim();
        if url.is_empty() {
            return Err(CliError::new("`--chopin-git` needs a repository URL")
                .hint("for example `--chopin-git https://github.com/<owner>/chopin --tag <tag>`"));
        }
        let pin = match (&args.rev, &args.tag) {
            (Some(rev), _) => Some(GitPin::Rev(non_empty("--rev", rev)?)),
            (_, Some(tag)) => Some(GitPin::Tag(non_empty("--tag", tag)?)),
            _ => None,
        };
        return Ok(ChopinSource::Git {
            url: url.to_string(),
            pin,
        });
    }
    if args.rev.is_some() || args.tag.is_some() {
        return Err(
            CliError::new("`--rev` and `--tag` pin a git source").hint("add `--chopin-git <url>`")
        );
    }
    match (&args.chopin_path, remembered) {
        (Some(dir), _) => {
            if !is_checkout(dir) {
                return Err(CliError::new(format!(
                    "{} is not a Chopin checkout (no {CORE_DIR}/Cargo.toml of package {CORE_PACKAGE}); nothing was written",
                    dir.display()
                ))
                .hint("pass the folder that holds chopin-core/ and chopin-cli/"));
            }
            checkout(dir)
        }
        (None, Some(dir)) => {
            if !is_checkout(dir) {
                return Err(CliError::new(format!(
                    "this chopin was built from the Chopin checkout at {}, which is gone (no {CORE_DIR}/Cargo.toml of package {CORE_PACKAGE} there); nothing was written",
                    dir.display()
                ))
                .hint(SOURCE_OPTIONS));
            }
            checkout(dir)
        }
        (None, None) => Err(CliError::new(
            "this chopin was not built from a Chopin checkout, so it has no Chopin to depend on; nothing was written",
        )
        .hint(SOURCE_OPTIONS)),
    }
}

fn non_empty(option: &str, value: &str) -> CliResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(CliError::new(format!("`{option}` needs a value")));
    }
    Ok(value.to_string())
}

fn checkout(dir: &Path) -> CliResult<ChopinSource> {
    let root = dir
        .canonicalize()
        .map_err(|e| CliError::io("resolve", dir, e))?;
    let commit = git::commit(&root);
    Ok(ChopinSource::Checkout { root, commit })
}

/// Escape a string for a TOML basic string (quotes included).
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl ChopinSource {
    /// The keys of the `chopin-core = { … }` dependency that say where it comes from, starting
    /// with `package = "chopin-web-core"`: `path = "<root>/chopin-core"`, or `git = "<url>"`
    /// with an optional `rev` or `tag`.
    pub fn dependency_keys(&self) -> String {
        let package = format!("package = {}", toml_string(CORE_PACKAGE));
        match self {
            ChopinSource::Checkout { root, .. } => {
                let core = root.join(CORE_DIR).to_string_lossy().replace('\\', "/");
                format!("{package}, path = {}", toml_string(&core))
            }
            ChopinSource::Git { url, pin } => {
                let mut keys = format!("{package}, git = {}", toml_string(url));
                match pin {
                    Some(GitPin::Rev(rev)) => {
                        keys.push_str(&format!(", rev = {}", toml_string(rev)))
                    }
                    Some(GitPin::Tag(tag)) => {
                        keys.push_str(&format!(", tag = {}", toml_string(tag)))
                    }
                    None => {}
                }
                keys
            }
        }
    }

    /// What `chopin new` prints about the source: `using Chopin from <path> (commit <sha>)`.
    pub fn describe(&self) -> String {
        match self {
            ChopinSource::Checkout { root, commit } => format!(
                "using Chopin from {} ({})",
                root.display(),
                match commit {
                    Some(commit) => format!("commit {}", commit.short()),
                    None => "not a git checkout".to_string(),
                }
            ),
            ChopinSource::Git { url, pin } => format!(
                "using Chopin from {url} ({})",
                match pin {
                    Some(GitPin::Rev(rev)) => format!("rev {rev}"),
                    Some(GitPin::Tag(tag)) => format!("tag {tag}"),
                    None => "its default branch".to_string(),
                }
            ),
        }
    }

    /// A warning when the checkout is not at the commit this tool was built from (`built`): the
    /// project's files come from the tool's templates, its library from the checkout.
    pub fn mismatch(&self, built: Option<&str>) -> Option<String> {
        let ChopinSource::Checkout {
            root,
            commit: Some(commit),
        } = self
        else {
            return None;
        };
        let built = built?;
        if commit.sha.starts_with(built) {
            return None;
        }
        Some(format!(
            "note: this chopin was built at commit {built}, the checkout is at {}; if the new project does not build, reinstall the tool from the checkout: cargo install --path {}",
            commit.short(),
            root.join("chopin-cli").display()
        ))
    }

    /// The lock file to start the project from: the checkout's `Cargo.lock`, so that the
    /// project builds with the dependency versions Chopin was tested with. `None` for a git
    /// source (cargo resolves the latest compatible versions).
    pub fn lock_file(&self) -> Option<PathBuf> {
        match self {
            ChopinSource::Checkout { root, .. } => {
                Some(root.join("Cargo.lock")).filter(|f| f.is_file())
            }
            ChopinSource::Git { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal checkout: `chopin-core/Cargo.toml` naming `package`.
    fn fake_checkout(package: &str) -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("chopin-core")).unwrap();
        std::fs::write(
            dir.path().join("chopin-core/Cargo.toml"),
            format!("[package]\nname = \"{package}\"\nversion = \"0.1.0\"\n"),
        )
        .unwrap();
        dir
    }

    /// The `chopin-core` table of `[dependencies]` in a manifest made of `keys`.
    fn parsed(keys: &str) -> toml::Table {
        let manifest =
            format!("[dependencies]\nchopin-core = {{ {keys}, default-features = false }}\n");
        let value: toml::Table = toml::from_str(&manifest).unwrap();
        value["dependencies"]["chopin-core"]
            .as_table()
            .unwrap()
            .clone()
    }

    #[test]
    fn defaults_to_the_remembered_checkout() {
        let checkout = fake_checkout(CORE_PACKAGE);
        let source = resolve(&SourceArgs::default(), Some(checkout.path())).unwrap();
        let root = checkout.path().canonicalize().unwrap();
        assert_eq!(
            source,
            ChopinSource::Checkout {
                root: root.clone(),
                commit: None
            }
        );
        let table = parsed(&source.dependency_keys());
        assert_eq!(table["package"].as_str(), Some(CORE_PACKAGE));
        assert_eq!(
            table["path"].as_str().map(PathBuf::from),
            Some(root.join("chopin-core"))
        );
        assert_eq!(
            source.describe(),
            format!("using Chopin from {} (not a git checkout)", root.display())
        );
        assert_eq!(source.lock_file(), None, "the checkout has no Cargo.lock");
        std::fs::write(checkout.path().join("Cargo.lock"), "").unwrap();
        assert_eq!(source.lock_file(), Some(root.join("Cargo.lock")));
    }

    #[test]
    fn a_gone_or_foreign_remembered_checkout_fails_naming_the_options() {
        let gone = tempfile::TempDir::new().unwrap();
        let path = gone.path().join("chopin");
        let err = resolve(&SourceArgs::default(), Some(&path)).unwrap_err();
        assert!(err.message.contains("is gone"), "{err}");
        assert!(err.message.contains(&path.display().to_string()), "{err}");
        let hint = err.hint.unwrap();
        assert!(
            hint.contains("--chopin-path") && hint.contains("--chopin-git"),
            "{hint}"
        );

        // The other project's `chopin-core` in its place is not a Chopin checkout.
        let foreign = fake_checkout("chopin-core");
        let err = resolve(&SourceArgs::default(), Some(foreign.path())).unwrap_err();
        assert!(err.message.contains("is gone"), "{err}");

        let err = resolve(&SourceArgs::default(), None).unwrap_err();
        assert!(
            err.message.contains("not built from a Chopin checkout"),
            "{err}"
        );
        assert!(err.hint.unwrap().contains("--chopin-git"));
    }

    #[test]
    fn chopin_path_wins_over_the_remembered_checkout_and_is_checked() {
        let remembered = fake_checkout(CORE_PACKAGE);
        let chosen = fake_checkout(CORE_PACKAGE);
        let args = SourceArgs {
            chopin_path: Some(chosen.path().to_path_buf()),
            ..SourceArgs::default()
        };
        let source = resolve(&args, Some(remembered.path())).unwrap();
        let ChopinSource::Checkout { root, .. } = &source else {
            panic!("{source:?}")
        };
        assert_eq!(*root, chosen.path().canonicalize().unwrap());

        let not_chopin = tempfile::TempDir::new().unwrap();
        let args = SourceArgs {
            chopin_path: Some(not_chopin.path().to_path_buf()),
            ..SourceArgs::default()
        };
        let err = resolve(&args, Some(remembered.path())).unwrap_err();
        assert!(err.message.contains("not a Chopin checkout"), "{err}");
    }

    #[test]
    fn this_repository_resolves_with_its_commit() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let args = SourceArgs {
            chopin_path: Some(root.to_path_buf()),
            ..SourceArgs::default()
        };
        let source = resolve(&args, None).unwrap();
        // A clean clone in CI, a working tree here: either way `.git` gives the commit.
        if root.join(".git").exists() {
            let ChopinSource::Checkout {
                commit: Some(commit),
                ..
            } = &source
            else {
                panic!("{source:?}")
            };
            assert!(
                source
                    .describe()
                    .ends_with(&format!("(commit {})", commit.short())),
                "{}",
                source.describe()
            );
            assert_eq!(source.mismatch(Some(&commit.sha[..12])), None);
            let note = source.mismatch(Some("000000000000")).unwrap();
            assert!(note.contains("cargo install --path"), "{note}");
        }
        assert!(source.lock_file().is_some());
    }

    #[test]
    fn git_sources_render_rev_tag_or_branch() {
        let git = |rev: Option<&str>, tag: Option<&str>| {
            resolve(
                &SourceArgs {
                    chopin_git: Some("https://example.com/chopin.git".into()),
                    rev: rev.map(Into::into),
                    tag: tag.map(Into::into),
                    chopin_path: None,
                },
                None,
            )
        };
        let source = git(Some("abc123"), None).unwrap();
        let table = parsed(&source.dependency_keys());
        assert_eq!(table["package"].as_str(), Some(CORE_PACKAGE));
        assert_eq!(
            table["git"].as_str(),
            Some("https://example.com/chopin.git")
        );
        assert_eq!(table["rev"].as_str(), Some("abc123"));
        assert!(!table.contains_key("tag") && !table.contains_key("path"));
        assert_eq!(
            source.describe(),
            "using Chopin from https://example.com/chopin.git (rev abc123)"
        );
        assert_eq!(source.lock_file(), None);
        assert_eq!(source.mismatch(Some("000000000000")), None);

        let table = parsed(&git(None, Some("v0.1.0")).unwrap().dependency_keys());
        assert_eq!(table["tag"].as_str(), Some("v0.1.0"));
        assert!(!table.contains_key("rev"));

        let source = git(None, None).unwrap();
        let table = parsed(&source.dependency_keys());
        assert_eq!(table.len(), 3, "package, git, default-features: {table:?}");
        assert!(source.describe().ends_with("(its default branch)"));

        assert!(git(Some("a"), Some("b")).is_err());
        assert!(git(Some(" "), None).is_err());
    }

    #[test]
    fn conflicting_options_are_refused_even_without_clap() {
        let checkout = fake_checkout(CORE_PACKAGE);
        let both = SourceArgs {
            chopin_path: Some(checkout.path().to_path_buf()),
            chopin_git: Some("https://example.com/chopin.git".into()),
            ..SourceArgs::default()
        };
        assert!(resolve(&both, None).is_err());
        let rev_alone = SourceArgs {
            rev: Some("abc".into()),
            ..SourceArgs::default()
        };
        let err = resolve(&rev_alone, Some(checkout.path())).unwrap_err();
        assert!(err.hint.unwrap().contains("--chopin-git"));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb\u{1}"), r#""a\nb\u0001""#);
        let table = parsed(&format!("path = {}", toml_string("/odd \"dir\"\\\n\u{7f}")));
        assert_eq!(table["path"].as_str(), Some("/odd \"dir\"\\\n\u{7f}"));
    }
}
