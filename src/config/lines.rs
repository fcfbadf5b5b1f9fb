//! Where each key of the config file is: an index from key path to line, built once from the
//! text, so that a problem found later (by serde, or by the specs in `App::build`) can name
//! the line a user has to edit.

use std::collections::BTreeMap;
use std::fmt;

use toml::de::{DeTable, DeValue};

/// Key path → (line, whether the value is a table), for one config text. Paths may contain
/// secrets (API keys are table keys), so `Debug` prints only the file name.
#[derive(Clone, Default)]
pub struct KeyLines {
    file: String,
    keys: BTreeMap<Vec<String>, (usize, bool)>,
}

impl fmt::Debug for KeyLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLines").field("file", &self.file).field("keys", &self.keys.len()).finish()
    }
}

impl KeyLines {
    /// Parses `text` (named `file` in messages) and indexes every key.
    pub fn build(file: &str, text: &str) -> Result<Self, toml::de::Error> {
        let root = DeTable::parse(text)?;
        let mut lines = Self { file: file.to_owned(), keys: BTreeMap::new() };
        lines.walk_table(root.get_ref(), text, &mut Vec::new());
        Ok(lines)
    }

    fn walk_table(&mut self, table: &DeTable<'_>, text: &str, path: &mut Vec<String>) {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            let line = position(text, key.span().start).0;
            self.keys.insert(path.clone(), (line, is_header_table(value, text)));
            self.walk_value(value.get_ref(), text, path);
            path.pop();
        }
    }

    fn walk_value(&mut self, value: &DeValue<'_>, text: &str, path: &mut Vec<String>) {
        match value {
            DeValue::Table(t) => self.walk_table(t, text, path),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    let line = position(text, item.span().start).0;
                    self.keys.insert(path.clone(), (line, is_header_table(item, text)));
                    self.walk_value(item.get_ref(), text, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The line of `path`, or of its nearest ancestor the file has.
    pub fn line(&self, path: &[String]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| self.keys.get(&path[..n]).map(|(line, _)| *line))
    }

    /// Where a problem is, as a user reads it: `hookyard.toml line 12: [protocols.gridx] secret`.
    pub fn place(&self, path: &[String]) -> String {
        let is_table = self.keys.get(path).is_some_and(|(_, table)| *table);
        let at = match self.line(path) {
            Some(line) => format!("{} line {line}", self.file),
            None => self.file.clone(),
        };
        if path.is_empty() { at } else { format!("{at}: {}", key_path(path, is_table)) }
    }
}

/// A table written as `[header]` (an inline `{ … }` table reads as a key of its parent).
fn is_header_table(value: &toml::Spanned<DeValue<'_>>, text: &str) -> bool {
    value.get_ref().is_table() && !text[value.span().start.min(text.len())..].starts_with('{')
}

/// `[protocols.gridx] secrets`, `listen`, `[protocols.gridex]` (a table), `[plugins.q] handles[0]`.
fn key_path(path: &[String], is_table: bool) -> String {
    if is_table {
        return format!("[{}]", dotted(path));
    }
    let split = path.iter().rposition(|s| !is_index(s)).unwrap_or(0);
    let (table, key) = path.split_at(split);
    if table.is_empty() { dotted(key) } else { format!("[{}] {}", dotted(table), dotted(key)) }
}

fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if is_index(segment) {
            out.push_str(segment);
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') && !segment.is_empty() {
            out.push_str(segment);
        } else {
            out.push_str(&format!("{segment:?}"));
        }
    }
    out
}

fn is_index(segment: &str) -> bool {
    segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')).is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// 1-based line and column of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    const TEXT: &str = "listen = \"x\"\n\n[protocols.gridx]\nsecret = [\"a\",\n  \"b\"]\n[plugins.q]\nhandles = [\"p\"]\nauth = { type = 1 }\n";

    #[test]
    fn names_keys_tables_and_their_lines() {
        let lines = KeyLines::build("hookyard.toml", TEXT).unwrap();
        assert_eq!(lines.place(&path(&["listen"])), "hookyard.toml line 1: listen");
        assert_eq!(
            lines.place(&path(&["protocols", "gridx", "secret"])),
            "hookyard.toml line 4: [protocols.gridx] secret"
        );
        assert_eq!(lines.place(&path(&["protocols", "gridx"])), "hookyard.toml line 3: [protocols.gridx]");
        assert_eq!(
            lines.place(&path(&["plugins", "q", "handles", "[0]"])),
            "hookyard.toml line 7: [plugins.q] handles[0]"
        );
        assert_eq!(lines.place(&path(&["protocols", "gridx", "nope"])), "hookyard.toml line 3: [protocols.gridx] nope");
        assert_eq!(lines.place(&path(&["plugins", "q", "auth"])), "hookyard.toml line 8: [plugins.q] auth");
        assert_eq!(
            lines.place(&path(&["plugins", "q", "auth", "type"])),
            "hookyard.toml line 8: [plugins.q.auth] type"
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        assert_eq!(position("a = 1\nb = \n", 10), (2, 5));
        assert_eq!(position("x", 0), (1, 1));
    }

    #[test]
    fn debug_shows_no_key() {
        let lines = KeyLines::build("c", "[protocols.a]\napi_keys = { \"s3cr3t\" = \"home\" }\n").unwrap();
        assert!(!format!("{lines:?}").contains("s3cr3t"));
    }
}
