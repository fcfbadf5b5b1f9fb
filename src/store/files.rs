//! Files in the data directory: the only place scripts can write.
//!
//! Every path comes through [`safe_relative_path`]: relative, `/`-separated, no `..`, no
//! hidden components, no control characters. Parent directories are then checked, after
//! creation, to still be inside the data directory (a symlink cannot lead out), and a final
//! component that is a symlink is refused. Effects are applied here by the journal, which
//! also decides when files are synced.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Effect;

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("path {0:?} is not allowed: {1}")]
    Path(String, &'static str),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Creates `path` empty with mode 0600 if it does not exist, and tightens it to 0600 if it
/// does (SQLite then gives its `-wal` and `-shm` files the same mode).
pub fn private_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// Checks a script-chosen path and returns it as a relative path.
pub fn safe_relative_path(rel: &str) -> Result<PathBuf, StoreError> {
    let refuse = |why| Err(StoreError::Path(rel.chars().take(200).collect(), why));
    if rel.is_empty() || rel.len() > 1024 {
        return refuse("must be 1 to 1024 bytes long");
    }
    if rel.chars().any(|c| c.is_control() || c == '\\') {
        return refuse("control characters and backslashes are not allowed");
    }
    if rel.starts_with('/') {
        return refuse("must be relative to the data directory");
    }
    let mut path = PathBuf::new();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return refuse("empty, '.' and '..' components are not allowed");
        }
        if part.starts_with('.') {
            return refuse("components starting with '.' are reserved");
        }
        if part.len() > 255 {
            return refuse("a component is longer than 255 bytes");
        }
        path.push(part);
    }
    Ok(path)
}

/// The data directory.
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates (if needed) and opens the data directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        fs::create_dir_all(path)?;
        Ok(Self { root: path.canonicalize()? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<data>/.hookyard`, the server's own state (journal, lock): created, or tightened,
    /// to mode 0700, since the journal holds raw request bodies.
    pub fn state_dir(&self) -> io::Result<PathBuf> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.root.join(".hookyard");
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }

    /// Resolves a checked relative path, creating its parent directories inside the data dir
    /// and refusing symlinks that lead out.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let relative = safe_relative_path(rel)?;
        let full = self.root.join(&relative);
        let io_err = |source| StoreError::Io { path: rel.to_owned(), source };
        let parent = full.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&parent).map_err(io_err)?;
        if !parent.canonicalize().map_err(io_err)?.starts_with(&self.root) {
            return Err(StoreError::Path(rel.to_owned(), "leads outside the data directory"));
        }
        if fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError::Path(rel.to_owned(), "is a symbolic link"));
        }
        Ok(full)
    }

    /// The length of the file at `rel`, or `None` when it does not exist.
    pub fn length(&self, rel: &str) -> Result<Option<u64>, StoreError> {
        let full = self.root.join(safe_relative_path(rel)?);
        match fs::metadata(&full) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path: rel.to_owned(), source }),
        }
    }

    /// Applies one effect (not yet synced: see [`DataDir::sync`]).
    pub fn apply(&self, effect: &Effect) -> Result<(), StoreError> {
        let rel = effect.path();
        let full = self.resolve(rel)?;
        let io_err = |source| StoreError::Io { path: rel.to_owned(), source };
        match effect {
            Effect::Append { header, bytes, .. } => {
                let mut file = OpenOptions::new().create(true).append(true).open(&full).map_err(io_err)?;
                let empty = file.metadata().map_err(io_err)?.len() == 0;
                match header {
                    Some(h) if empty => {
                        let mut all = Vec::with_capacity(h.len() + bytes.len());
                        all.extend_from_slice(h);
                        all.extend_from_slice(bytes);
                        file.write_all(&all).map_err(io_err)
                    }
                    _ => file.write_all(bytes).map_err(io_err),
                }
            }
            Effect::Write { bytes, .. } => {
                let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = full.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
                let mut file = File::create(&tmp).map_err(io_err)?;
                file.write_all(bytes).and_then(|_| file.sync_data()).map_err(io_err)?;
                fs::rename(&tmp, &full).map_err(io_err)
            }
        }
    }

    /// Cuts the file at `rel` back to `length` bytes, or removes it when `length` is `None`.
    pub fn restore_length(&self, rel: &str, length: Option<u64>) -> Result<(), StoreError> {
        let full = self.root.join(safe_relative_path(rel)?);
        let io_err = |source| StoreError::Io { path: rel.to_owned(), source };
        match (length, fs::metadata(&full)) {
            (None, Ok(_)) => fs::remove_file(&full).map_err(io_err),
            (Some(len), Ok(m)) if m.len() > len => {
                OpenOptions::new().write(true).open(&full).and_then(|f| f.set_len(len)).map_err(io_err)
            }
            _ => Ok(()),
        }
    }

    /// Flushes the files at `rels`, and the directories holding them, to stable storage.
    pub fn sync<'a>(&self, rels: impl IntoIterator<Item = &'a String> + Clone) -> io::Result<()> {
        self.sync_files(rels.clone())?;
        self.sync_dirs(rels)
    }

    /// Flushes the contents of the files at `rels` (and their lengths).
    pub fn sync_files<'a>(&self, rels: impl IntoIterator<Item = &'a String>) -> io::Result<()> {
        for rel in rels {
            match File::open(self.root.join(rel)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Flushes the directories holding `rels`, up to the data directory (needed when files
    /// were created or replaced there: their names are directory entries).
    pub fn sync_dirs<'a>(&self, rels: impl IntoIterator<Item = &'a String>) -> io::Result<()> {
        let mut dirs = BTreeSet::new();
        for rel in rels {
            let full = self.root.join(rel);
            let mut dir = full.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(&self.root)) {
                dirs.insert(d.to_owned());
                dir = d.parent();
            }
        }
        for d in dirs {
            match File::open(&d) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One RFC 4180 record (quoted only where needed), ending in CRLF.
pub fn csv_record(fields: &[String]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    let _ = writer.write_record(fields);
    writer.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_names_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", ".hookyard/seen", "a\\b", "a\0b", "", "./a"] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            safe_relative_path("wattmon/00:04:A3:12:34:56.csv").unwrap(),
            PathBuf::from("wattmon/00:04:A3:12:34:56.csv")
        );
    }

    #[test]
    fn a_symlink_cannot_lead_out_of_the_data_dir() {
        let outside = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), data.path().join("link")).unwrap();
        let dir = DataDir::open(data.path()).unwrap();
        let effect = Effect::Append { path: "link/x.txt".into(), header: None, bytes: b"x".to_vec() };
        let err = dir.apply(&effect).unwrap_err();
        assert!(err.to_string().contains("outside the data directory"), "{err}");
        assert!(!outside.path().join("x.txt").exists());
    }

    #[test]
    fn appends_write_the_header_once_and_lengths_can_be_restored() {
        let data = tempfile::tempdir().unwrap();
        let dir = DataDir::open(data.path()).unwrap();
        let header = Some(csv_record(&["a".into(), "b".into()]));
        let row = |v: &str| Effect::Append {
            path: "x.csv".into(),
            header: header.clone(),
            bytes: csv_record(&[v.into(), "say \"hi\", ok".into()]),
        };
        dir.apply(&row("1")).unwrap();
        let after_first = dir.length("x.csv").unwrap();
        dir.apply(&row("2")).unwrap();
        assert_eq!(
            fs::read_to_string(data.path().join("x.csv")).unwrap(),
            "a,b\r\n1,\"say \"\"hi\"\", ok\"\r\n2,\"say \"\"hi\"\", ok\"\r\n"
        );
        dir.restore_length("x.csv", after_first).unwrap();
        assert_eq!(fs::read_to_string(data.path().join("x.csv")).unwrap(), "a,b\r\n1,\"say \"\"hi\"\", ok\"\r\n");
        dir.restore_length("x.csv", None).unwrap();
        assert_eq!(dir.length("x.csv").unwrap(), None);
        dir.sync([&"x.csv".to_string()]).unwrap();
    }
}
