//! Checks carried inside a form: an MD5 of one field, and a sender field with an allow-list.

use md5::{Digest, Md5};

use crate::form::Form;

/// The MD5 in `field` must match the MD5 of `over` (hex, any case); `field` may be absent
/// unless `required`.
pub fn checksum(form: Option<&Form>, field: &str, over: &str, required: bool) -> Result<(), String> {
    let form = form.ok_or("the body is not a form")?;
    let Some(given) = form.get(field) else {
        return if required { Err(format!("{field} field is missing")) } else { Ok(()) };
    };
    let data = form.get(over).unwrap_or_default();
    let actual = hex::encode(Md5::digest(data.as_bytes()));
    if given.trim().eq_ignore_ascii_case(&actual) { Ok(()) } else { Err("MD5 sum mismatch".into()) }
}

/// The sender named in `field`, which must be in `allowed` when a list is configured.
pub fn source(form: Option<&Form>, field: &str, allowed: Option<&[String]>) -> Result<String, String> {
    let form = form.ok_or("the body is not a form")?;
    let value =
        form.get(field).map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| format!("{field} field is missing"))?;
    match allowed {
        Some(list) if !list.iter().any(|a| a.eq_ignore_ascii_case(value)) => {
            Err(format!("{field} is not an allowed device"))
        }
        _ => Ok(value.to_owned()),
    }
}
