//! CSV cells as scripts write them: values to text, spreadsheet formulas neutralised.
//!
//! A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a
//! formula by spreadsheet programs, so a value a sender chose (`=HYPERLINK(…)`,
//! `+cmd|' /C calc'!A0`) would run when someone opens the file. Following OWASP's rule for
//! CSV injection, such a cell gets a leading `'` unless it is a plain number (`-12.5`,
//! `+3`, `1e-3`). The `append_csv_raw` host functions write cells as they are.

use rhai::Dynamic;
use sha2::{Digest, Sha256};

use crate::store::files::csv_record;

/// Whether cells are written as given or with formulas neutralised.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    Neutralised,
    Raw,
}

/// A script value as the text of one cell (`()` is empty).
pub fn cell(value: &Dynamic) -> String {
    if value.is_unit() { String::new() } else { value.to_string() }
}

/// One CSV record (CRLF) of `cells`.
pub fn record(cells: Vec<String>, mode: Cells) -> Vec<u8> {
    match mode {
        Cells::Raw => csv_record(&cells),
        Cells::Neutralised => csv_record(&cells.into_iter().map(neutralise).collect::<Vec<_>>()),
    }
}

/// One CSV record of script values.
pub fn row(values: &rhai::Array, mode: Cells) -> Vec<u8> {
    record(values.iter().map(cell).collect(), mode)
}

/// `'` before a cell a spreadsheet would read as a formula, unless it is a number.
pub fn neutralise(text: String) -> String {
    let risky = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_number(&text) { format!("'{text}") } else { text }
}

/// A plain decimal number: optional sign, digits with an optional fraction, optional exponent.
fn is_number(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// The first 8 hex digits of the SHA-256 of `value`: text as its bytes, a list as the CSV
/// record of its items (a header row as written raw), anything else as its text.
pub fn short_digest(value: &Dynamic) -> String {
    let bytes = match value.read_lock::<rhai::Array>() {
        Some(items) => row(&items, Cells::Raw),
        None => cell(value).into_bytes(),
    };
    hex::encode(Sha256::digest(&bytes))[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_numbers_are_not() {
        for (given, written) in [
            ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-1+1", "'-1+1"),
            ("@SUM(1)", "'@SUM(1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-12.5", "-12.5"),
            ("+3", "+3"),
            ("-1e-3", "-1e-3"),
            ("-", "'-"),
            ("-.", "'-."),
            ("-inf", "'-inf"),
            ("12 = 12", "12 = 12"),
        ] {
            assert_eq!(neutralise(given.into()), written, "{given:?}");
        }
    }
}
