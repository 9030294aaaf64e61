//! The commit a Chopin checkout is at, read from its `.git` folder without needing the `git`
//! program (and, when `git` is installed, whether the working tree has uncommitted changes).
//!
//! Shared by the build script (`build.rs` includes this file with `#[path]`), which records the
//! commit `chopin` was built from, and by `chopin new`, which reports the commit of the
//! checkout a new project will depend on.

use std::path::{Path, PathBuf};

/// A checkout's commit: the full hexadecimal object name of `HEAD`, and whether tracked files
/// differ from it (`None` when that could not be checked: no `git` program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full object name of the commit `HEAD` points at.
    pub sha: String,
    /// Whether tracked files have uncommitted changes, when known.
    pub dirty: Option<bool>,
}

impl Commit {
    /// The commit's first 12 hex digits, plus `-dirty` when the tree has uncommitted changes.
    pub fn short(&self) -> String {
        let sha = &self.sha[..self.sha.len().min(12)];
        if self.dirty == Some(true) {
            format!("{sha}-dirty")
        } else {
            sha.to_string()
        }
    }
}

/// The git folder of the checkout at `root`: `root/.git` when it is a folder, or the folder a
/// `.git` file points to (`gitdir: …`, as in a worktree or a submodule).
pub fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let dir = root.join(target);
    dir.is_dir().then_some(dir)
}

/// The folder holding the shared refs: the `commondir` of a worktree, or the git folder itself.
fn common_dir(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) => git_dir.join(text.trim()),
        Err(_) => git_dir.to_path_buf(),
    }
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How many symbolic refs (`ref: …` files) are followed before giving up: git itself stops at
/// 5, and a cycle (`a` → `b` → `a`) must end rather than overflow the stack.
const MAX_SYMREF_DEPTH: usize = 5;

/// The object name `reference` (such as `refs/heads/main`) points at: its loose file, or its
/// line in `packed-refs`. `None` past [`MAX_SYMREF_DEPTH`] symbolic refs.
fn resolve_ref(git_dir: &Path, reference: &str, depth: usize) -> Option<String> {
    if depth > MAX_SYMREF_DEPTH {
        return None;
    }
    for dir in [git_dir.to_path_buf(), common_dir(git_dir)] {
        if let Ok(text) = std::fs::read_to_string(dir.join(reference)) {
            let text = text.trim();
            if let Some(next) = text.strip_prefix("ref:") {
                return resolve_ref(git_dir, next.trim(), depth + 1);
            }
            if is_sha(text) {
                return Some(text.to_string());
            }
        }
        if let Ok(packed) = std::fs::read_to_string(dir.join("packed-refs")) {
            let found = packed.lines().find_map(|line| {
                let (sha, name) = line.split_once(' ')?;
                (name.trim() == reference && is_sha(sha)).then(|| sha.to_string())
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// The commit `HEAD` of the checkout at `root` points at, or `None` when `root` is not a git
/// checkout (a source archive, a packaged crate) or its `HEAD` cannot be read.
pub fn head_sha(root: &Path) -> Option<String> {
    let git_dir = git_dir(root)?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref:") {
        Some(reference) => resolve_ref(&git_dir, reference.trim(), 1),
        None => is_sha(head).then(|| head.to_string()),
    }
}

/// Whether the tracked files of the checkout at `root` differ from `HEAD`, asking the `git`
/// program; `None` when it is not installed or fails.
pub fn is_dirty(root: &Path) -> Option<bool> {
    // `--no-optional-locks`: a read-only look, which never takes `index.lock` and so never
    // gets in the way of a `git commit` running at the same time.
    let out = std::process::Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(!out.stdout.is_empty())
}

/// The checkout's commit, with its dirty flag when `git` can tell.
pub fn commit(root: &Path) -> Option<Commit> {
    Some(Commit {
        sha: head_sha(root)?,
        dirty: is_dirty(root),
    })
}

/// The files whose change moves `HEAD` of the checkout at `root`: `HEAD` itself, the branch
/// file it names (when that exists as a loose file) and `packed-refs`. Only existing files are
/// listed (the build script reruns when one changes; naming a missing file would rerun it on
/// every build).
#[allow(
    dead_code,
    reason = "called by build.rs only (and this module's tests)"
)]
pub fn head_files(root: &Path) -> Vec<PathBuf> {
    let Some(git_dir) = git_dir(root) else {
        return Vec::new();
    };
    let mut files = vec![git_dir.join("HEAD")];
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref:")
    {
        for dir in [git_dir.clone(), common_dir(&git_dir)] {
            files.push(dir.join(reference.trim()));
            files.push(dir.join("packed-refs"));
        }
    }
    files.retain(|f| f.is_file());
    files.sort();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
    const OTHER: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/refs/heads")).unwrap();
        dir
    }

    #[test]
    fn reads_a_branch_a_packed_ref_and_a_detached_head() {
        let dir = repo();
        let git = dir.path().join(".git");
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(head_sha(dir.path()), None, "an unborn branch has no commit");

        std::fs::write(
            git.join("packed-refs"),
            format!("# pack-refs with: peeled\n{OTHER} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(head_sha(dir.path()).as_deref(), Some(OTHER));

        // A loose ref wins over the packed one.
        std::fs::write(git.join("refs/heads/main"), format!("{SHA}\n")).unwrap();
        assert_eq!(head_sha(dir.path()).as_deref(), Some(SHA));
        assert!(head_files(dir.path()).contains(&git.join("refs/heads/main")));

        std::fs::write(git.join("HEAD"), format!("{OTHER}\n")).unwrap();
        assert_eq!(head_sha(dir.path()).as_deref(), Some(OTHER));
        assert_eq!(head_files(dir.path()), [git.join("HEAD")]);
    }

    #[test]
    fn symbolic_refs_are_followed_a_bounded_number_of_times() {
        let dir = repo();
        let git = dir.path().join(".git");
        std::fs::write(git.join("HEAD"), "ref: refs/heads/a\n").unwrap();
        // A chain HEAD → a → b → c → d → e: five symbolic refs, as far as git goes.
        for (from, to) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")] {
            std::fs::write(
                git.join("refs/heads").join(from),
                format!("ref: refs/heads/{to}\n"),
            )
            .unwrap();
        }
        std::fs::write(git.join("refs/heads/e"), format!("{SHA}\n")).unwrap();
        assert_eq!(head_sha(dir.path()).as_deref(), Some(SHA));
        // One more link is too many.
        std::fs::write(git.join("refs/heads/e"), "ref: refs/heads/f\n").unwrap();
        std::fs::write(git.join("refs/heads/f"), format!("{SHA}\n")).unwrap();
        assert_eq!(head_sha(dir.path()), None);
        // A cycle ends instead of overflowing the stack.
        std::fs::write(git.join("refs/heads/e"), "ref: refs/heads/a\n").unwrap();
        assert_eq!(head_sha(dir.path()), None);
    }

    #[test]
    fn follows_a_gitdir_file_to_a_worktree() {
        let main = repo();
        let worktree = main.path().join(".git/worktrees/wt");
        std::fs::create_dir_all(&worktree).unwrap();
        std::fs::write(worktree.join("HEAD"), "ref: refs/heads/feature\n").unwrap();
        std::fs::write(worktree.join("commondir"), "../..\n").unwrap();
        std::fs::write(main.path().join(".git/refs/heads/feature"), SHA).unwrap();
        let checkout = tempfile::TempDir::new().unwrap();
        std::fs::write(
            checkout.path().join(".git"),
            format!("gitdir: {}\n", worktree.display()),
        )
        .unwrap();
        assert_eq!(head_sha(checkout.path()).as_deref(), Some(SHA));
    }

    #[test]
    fn a_folder_without_git_has_no_commit() {
        let dir = tempfile::TempDir::new().unwrap();
        assert_eq!(head_sha(dir.path()), None);
        assert!(commit(dir.path()).is_none());
        assert!(head_files(dir.path()).is_empty());
        std::fs::write(dir.path().join(".git"), "not a gitdir line").unwrap();
        assert_eq!(head_sha(dir.path()), None);
    }

    #[test]
    fn short_names_mark_a_dirty_tree() {
        let clean = Commit {
            sha: SHA.into(),
            dirty: Some(false),
        };
        assert_eq!(clean.short(), "0123456789ab");
        let dirty = Commit {
            dirty: Some(true),
            ..clean
        };
        assert_eq!(dirty.short(), "0123456789ab-dirty");
    }
}
