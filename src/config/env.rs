//! `${ENV_VAR}` expansion over every string (and table key) of the TOML configuration.

use super::ConfigError;

pub(super) fn expand_table(
    table: &mut toml::Table,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let entries = std::mem::take(table);
    for (key, mut value) in entries {
        expand_value(&mut value, lookup)?;
        table.insert(expand_str(&key, lookup)?, value);
    }
    Ok(())
}

fn expand_value(value: &mut toml::Value, lookup: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => *s = expand_str(s, lookup)?,
        toml::Value::Array(items) => {
            for item in items {
                expand_value(item, lookup)?;
            }
        }
        toml::Value::Table(t) => expand_table(t, lookup)?,
        _ => {}
    }
    Ok(())
}

/// Replaces every `${NAME}` in `text`; `$$` stays a literal `$`-sequence untouched.
pub(super) fn expand_str(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
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
        let value = lookup(name).ok_or_else(|| ConfigError::MissingEnv(name.to_owned()))?;
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
}
