//! The one place the DLP module reads files: a convenience for the CLI and
//! the gateway, kept apart so the engine itself stays IO-free.

use super::error::{Location, RuleError};
use super::ruleset::RuleSet;
use std::path::Path;

/// Load every `*.toml` file under `dir` (recursively, sorted by path) and
/// compile them into one rule set. Every read, parse and compile error of
/// every file is returned at once.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Vec<RuleError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect(dir.as_ref(), &mut files, &mut errors);
    files.sort();
    let mut sources = Vec::new();
    for path in files {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((name, text)),
            Err(e) => errors.push(RuleError::Read {
                loc: Location::file(&name),
                message: e.to_string(),
            }),
        }
    }
    match RuleSet::from_sources(&sources) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}

impl RuleSet {
    /// [`load_dir`] as an associated function.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Vec<RuleError>> {
        load_dir(dir)
    }
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>, errors: &mut Vec<RuleError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(RuleError::Read {
                loc: Location::file(&dir.display().to_string()),
                message: e.to_string(),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files, errors);
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
}
