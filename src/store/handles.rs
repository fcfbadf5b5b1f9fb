//! Append handles the journal writer keeps open between checkpoints.
//!
//! Opening a file for an effect means checking its path, creating and checking its parent
//! directories and looking for symlinks: about ten system calls. The writer therefore opens
//! each file once and keeps the handle, with the file's length, until the next checkpoint
//! (about a second), which syncs and closes them all. Once per batch, before its first use,
//! a kept handle is checked against the path (`lstat`: same device and inode): a file removed,
//! renamed or replaced by someone else is then opened afresh, as it would have been without
//! the cache.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{DataDir, Effect, StoreError};

struct Open {
    file: File,
    full: PathBuf,
    /// Device and inode of the file opened.
    id: (u64, u64),
    /// The file's length as far as this writer knows (nobody else appends to it).
    len: u64,
    /// Whether opening it created it (so undoing everything removes it again).
    created: bool,
}

impl Open {
    /// The state to restore when undoing writes made from now on.
    fn before(&self) -> Option<u64> {
        (!self.created || self.len > 0).then_some(self.len)
    }
}

/// Open append handles, by checked relative path.
#[derive(Default)]
pub struct Handles {
    open: HashMap<String, Open>,
    /// Paths whose handle was checked against the file system in this batch.
    checked: HashSet<String>,
    /// Paths created or replaced since [`Handles::close_all`] (their directories need a sync).
    created: HashSet<String>,
}

impl Handles {
    /// Starts a batch: every kept handle is checked again before its next use.
    pub fn new_batch(&mut self) {
        self.checked.clear();
    }

    fn open(&mut self, data: &DataDir, rel: &str) -> Result<&mut Open, StoreError> {
        if let Some(open) = self.open.get(rel)
            && !self.checked.contains(rel)
        {
            let same = std::fs::symlink_metadata(&open.full).is_ok_and(|m| (m.dev(), m.ino()) == open.id);
            if !same {
                self.open.remove(rel);
            }
        }
        if !self.open.contains_key(rel) {
            let full = data.resolve(rel)?;
            let io_err = |source| StoreError::Io { path: rel.to_owned(), source };
            let existed = full.try_exists().map_err(io_err)?;
            let file = OpenOptions::new().create(true).append(true).open(&full).map_err(io_err)?;
            let meta = file.metadata().map_err(io_err)?;
            let (len, id) = (meta.len(), (meta.dev(), meta.ino()));
            if !existed {
                self.created.insert(rel.to_owned());
            }
            self.open.insert(rel.to_owned(), Open { file, full, id, len, created: !existed });
        }
        if !self.checked.contains(rel) {
            self.checked.insert(rel.to_owned());
        }
        Ok(self.open.get_mut(rel).expect("inserted above"))
    }

    /// Applies one request's effects; returns where each effect's bytes begin in its file
    /// (after a header written first). On error cuts every file it touched back to where it
    /// was, so nothing of the request is half-written.
    pub fn apply(&mut self, data: &DataDir, effects: &[Effect]) -> Result<Vec<u64>, StoreError> {
        let mut before: Vec<(&str, Option<u64>)> = Vec::new();
        let mut offsets = Vec::with_capacity(effects.len());
        let result = self.apply_recording(data, effects, &mut before, &mut offsets);
        if result.is_err() {
            for (path, length) in before {
                self.open.remove(path);
                if let Err(undo) = data.restore_length(path, length) {
                    tracing::error!(error = %undo, path, "could not undo a partial write");
                }
            }
        }
        result.map(|()| offsets)
    }

    fn apply_recording<'e>(
        &mut self,
        data: &DataDir,
        effects: &'e [Effect],
        before: &mut Vec<(&'e str, Option<u64>)>,
        offsets: &mut Vec<u64>,
    ) -> Result<(), StoreError> {
        for effect in effects {
            let path = effect.path();
            let seen = before.iter().any(|(p, _)| *p == path);
            match effect {
                Effect::Append { header, bytes, .. } => {
                    let open = self.open(data, path)?;
                    if !seen {
                        before.push((path, open.before()));
                    }
                    let io_err = |source: io::Error| StoreError::Io { path: path.to_owned(), source };
                    let at = open.len + header.as_ref().filter(|_| open.len == 0).map_or(0, |h| h.len() as u64);
                    offsets.push(at);
                    let written = match header {
                        Some(h) if open.len == 0 => {
                            let mut all = Vec::with_capacity(h.len() + bytes.len());
                            all.extend_from_slice(h);
                            all.extend_from_slice(bytes);
                            open.file.write_all(&all).map(|_| all.len())
                        }
                        _ => open.file.write_all(bytes).map(|_| bytes.len()),
                    };
                    match written {
                        Ok(n) => open.len += n as u64,
                        // A failed write may have written part: the length is unknown now.
                        Err(e) => {
                            self.open.remove(path);
                            return Err(io_err(e));
                        }
                    }
                }
                Effect::Write { .. } => {
                    self.open.remove(path);
                    self.created.insert(path.to_owned());
                    if !seen {
                        before.push((path, data.length(path)?));
                    }
                    data.apply(effect)?;
                    offsets.push(0);
                }
            }
        }
        Ok(())
    }

    /// Closes every handle (before a checkpoint syncs the files by path).
    pub fn close_all(&mut self) {
        self.open.clear();
        self.checked.clear();
    }

    /// Paths created or replaced since the last [`Handles::synced`].
    pub fn created(&self) -> &HashSet<String> {
        &self.created
    }

    /// The directories of [`Handles::created`] are synced.
    pub fn synced(&mut self) {
        self.created.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(path: &str, header: Option<&str>, bytes: &str) -> Effect {
        Effect::Append { path: path.into(), header: header.map(|h| h.as_bytes().to_vec()), bytes: bytes.into() }
    }

    #[test]
    fn appends_through_kept_handles_write_headers_once() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let mut handles = Handles::default();
        let first = [append("a/x.csv", Some("h\n"), "1\n"), append("a/x.csv", Some("h\n"), "2\n")];
        // Where each effect's bytes begin: after the header the first one wrote.
        assert_eq!(handles.apply(&data, &first).unwrap(), [2, 4]);
        assert_eq!(handles.apply(&data, &[append("a/x.csv", Some("h\n"), "3\n")]).unwrap(), [6]);
        handles.close_all();
        assert_eq!(handles.apply(&data, &[append("a/x.csv", Some("h\n"), "4\n")]).unwrap(), [8]);
        assert_eq!(std::fs::read_to_string(tmp.path().join("a/x.csv")).unwrap(), "h\n1\n2\n3\n4\n");
    }

    #[test]
    fn a_file_removed_or_renamed_between_batches_is_opened_afresh() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let mut handles = Handles::default();
        handles.apply(&data, &[append("x.csv", Some("h\n"), "1\n")]).unwrap();
        std::fs::rename(tmp.path().join("x.csv"), tmp.path().join("x.csv.old")).unwrap();
        handles.new_batch();
        handles.apply(&data, &[append("x.csv", Some("h\n"), "2\n")]).unwrap();
        std::fs::remove_file(tmp.path().join("x.csv")).unwrap();
        handles.new_batch();
        handles.apply(&data, &[append("x.csv", Some("h\n"), "3\n")]).unwrap();
        assert_eq!(std::fs::read_to_string(tmp.path().join("x.csv.old")).unwrap(), "h\n1\n");
        assert_eq!(std::fs::read_to_string(tmp.path().join("x.csv")).unwrap(), "h\n3\n");
    }

    #[test]
    fn a_failing_request_leaves_no_trace_in_any_file() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let mut handles = Handles::default();
        handles.apply(&data, &[append("x.txt", None, "kept\n")]).unwrap();
        std::os::unix::fs::symlink("/tmp", tmp.path().join("link")).unwrap();
        let failing =
            [append("x.txt", None, "dropped\n"), append("new.txt", None, "dropped\n"), append("link/y", None, "z")];
        let err = handles.apply(&data, &failing).unwrap_err();
        assert!(matches!(&err, StoreError::Path(path, _) if path == "link/y"), "{err}");
        assert_eq!(std::fs::read_to_string(tmp.path().join("x.txt")).unwrap(), "kept\n");
        assert!(!tmp.path().join("new.txt").exists());
        handles.apply(&data, &[append("x.txt", None, "next\n")]).unwrap();
        assert_eq!(std::fs::read_to_string(tmp.path().join("x.txt")).unwrap(), "kept\nnext\n");
    }
}
