//! `hookyard init DIR`: a working directory to edit — `hookyard.toml` with every setting at
//! its default (commented), and the built-in `spec/` and `scripts/` — written only where no
//! file is in the way, so nothing a user edited is ever overwritten.

use std::path::{Path, PathBuf};

use crate::spec::embedded;

/// Why a working directory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("not overwriting existing files (remove them or choose another directory): {}", list(.0))]
    Exists(Vec<PathBuf>),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Every file of a working directory in `dir`: `(path, contents)`.
pub fn files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut files = vec![(dir.join("hookyard.toml"), embedded::CONFIG)];
    files.extend(embedded::SPECS.iter().map(|(name, text)| (dir.join("spec").join(format!("{name}.yaml")), *text)));
    files
        .extend(embedded::SCRIPTS.iter().map(|(name, text)| (dir.join("scripts").join(format!("{name}.rhai")), *text)));
    files
}

/// Writes the working directory, or nothing at all when any of its files already exists.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, InitError> {
    let files = files(dir);
    let existing: Vec<PathBuf> = files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.clone()).collect();
    if !existing.is_empty() {
        return Err(InitError::Exists(existing));
    }
    for (path, text) in &files {
        write_new(path, text)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Creates `path` (and its directory); fails if it appeared in the meantime.
fn write_new(path: &Path, text: &str) -> Result<(), InitError> {
    use std::io::Write;
    let fail = |source| InitError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}
