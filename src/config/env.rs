//! `${ENV_VAR}` expansion over every string (and table key) of the TOML configuration.
//!
//! A variable that is not set is a problem at the key that references it (its path is
//! returned, so that the message can name the line).

/// A `${NAME}` whose variable is not set, and the key path that references it.
#[derive(Debug)]
pub(super) struct MissingEnv {
    pub name: String,
    pub path: Vec<String>,
}

pub(super) fn expand_table(
    table: &mut toml::Table,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), MissingEnv> {
    expand_table_at(table, lookup, &mut Vec::new())
}

fn expand_table_at(
    table: &mut toml::Table,
    lookup: &impl Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), MissingEnv> {
    let entries = std::mem::take(table);
    for (key, mut value) in entries {
        path.push(key.clone());
        expand_value(&mut value, lookup, path)?;
        let expanded = expand_str(&key, lookup).map_err(|name| MissingEnv { name, path: path.clone() })?;
        path.pop();
        table.insert(expanded, value);
    }
    Ok(())
}

fn expand_value(
    value: &mut toml::Value,
    lookup: &impl Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), MissingEnv> {
    match value {
        toml::Value::String(s) => *s = expand_str(s, lookup).map_err(|name| MissingEnv { name, path: path.clone() })?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                expand_value(item, lookup, path)?;
                path.pop();
            }
        }
        toml::Value::Table(t) => expand_table_at(t, lookup, path)?,
        _ => {}
    }
    Ok(())
}

/// Replaces every `${NAME}` in `text`; `$$` stays a literal `$`-sequence untouched. A name
/// that `lookup` does not know is the error.
pub(super) fn expand_str(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| name.to_owned())?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_inside_text_and_leaves_plain_text_alone() {
        let lookup = |k: &str| (k == "A").then(|| "x".to_owned());
        assert_eq!(expand_str("pre-${A}-post", &lookup).unwrap(), "pre-x-post");
        assert_eq!(expand_str("no vars", &lookup).unwrap(), "no vars");
        assert_eq!(expand_str("open ${A", &lookup).unwrap(), "open ${A");
        assert!(expand_str("${B}", &lookup).is_err());
    }

    #[test]
    fn a_missing_variable_comes_with_the_key_that_references_it() {
        let mut table: toml::Table = toml::from_str("[p]\nsecrets = [\"ok\", \"${NOPE}\"]\n").unwrap();
        let err = expand_table(&mut table, &|_: &str| None).unwrap_err();
        assert_eq!(err.name, "NOPE");
        assert_eq!(err.path, ["p", "secrets", "[1]"]);
    }
}
