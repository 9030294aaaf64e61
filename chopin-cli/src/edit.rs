//! Idempotent edits of generated source files.
//!
//! Generated projects mark the places generators extend with comments such as
//! `// chopin:entities`. An edit inserts a line just above its marker (with the marker's
//! indentation) unless the file already has that line, so running a generator twice, or
//! after a hand edit that added the line, changes nothing.

use std::path::Path;

use crate::output::{CliError, CliResult};

/// The outcome of an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// The line was already there: nothing to write.
    Unchanged,
    /// The new text of the file.
    Changed(String),
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// No line of the file holds the marker.
    #[error("marker `{0}` not found")]
    MarkerMissing(String),
    /// More than one line holds the marker, so the place is ambiguous.
    #[error("marker `{0}` appears more than once")]
    MarkerRepeated(String),
}

/// Insert `line` above the line that holds `marker`, with the marker line's indentation,
/// unless a line equal to `line` (ignoring surrounding whitespace) is already in `source`.
pub fn insert_before_marker(source: &str, marker: &str, line: &str) -> Result<Edit, EditError> {
    let wanted = line.trim();
    let lines: Vec<&str> = source.lines().collect();
    let markers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(marker))
        .map(|(i, _)| i)
        .collect();
    let at = match markers.as_slice() {
        [] => return Err(EditError::MarkerMissing(marker.to_string())),
        [one] => *one,
        _ => return Err(EditError::MarkerRepeated(marker.to_string())),
    };
    if lines.iter().any(|l| l.trim() == wanted) {
        return Ok(Edit::Unchanged);
    }
    let marker_line = lines[at];
    let indent = &marker_line[..marker_line.len() - marker_line.trim_start().len()];
    // Keep every line's own ending; the new line takes the marker line's (`\r\n` in a file
    // checked out with CRLF endings).
    let mut out = String::with_capacity(source.len() + line.len() + indent.len() + 2);
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i == at {
            let ending = if l.ends_with("\r\n") { "\r\n" } else { "\n" };
            out.push_str(indent);
            out.push_str(wanted);
            out.push_str(ending);
        }
        out.push_str(l);
    }
    Ok(Edit::Changed(out))
}

/// One planned insertion into a file.
#[derive(Debug, Clone)]
pub struct Insertion {
    /// The file, relative to the project root.
    pub file: String,
    /// The marker comment.
    pub marker: &'static str,
    /// The line to insert.
    pub line: String,
}

/// Apply `insertions` to the files under `root`, in order; returns the files that changed.
/// Every edit is computed before anything is written, so a missing marker changes nothing.
pub fn apply(root: &Path, insertions: &[Insertion]) -> CliResult<Vec<String>> {
    let mut files: Vec<(String, String, bool)> = Vec::new();
    for ins in insertions {
        let index = match files.iter().position(|(f, _, _)| *f == ins.file) {
            Some(i) => i,
            None => {
                let path = root.join(&ins.file);
                let text =
                    std::fs::read_to_string(&path).map_err(|e| CliError::io("read", &path, e))?;
                files.push((ins.file.clone(), text, false));
                files.len() - 1
            }
        };
        let (file, text, changed) = &mut files[index];
        match insert_before_marker(text, ins.marker, &ins.line) {
            Ok(Edit::Unchanged) => {}
            Ok(Edit::Changed(new)) => {
                *text = new;
                *changed = true;
            }
            Err(err) => {
                return Err(CliError::new(format!("cannot edit {file}: {err}")).hint(format!(
                    "restore the line `{}` where generated code belongs in {file}, or add this line yourself:\n{}",
                    ins.marker,
                    ins.line.trim()
                )));
            }
        }
    }
    let mut written = Vec::new();
    for (file, text, changed) in files {
        if changed {
            let path = root.join(&file);
            std::fs::write(&path, text).map_err(|e| CliError::io("write", &path, e))?;
            written.push(file);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODS: &str = "//! Entities.\n\npub mod a;\n// chopin:entities (keep)\n";
    const VEC: &str = "fn f() {\n    vec![\n        // chopin:routes\n    ]\n}";

    #[test]
    fn inserts_above_the_marker_with_its_indentation() {
        let Edit::Changed(out) =
            insert_before_marker(MODS, "// chopin:entities", "pub mod b;").unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(
            out,
            "//! Entities.\n\npub mod a;\npub mod b;\n// chopin:entities (keep)\n"
        );
        let Edit::Changed(out) =
            insert_before_marker(VEC, "// chopin:routes", "notes::router(),").unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(
            out,
            "fn f() {\n    vec![\n        notes::router(),\n        // chopin:routes\n    ]\n}"
        );
    }

    #[test]
    fn keeps_crlf_line_endings() {
        let crlf = MODS.replace('\n', "\r\n");
        let Edit::Changed(out) =
            insert_before_marker(&crlf, "// chopin:entities", "pub mod b;").unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(
            out,
            "//! Entities.\r\n\r\npub mod a;\r\npub mod b;\r\n// chopin:entities (keep)\r\n"
        );
        assert_eq!(
            insert_before_marker(&out, "// chopin:entities", "pub mod b;").unwrap(),
            Edit::Unchanged
        );
    }

    #[test]
    fn is_idempotent() {
        let Edit::Changed(once) =
            insert_before_marker(MODS, "// chopin:entities", "pub mod b;").unwrap()
        else {
            panic!("expected a change");
        };
        assert_eq!(
            insert_before_marker(&once, "// chopin:entities", "pub mod b;").unwrap(),
            Edit::Unchanged
        );
        // A line already present (differently indented, added by hand) counts as done.
        assert_eq!(
            insert_before_marker(MODS, "// chopin:entities", "  pub mod a;  ").unwrap(),
            Edit::Unchanged
        );
    }

    #[test]
    fn refuses_a_missing_or_repeated_marker() {
        assert_eq!(
            insert_before_marker("pub mod a;\n", "// chopin:entities", "pub mod b;"),
            Err(EditError::MarkerMissing("// chopin:entities".into()))
        );
        let twice = "// chopin:entities\n// chopin:entities\n";
        assert_eq!(
            insert_before_marker(twice, "// chopin:entities", "pub mod b;"),
            Err(EditError::MarkerRepeated("// chopin:entities".into()))
        );
    }

    #[test]
    fn apply_writes_nothing_when_one_edit_fails_and_is_idempotent() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::write(dir.path().join("a.rs"), MODS).unwrap();
        std::fs::write(dir.path().join("b.rs"), "no marker here\n").unwrap();
        let plan = vec![
            Insertion {
                file: "a.rs".into(),
                marker: "// chopin:entities",
                line: "pub mod b;".into(),
            },
            Insertion {
                file: "b.rs".into(),
                marker: "// chopin:entities",
                line: "pub mod b;".into(),
            },
        ];
        let err = apply(dir.path(), &plan).unwrap_err();
        assert!(err.message.contains("b.rs"), "{err}");
        assert!(err.hint.unwrap().contains("pub mod b;"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.rs")).unwrap(),
            MODS
        );

        let plan = &plan[..1];
        assert_eq!(apply(dir.path(), plan).unwrap(), vec!["a.rs".to_string()]);
        let after = std::fs::read_to_string(dir.path().join("a.rs")).unwrap();
        assert!(after.contains("pub mod a;\npub mod b;\n// chopin:entities"));
        assert!(apply(dir.path(), plan).unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.rs")).unwrap(),
            after
        );
    }
}
