//! Checks carried inside a form: an MD5 of one field, and a sender field with an allow-list.
//!
//! A sender's name may be spelled canonically first (MAC addresses: `aa-bb-cc-dd-ee-ff`), so
//! that `AA:BB:…`, `aa-bb-…` and `Aa-bB-…` are one device for the allow-list, the event's
//! `source`, file names and dedup.

use md5::{Digest, Md5};

use crate::form::Form;
use crate::spec::ext::SourceSpelling;

/// Why a form check refused the request. The texts are what the sender reads in the reply
/// (Wattmon's documented `ERROR: MD5 sum mismatch` among them).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormCheckError {
    #[error("the body is not a form")]
    NotAForm,
    #[error("{0} field is missing")]
    Missing(String),
    #[error("MD5 sum mismatch")]
    Mismatch,
    #[error("{0} is not an allowed device")]
    NotAllowed(String),
}

/// The MD5 in `field` must match the MD5 of `over` (hex, any case); `field` may be absent
/// unless `required`.
pub fn checksum(form: Option<&Form>, field: &str, over: &str, required: bool) -> Result<(), FormCheckError> {
    let form = form.ok_or(FormCheckError::NotAForm)?;
    let Some(given) = form.get(field) else {
        return if required { Err(FormCheckError::Missing(field.to_owned())) } else { Ok(()) };
    };
    let data = form.get(over).unwrap_or_default();
    let actual = hex::encode(Md5::digest(data.as_bytes()));
    if given.trim().eq_ignore_ascii_case(&actual) { Ok(()) } else { Err(FormCheckError::Mismatch) }
}

/// The sender named in `field` (in its canonical spelling), which must be in `allowed` when
/// a list is configured (its entries are spelled the same way when the list is built).
pub fn source(
    form: Option<&Form>,
    field: &str,
    allowed: Option<&[String]>,
    spelling: Option<SourceSpelling>,
) -> Result<String, FormCheckError> {
    let form = form.ok_or(FormCheckError::NotAForm)?;
    let value = form
        .get(field)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| FormCheckError::Missing(field.to_owned()))?;
    let value = spell(value, spelling);
    match allowed {
        Some(list) if !list.iter().any(|a| a.eq_ignore_ascii_case(&value)) => {
            Err(FormCheckError::NotAllowed(field.to_owned()))
        }
        _ => Ok(value),
    }
}

/// `name` in the canonical `spelling` (as is without one).
pub fn spell(name: &str, spelling: Option<SourceSpelling>) -> String {
    match spelling {
        None => name.to_owned(),
        Some(SourceSpelling::Mac) => canonical_mac(name),
    }
}

/// 12 hex digits, with or without `:`, `-` or `.` separators, become `aa-bb-cc-dd-ee-ff`;
/// any other name is lowercased with `:` turned into `-` (no `:` in file names).
fn canonical_mac(name: &str) -> String {
    let digits: String = name.chars().filter(|c| !matches!(c, ':' | '-' | '.')).collect();
    if digits.len() == 12 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        let lower = digits.to_ascii_lowercase();
        let pairs: Vec<&str> = (0..6).map(|i| &lower[2 * i..2 * i + 2]).collect();
        return pairs.join("-");
    }
    name.to_ascii_lowercase().replace(':', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_spellings_become_one() {
        for given in
            ["AA-BB-CC-DD-EE-0F", "aa-bb-cc-dd-ee-0f", "Aa-bB-cC-Dd-eE-0f", "AA:BB:CC:DD:EE:0F", "aabb.ccdd.ee0f"]
        {
            assert_eq!(canonical_mac(given), "aa-bb-cc-dd-ee-0f", "{given}");
        }
        assert_eq!(canonical_mac("Site:North_1"), "site-north_1");
    }
}
