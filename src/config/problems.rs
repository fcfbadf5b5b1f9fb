//! Config problems in words a user reads: serde's messages rewritten (`expected a whole
//! number, found the string "lots"`), unknown keys with the closest known one suggested.

use serde::de::DeserializeOwned;

/// One problem with a config value: the key path below the value read, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<String>,
    pub message: String,
}

/// Whether a message may quote the value found (never for values that may be secrets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    Values,
    Nothing,
}

/// Top-level sections whose values may all be secrets: never quoted, whatever is asked.
const SECRET_SECTIONS: [&str; 1] = ["protocols"];

/// Deserialises `value` into `T`; a failure says where below `value` and what, in words.
pub fn from_value<T: DeserializeOwned>(value: toml::Value, quote: Quote) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path: Vec<String> = e.path().iter().filter_map(segment).collect();
        let secret = path.first().is_some_and(|s| SECRET_SECTIONS.contains(&s.as_str()));
        let quote = if secret { Quote::Nothing } else { quote };
        let raw = e.inner().message();
        // Internally tagged enums report an unknown field at the table, not at the field.
        if let Some(field) = quoted_after(raw, "unknown field ")
            && path.last() != Some(&field)
        {
            path.push(field);
        }
        Problem { path, message: describe(raw, quote) }
    })
}

fn segment(s: &serde_path_to_error::Segment) -> Option<String> {
    use serde_path_to_error::Segment;
    match s {
        Segment::Map { key } => Some(key.clone()),
        Segment::Seq { index } => Some(format!("[{index}]")),
        Segment::Enum { .. } | Segment::Unknown => None,
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a typo (a few edits
/// apart, or one a part of the other: `sha256` for `hmac-sha256`).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let distance = strsim::damerau_levenshtein(&word, &lower);
            let part = word.len() >= 3 && (lower.contains(&word) || word.contains(&lower));
            (distance <= limit || part).then_some((distance, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `unknown key (did you mean secrets?)`, or the keys there are when none is close.
pub fn unknown(what: &str, word: &str, known: &[&str]) -> String {
    match suggest(word, known.iter().copied()) {
        Some(close) => format!("{what} (did you mean {close}?)"),
        None if known.is_empty() => format!("{what} (none is read here)"),
        None => format!("{what} (expected one of {})", known.join(", ")),
    }
}

/// Serde's message, rewritten for a person editing the file.
pub fn describe(message: &str, quote: Quote) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "))
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return format!("expected {}, found {}", expected_words(expected), found_words(found, quote));
    }
    if let Some(field) = quoted_after(message, "unknown field ") {
        return unknown("unknown key", &field, &names_listed(message, &field));
    }
    if let Some(variant) = quoted_after(message, "unknown variant ") {
        let known = names_listed(message, &variant);
        let what = format!("{variant:?} is not one of {}", known.join(", "));
        return match suggest(&variant, known.iter().copied()) {
            Some(close) => format!("{what} (did you mean {close}?)"),
            None => what,
        };
    }
    if let Some(field) = quoted_after(message, "missing field ") {
        return format!("{field} is missing");
    }
    if let Some(field) = quoted_after(message, "duplicate field ") {
        return format!("{field} is set twice");
    }
    message.to_owned()
}

/// The name in backticks right after `prefix` at the start of `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name.to_owned())
}

/// Every other name in backticks: the keys or variants serde says it expected.
fn names_listed<'a>(message: &'a str, except: &str) -> Vec<&'a str> {
    message.split('`').skip(1).step_by(2).filter(|n| *n != except).collect()
}

fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" | "u128" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a sequence" => "a list",
        "a map" | "map" => "a table",
        other if other.starts_with("struct ") => "a table",
        other => other,
    };
    words.to_owned()
}

fn found_words(found: &str, quote: Quote) -> String {
    let literal = found.split_once(' ').map(|(_, v)| v.trim_matches('`'));
    let kind = found.split(' ').next().unwrap_or(found);
    match (kind, literal, quote) {
        ("string", Some(v), Quote::Values) => format!("the string {v}"),
        ("string", _, _) => "a string".into(),
        ("integer" | "floating", Some(v), Quote::Values) => format!("the number {}", v.trim_start_matches("point `")),
        ("integer" | "floating", _, _) => "a number".into(),
        ("boolean", Some(v), Quote::Values) => v.to_owned(),
        ("boolean", _, _) => "true or false".into(),
        ("sequence", _, _) => "a list".into(),
        ("map", _, _) => "a table".into(),
        _ => found.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key_within_a_typo() {
        assert_eq!(suggest("secret", ["secrets", "api_keys"]), Some("secrets"));
        assert_eq!(suggest("api_key", ["secrets", "api_keys"]), Some("api_keys"));
        assert_eq!(suggest("gridex", ["ai-on-the-edge", "gridx", "wattmon", "wattsense"]), Some("gridx"));
        assert_eq!(suggest("max_conections", ["max_connections", "idle_timeout_ms"]), Some("max_connections"));
        assert_eq!(suggest("Secrets", ["secrets"]), Some("secrets"));
        assert_eq!(suggest("sha256", ["hmac-sha256", "hmac-sha512"]), Some("hmac-sha256"));
        assert_eq!(suggest("tls", ["secrets", "api_keys"]), None);
        assert_eq!(suggest("x", []), None);
    }

    #[test]
    fn type_errors_read_as_sentences() {
        let m = r#"invalid type: string "lots", expected usize"#;
        assert_eq!(describe(m, Quote::Values), r#"expected a whole number (0 or more), found the string "lots""#);
        assert_eq!(describe(m, Quote::Nothing), "expected a whole number (0 or more), found a string");
        let m = "invalid value: integer `70000`, expected u16";
        assert_eq!(describe(m, Quote::Values), "expected a whole number from 0 to 65535, found the number 70000");
        let m = "invalid type: floating point `1.5`, expected usize";
        assert_eq!(describe(m, Quote::Values), "expected a whole number (0 or more), found the number 1.5");
        let m = "invalid type: integer `5`, expected a boolean";
        assert_eq!(describe(m, Quote::Nothing), "expected true or false, found a number");
    }

    #[test]
    fn unknown_keys_and_variants_suggest_or_list() {
        let m = "unknown field `max_conections`, expected one of `max_connections`, `header_timeout_ms`";
        assert_eq!(describe(m, Quote::Values), "unknown key (did you mean max_connections?)");
        let m = "unknown field `tls`, expected `listen` or `data_dir`";
        assert_eq!(describe(m, Quote::Values), "unknown key (expected one of listen, data_dir)");
        let m = "unknown field `token`, there are no fields";
        assert_eq!(describe(m, Quote::Values), "unknown key (none is read here)");
        let m = "unknown variant `bearr`, expected one of `none`, `basic`, `bearer`, `header`";
        assert_eq!(
            describe(m, Quote::Values),
            r#""bearr" is not one of none, basic, bearer, header (did you mean bearer?)"#
        );
        assert_eq!(describe("missing field `host`", Quote::Values), "host is missing");
    }
}
