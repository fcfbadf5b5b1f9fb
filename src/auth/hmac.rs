//! HMAC signatures over the raw body: header parsing and constant-time verification.
//!
//! Header grammar (gridX style when `multiple`): elements separated by `,`, each trimmed,
//! each `<prefix><digest>`; the whole header is refused when any element lacks the exact
//! prefix or does not decode. The request is accepted when any digest equals the HMAC of the
//! body under any configured secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::spec::ext::{DigestEncoding, HmacAlgorithm};

use base64::Engine as _;

/// Why a signature header was refused. Never carries secret material.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("{0} header is missing")]
    Missing(String),
    #[error("{0} header is malformed")]
    Malformed(String),
    #[error("{0} does not match the body")]
    Mismatch(String),
}

/// A configured HMAC check.
#[derive(Clone)]
pub struct HmacVerifier {
    pub header: String,
    pub prefix: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: DigestEncoding,
    pub multiple: bool,
    pub secrets: Vec<Vec<u8>>,
}

impl HmacVerifier {
    /// Verifies `header_value` (None when the header is absent) over `body`.
    pub fn verify(&self, header_value: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let raw = header_value.ok_or_else(|| SignatureError::Missing(self.header.clone()))?;
        let text = std::str::from_utf8(raw).map_err(|_| self.malformed())?.trim();
        if text.is_empty() {
            return Err(SignatureError::Missing(self.header.clone()));
        }
        let digests = self.parse(text)?;
        let expected: Vec<Vec<u8>> = self.secrets.iter().map(|s| self.sign(s, body)).collect();
        let mut matched = subtle::Choice::from(0u8);
        for digest in &digests {
            for tag in &expected {
                matched |= digest.as_slice().ct_eq(tag.as_slice());
            }
        }
        if bool::from(matched) { Ok(()) } else { Err(SignatureError::Mismatch(self.header.clone())) }
    }

    /// Splits and decodes the header into digests; any bad element refuses the whole header.
    pub fn parse(&self, text: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
        let elements: Vec<&str> = if self.multiple { text.split(',').collect() } else { vec![text] };
        elements.into_iter().map(|e| self.decode(e.trim()).ok_or_else(|| self.malformed())).collect()
    }

    fn decode(&self, element: &str) -> Option<Vec<u8>> {
        let digest = element.strip_prefix(self.prefix.as_str())?;
        let bytes = match self.encoding {
            DigestEncoding::Hex => hex::decode(digest).ok()?,
            DigestEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(digest).ok()?,
        };
        (!bytes.is_empty()).then_some(bytes)
    }

    fn malformed(&self) -> SignatureError {
        SignatureError::Malformed(self.header.clone())
    }

    /// The HMAC of `body` under `secret`.
    pub fn sign(&self, secret: &[u8], body: &[u8]) -> Vec<u8> {
        match self.algorithm {
            HmacAlgorithm::HmacSha256 => mac::<Hmac<Sha256>>(secret, body),
            HmacAlgorithm::HmacSha512 => mac::<Hmac<Sha512>>(secret, body),
        }
    }
}

fn mac<M: Mac + KeyInit>(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gridx(secrets: &[&str]) -> HmacVerifier {
        HmacVerifier {
            header: "X-Signature".into(),
            prefix: "sha512=".into(),
            algorithm: HmacAlgorithm::HmacSha512,
            encoding: DigestEncoding::Hex,
            multiple: true,
            secrets: secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn any_matching_digest_under_any_secret_is_accepted() {
        let v = gridx(&["old", "new"]);
        let sig =
            format!("sha512={}, sha512={}", hex::encode(v.sign(b"other", b"x")), hex::encode(v.sign(b"new", b"x")));
        assert_eq!(v.verify(Some(sig.as_bytes()), b"x"), Ok(()));
        assert_eq!(v.verify(Some(sig.as_bytes()), b"y"), Err(SignatureError::Mismatch("X-Signature".into())));
    }

    #[test]
    fn one_bad_element_refuses_the_whole_header() {
        let v = gridx(&["k"]);
        let good = hex::encode(v.sign(b"k", b"x"));
        for bad in [format!("sha512={good}, "), format!("sha256=ab, sha512={good}"), format!("SHA512={good}")] {
            assert_eq!(v.verify(Some(bad.as_bytes()), b"x"), Err(SignatureError::Malformed("X-Signature".into())));
        }
        assert_eq!(v.verify(None, b"x"), Err(SignatureError::Missing("X-Signature".into())));
    }
}
