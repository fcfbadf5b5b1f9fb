//! Effects: what a script asked to be written, kept in memory until the journal has them.
//!
//! Scripts never touch files directly. Each host call records an [`Effect`]; the journal
//! stores the effects of processed events in the same transaction as their outcome, and only
//! then are they applied to the data directory, in commit order. Because effects are data, a
//! crash between commit and apply is repaired by applying them again (see `journal`).

/// One change to a file in the data directory. `path` is already checked by
/// [`super::safe_relative_path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Append `bytes`; when the file is new or empty, write `header` first.
    Append { path: String, header: Option<Vec<u8>>, bytes: Vec<u8> },
    /// Replace the file with `bytes`.
    Write { path: String, bytes: Vec<u8> },
}

impl Effect {
    pub fn path(&self) -> &str {
        match self {
            Effect::Append { path, .. } | Effect::Write { path, .. } => path,
        }
    }

    /// Storage form: (kind, header, bytes).
    pub fn parts(&self) -> (i64, Option<&[u8]>, &[u8]) {
        match self {
            Effect::Append { header, bytes, .. } => (0, header.as_deref(), bytes),
            Effect::Write { bytes, .. } => (1, None, bytes),
        }
    }

    pub fn from_parts(path: String, kind: i64, header: Option<Vec<u8>>, bytes: Vec<u8>) -> Self {
        match kind {
            1 => Effect::Write { path, bytes },
            _ => Effect::Append { path, header, bytes },
        }
    }

    /// A one-line description for dry runs and inspection.
    pub fn describe(&self) -> String {
        match self {
            Effect::Append { path, bytes, .. } => {
                format!("append {} bytes to {path}: {}", bytes.len(), preview(bytes))
            }
            Effect::Write { path, bytes } => format!("write {} bytes to {path}", bytes.len()),
        }
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    text.trim_end().replace('\n', "\\n").replace('\r', "")
}
