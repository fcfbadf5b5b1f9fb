//! Resolving a plugin's `handles` entries against the operations of the specs.
//!
//! An entry names one operation as `"<protocol>/<operationId>"` (the spec's `operationId`,
//! e.g. `"ai-on-the-edge/readings"`), or every operation of a protocol as `"<protocol>/*"`. A
//! bare protocol name is refused with the choices spelled out: a protocol's operations carry
//! different events (AI-on-the-edge readings and images), and a handler made for one kind
//! fails on the other.

use super::{KnownOperations, PluginError};

/// The `(protocol, operationId)` pairs the `entries` of plugin `plugin` name, or every entry
/// that names nothing.
pub(super) fn resolve(
    plugin: &str,
    entries: &[String],
    known: &KnownOperations,
) -> Result<Vec<(String, String)>, Vec<PluginError>> {
    let mut targets: Vec<(String, String)> = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match resolve_one(plugin, entry, known) {
            Ok(found) => {
                for target in found {
                    if !targets.contains(&target) {
                        targets.push(target);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(targets) } else { Err(errors) }
}

fn resolve_one(plugin: &str, entry: &str, known: &KnownOperations) -> Result<Vec<(String, String)>, PluginError> {
    let (protocol, operation) = entry.split_once('/').unwrap_or((entry, ""));
    let Some(operations) = known.get(protocol) else {
        return Err(PluginError::UnknownProtocol {
            plugin: plugin.into(),
            entry: entry.into(),
            protocol: protocol.into(),
        });
    };
    let pair = |op: &String| (protocol.to_owned(), op.clone());
    match operation {
        "" if !entry.contains('/') => Err(PluginError::WholeProtocol {
            plugin: plugin.into(),
            entry: entry.into(),
            choices: operations.iter().map(|op| format!("\"{protocol}/{op}\"")).collect::<Vec<_>>().join(", "),
        }),
        "*" => Ok(operations.iter().map(pair).collect()),
        _ => match operations.iter().find(|op| *op == operation) {
            Some(op) => Ok(vec![pair(op)]),
            None => Err(PluginError::UnknownOperation {
                plugin: plugin.into(),
                entry: entry.into(),
                protocol: protocol.into(),
                operation: operation.into(),
                known: operations.join(", "),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownOperations {
        [
            ("ai-on-the-edge".to_string(), vec!["readings".to_string(), "image".to_string()]),
            ("wattmon".to_string(), vec!["export".to_string()]),
        ]
        .into_iter()
        .collect()
    }

    fn entries(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn messages(list: &[&str]) -> Vec<String> {
        resolve("quality", &entries(list), &known()).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn named_operations_and_wildcards_resolve_once_each() {
        let got = resolve("quality", &entries(&["ai-on-the-edge/readings", "wattmon/*", "wattmon/export"]), &known());
        let pairs =
            |list: &[(&str, &str)]| list.iter().map(|(p, o)| (p.to_string(), o.to_string())).collect::<Vec<_>>();
        assert_eq!(got.unwrap(), pairs(&[("ai-on-the-edge", "readings"), ("wattmon", "export")]));
        let all = resolve("quality", &entries(&["ai-on-the-edge/*"]), &known()).unwrap();
        assert_eq!(all, pairs(&[("ai-on-the-edge", "readings"), ("ai-on-the-edge", "image")]));
    }

    #[test]
    fn entries_naming_nothing_are_refused_with_the_choices() {
        assert_eq!(
            messages(&["ai-on-the-edge/nope", "nowhere/readings", "ai-on-the-edge", "ai-on-the-edge/"]),
            vec![
                r#"[plugins.quality] handles = ["ai-on-the-edge/nope"]: ai-on-the-edge has no operation "nope" (its operations: readings, image)"#,
                r#"[plugins.quality] handles = ["nowhere/readings"]: there is no protocol nowhere"#,
                r#"[plugins.quality] handles = ["ai-on-the-edge"]: name the operations to handle as "<protocol>/<operationId>": "ai-on-the-edge/readings", "ai-on-the-edge/image", or "ai-on-the-edge/*" for all of them"#,
                r#"[plugins.quality] handles = ["ai-on-the-edge/"]: ai-on-the-edge has no operation "" (its operations: readings, image)"#,
            ]
        );
    }
}
