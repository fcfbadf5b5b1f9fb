//! Files in the data directory: the only place scripts can write.
//!
//! Every path comes through [`safe_relative_path`]: relative, `/`-separated, no `..`, no
//! hidden components, no control characters. Parent directories are then checked, after
//! creation, to still be inside the data directory (a symlink cannot lead out), and a final
//! component that is a symlink is refused. Files written during one request are collected in
//! [`Touched`] and synced to disk before the request is acknowledged.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("path {0:?} is not allowed: {1}")]
    Path(String, &'static str),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: io::Error },
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

/// Files touched by one request, to be synced before the reply.
#[derive(Debug, Default)]
pub struct Touched {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Touched {
    /// Flushes every touched file and directory entry to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        for f in &self.files {
            File::open(f)?.sync_data()?;
        }
        for d in &self.dirs {
            File::open(d)?.sync_all()?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The data directory.
pub struct DataDir {
    root: PathBuf,
    csv_lock: Mutex<()>,
}

impl DataDir {
    /// Creates (if needed) and opens the data directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        fs::create_dir_all(path)?;
        Ok(Self {
            root: path.canonicalize()?,
            csv_lock: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a script-chosen path, creating its parent directories inside the data dir.
    pub fn resolve(&self, rel: &str, touched: &mut Touched) -> Result<PathBuf, StoreError> {
        let relative = safe_relative_path(rel)?;
        let full = self.root.join(&relative);
        let io_err = |source| StoreError::Io {
            path: rel.to_owned(),
            source,
        };
        let parent = full.parent().unwrap_or(&self.root).to_owned();
        if !parent.exists() {
            fs::create_dir_all(&parent).map_err(io_err)?;
            let mut dir = parent.as_path();
            while dir != self.root {
                touched
                    .dirs
                    .insert(dir.parent().unwrap_or(&self.root).to_owned());
                dir = dir.parent().unwrap_or(&self.root);
            }
        }
        if !parent
            .canonicalize()
            .map_err(io_err)?
            .starts_with(&self.root)
        {
            return Err(StoreError::Path(
                rel.to_owned(),
                "leads outside the data directory",
            ));
        }
        if fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError::Path(rel.to_owned(), "is a symbolic link"));
        }
        Ok(full)
    }

    /// Appends `bytes` to the file at `rel`.
    pub fn append(&self, rel: &str, bytes: &[u8], touched: &mut Touched) -> Result<(), StoreError> {
        let full = self.resolve(rel, touched)?;
        self.append_at(rel, &full, bytes, touched)
    }

    fn append_at(
        &self,
        rel: &str,
        full: &Path,
        bytes: &[u8],
        touched: &mut Touched,
    ) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Io {
            path: rel.to_owned(),
            source,
        };
        if !full.exists() {
            touched
                .dirs
                .insert(full.parent().unwrap_or(&self.root).to_owned());
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(full)
            .map_err(io_err)?;
        file.write_all(bytes).map_err(io_err)?;
        touched.files.insert(full.to_owned());
        Ok(())
    }

    /// Appends one CSV record, writing `header` first when the file is new or empty.
    pub fn append_csv(
        &self,
        rel: &str,
        header: Option<&[String]>,
        row: &[String],
        touched: &mut Touched,
    ) -> Result<(), StoreError> {
        let full = self.resolve(rel, touched)?;
        let _guard = self.csv_lock.lock().unwrap_or_else(|e| e.into_inner());
        let empty = fs::metadata(&full).map(|m| m.len() == 0).unwrap_or(true);
        let mut out = Vec::new();
        if let (true, Some(h)) = (empty, header) {
            out.extend(csv_record(h));
        }
        out.extend(csv_record(row));
        self.append_at(rel, &full, &out, touched)
    }

    /// Replaces the file at `rel` with `bytes` (written to a temporary file, then renamed).
    pub fn write(&self, rel: &str, bytes: &[u8], touched: &mut Touched) -> Result<(), StoreError> {
        let full = self.resolve(rel, touched)?;
        let io_err = |source| StoreError::Io {
            path: rel.to_owned(),
            source,
        };
        let name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = full.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = File::create(&tmp).map_err(io_err)?;
        file.write_all(bytes)
            .and_then(|_| file.sync_data())
            .map_err(io_err)?;
        fs::rename(&tmp, &full).map_err(io_err)?;
        touched
            .dirs
            .insert(full.parent().unwrap_or(&self.root).to_owned());
        Ok(())
    }
}

/// One RFC 4180 record (quoted only where needed), ending in CRLF.
pub fn csv_record(fields: &[String]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let _ = writer.write_record(fields);
    writer.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_names_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            ".hookyard/seen",
            "a\\b",
            "a\0b",
            "",
            "./a",
        ] {
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
        let err = dir
            .append("link/x.txt", b"x", &mut Touched::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("outside the data directory"),
            "{err}"
        );
        assert!(!outside.path().join("x.txt").exists());
    }

    #[test]
    fn csv_header_is_written_once_and_fields_are_quoted() {
        let data = tempfile::tempdir().unwrap();
        let dir = DataDir::open(data.path()).unwrap();
        let mut t = Touched::default();
        let header = ["a".to_string(), "b".to_string()];
        dir.append_csv(
            "x.csv",
            Some(&header),
            &["1".into(), "say \"hi\", ok".into()],
            &mut t,
        )
        .unwrap();
        dir.append_csv("x.csv", Some(&header), &["2".into(), "".into()], &mut t)
            .unwrap();
        t.sync().unwrap();
        let text = fs::read_to_string(data.path().join("x.csv")).unwrap();
        assert_eq!(text, "a,b\r\n1,\"say \"\"hi\"\", ok\"\r\n2,\r\n");
    }
}
