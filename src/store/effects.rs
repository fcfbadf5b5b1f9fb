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

/// Joins appends to the same file into one effect, for the journal and the writes: an append
/// goes into the latest earlier effect on its path when that is an append with the same
/// header. The files end up exactly as with the effects one by one (each path sees its
/// effects in the same order; only effects on different paths change places), with one
/// journal row and one write per file and request instead of one per event.
pub fn coalesce(effects: Vec<Effect>) -> Vec<Effect> {
    if effects.len() < 2 {
        return effects;
    }
    let mut out: Vec<Effect> = Vec::with_capacity(effects.len());
    let mut latest: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for effect in effects {
        if let Effect::Append { path, header, bytes } = &effect
            && let Some(&at) = latest.get(path.as_str())
            && let Effect::Append { header: into_header, bytes: into, .. } = &mut out[at]
            && into_header == header
        {
            into.extend_from_slice(bytes);
            continue;
        }
        latest.insert(effect.path().to_owned(), out.len());
        out.push(effect);
    }
    out
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    text.trim_end().replace('\n', "\\n").replace('\r', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(path: &str, header: Option<&str>, bytes: &str) -> Effect {
        Effect::Append { path: path.into(), header: header.map(|h| h.into()), bytes: bytes.into() }
    }

    #[test]
    fn appends_to_one_file_become_one_effect_in_order() {
        let effects = vec![
            append("w/a.csv", Some("t,V\r\n"), "1,2\r\n"),
            append("log.jsonl", None, "{}\n"),
            append("w/a.csv", Some("t,V\r\n"), "3,4\r\n"),
            append("log.jsonl", None, "{\"n\":1}\n"),
        ];
        assert_eq!(
            coalesce(effects),
            vec![append("w/a.csv", Some("t,V\r\n"), "1,2\r\n3,4\r\n"), append("log.jsonl", None, "{}\n{\"n\":1}\n")]
        );
    }

    #[test]
    fn a_write_or_another_header_starts_a_new_effect() {
        let write = Effect::Write { path: "a".into(), bytes: "x".into() };
        let effects = vec![
            append("a", None, "1"),
            write.clone(),
            append("a", None, "2"),
            append("a", None, "3"),
            append("a", Some("h"), "4"),
            append("a", None, "5"),
        ];
        assert_eq!(
            coalesce(effects),
            vec![
                append("a", None, "1"),
                write,
                append("a", None, "23"),
                append("a", Some("h"), "4"),
                append("a", None, "5")
            ]
        );
    }
}
