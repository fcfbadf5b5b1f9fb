//! Checks carried inside a form: an MD5 of one field, and a sender field with an allow-list.

use md5::{Digest, Md5};

use crate::form::Form;

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

/// The sender named in `field`, which must be in `allowed` when a list is configured.
pub fn source(form: Option<&Form>, field: &str, allowed: Option<&[String]>) -> Result<String, FormCheckError> {
    let form = form.ok_or(FormCheckError::NotAForm)?;
    let value = form
        .get(field)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| FormCheckError::Missing(field.to_owned()))?;
    match allowed {
        Some(list) if !list.iter().any(|a| a.eq_ignore_ascii_case(value)) => {
            Err(FormCheckError::NotAllowed(field.to_owned()))
        }
        _ => Ok(value.to_owned()),
    }
}
