//! A secret string (a password, a token, a URL with credentials): `Debug` never shows it.
//!
//! A leaf module, so that every settings struct holding a secret (config, outputs, the shared
//! journal) can use it without depending on the config that reads them. Reading one that is
//! not a string fails without quoting what was found (a numeric password stays unprinted).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A secret string: `Debug` prints `<redacted>`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(SecretVisitor)
    }
}

struct SecretVisitor;

fn not_text<E: de::Error>(found: &str) -> E {
    E::custom(format!("expected a string, found {found} (write a secret in quotes)"))
}

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(not_text("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(not_text("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(not_text("a number"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(not_text("true or false"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }

    #[test]
    fn a_secret_that_is_not_text_is_refused_without_quoting_it() {
        let value: toml::Value = toml::from_str("password = 12345678").unwrap();
        let err = value.get("password").cloned().unwrap().try_into::<Secret>().unwrap_err().to_string();
        assert!(err.contains("expected a string, found a number"), "{err}");
        assert!(!err.contains("12345678"), "{err}");
        let ok: Secret = toml::Value::String("s3cret".into()).try_into().unwrap();
        assert_eq!(ok.0, "s3cret");
    }
}
