//! The templates under this crate's `templates/` folder, embedded at build time and
//! rendered with minijinja.
//!
//! * `templates/project/`: every file of a new project; a file's path is its path in the
//!   project plus `.jinja`. A file that renders to nothing but whitespace is not written
//!   (that is how optional files are left out).
//! * `templates/generate/`: what `chopin generate` writes.

use include_dir::{Dir, include_dir};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::output::{CliError, CliResult};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The extension every template file carries.
const SUFFIX: &str = ".jinja";

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

/// Render the template at `path` (relative to `templates/`) with `context`.
pub fn render(path: &str, context: &impl Serialize) -> CliResult<String> {
    let source = TEMPLATES
        .get_file(path)
        .and_then(|f| f.contents_utf8())
        .ok_or_else(|| CliError::new(format!("template `{path}` is missing from this build")))?;
    render_source(path, source, context)
}

fn render_source(name: &str, source: &str, context: &impl Serialize) -> CliResult<String> {
    let env = environment();
    env.render_named_str(name, source, context)
        .map_err(|e| CliError::new(format!("could not render template `{name}`: {e:#}")))
}

/// Every file of the project template, rendered: (path in the project, contents), sorted by
/// path. Files that render to whitespace only are left out.
pub fn render_project(context: &impl Serialize) -> CliResult<Vec<(String, String)>> {
    let root = TEMPLATES
        .get_dir("project")
        .ok_or_else(|| CliError::new("the project template is missing from this build"))?;
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        stack.extend(dir.dirs());
        for file in dir.files() {
            let path = file.path().to_string_lossy().replace('\\', "/");
            let Some(relative) = path
                .strip_prefix("project/")
                .and_then(|p| p.strip_suffix(SUFFIX))
            else {
                continue;
            };
            let source = file
                .contents_utf8()
                .ok_or_else(|| CliError::new(format!("template `{path}` is not UTF-8")))?;
            let text = render_source(&path, source, context)?;
            if !text.trim().is_empty() {
                files.push((relative.to_string(), text));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_embedded_with_its_suffix() {
        let mut count = 0;
        let mut stack = vec![&TEMPLATES];
        while let Some(dir) = stack.pop() {
            stack.extend(dir.dirs());
            for file in dir.files() {
                let path = file.path().to_string_lossy().to_string();
                assert!(path.ends_with(SUFFIX), "{path} lacks {SUFFIX}");
                assert!(file.contents_utf8().is_some(), "{path}");
                count += 1;
            }
        }
        assert!(count >= 15, "only {count} templates embedded");
    }

    #[test]
    fn undefined_variables_are_errors() {
        let err = render_source("t", "{{ nope }}", &serde_json::json!({})).unwrap_err();
        assert!(err.message.contains("render"), "{err}");
    }
}
