//! HTML form bodies (urlencoded and multipart) split into named text fields.
//!
//! This is framing only: field values are kept as sent; nothing interprets them here.
//! Pure: works on bytes already read.

use bytes::Bytes;

/// The form could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("Content-Type must be application/x-www-form-urlencoded or multipart/form-data")]
    ContentType,
    #[error("multipart body is malformed: {0}")]
    Multipart(String),
    #[error("form field {0:?} is not valid UTF-8")]
    Utf8(String),
    #[error("form field {0:?} appears more than once")]
    Duplicate(String),
}

/// Named text fields of a form, in the order sent.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The fields as a JSON object of strings (what the form schema validates).
    pub fn to_json(&self) -> serde_json::Value {
        self.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect()
    }

    fn push(&mut self, name: String, value: String) -> Result<(), FormError> {
        if self.get(&name).is_some() {
            return Err(FormError::Duplicate(name));
        }
        self.fields.push((name, value));
        Ok(())
    }

    /// Parses `body` according to its `Content-Type` (urlencoded when absent).
    pub async fn parse(content_type: Option<&str>, body: Bytes) -> Result<Self, FormError> {
        let media = content_type.unwrap_or("application/x-www-form-urlencoded");
        let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-www-form-urlencoded" | "" => Self::urlencoded(&body),
            "multipart/form-data" => Self::multipart(media, body).await,
            _ => Err(FormError::ContentType),
        }
    }

    fn urlencoded(body: &[u8]) -> Result<Self, FormError> {
        let mut form = Form::default();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode(name).map_err(|_| FormError::Utf8(String::from_utf8_lossy(name).into_owned()))?;
            let value = decode(value).map_err(|_| FormError::Utf8(name.clone()))?;
            form.push(name, value)?;
        }
        Ok(form)
    }

    async fn multipart(media: &str, body: Bytes) -> Result<Self, FormError> {
        let boundary = multer::parse_boundary(media).map_err(|e| FormError::Multipart(e.to_string()))?;
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut parts = multer::Multipart::new(stream, boundary);
        let mut form = Form::default();
        while let Some(field) = parts.next_field().await.map_err(|e| FormError::Multipart(e.to_string()))? {
            let name = field.name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.map_err(|e| FormError::Multipart(e.to_string()))?;
            let value = String::from_utf8(bytes.to_vec()).map_err(|_| FormError::Utf8(name.clone()))?;
            form.push(name, value)?;
        }
        Ok(form)
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), refusing invalid UTF-8
/// rather than replacing it.
fn decode(raw: &[u8]) -> Result<String, std::string::FromUtf8Error> {
    let spaced: Vec<u8> = raw.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    String::from_utf8(percent_encoding::percent_decode(&spaced).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urlencoded_and_multipart_give_the_same_fields() {
        let url = Form::parse(None, Bytes::from_static(b"key=00%3A04&data=a%2Cb%0A1%2C2")).await.unwrap();
        assert_eq!(url.get("key"), Some("00:04"));
        assert_eq!(url.get("data"), Some("a,b\n1,2"));
        let body = "--XX\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n00:04\r\n--XX\r\n\
                    Content-Disposition: form-data; name=\"data\"\r\n\r\na,b\n1,2\r\n--XX--\r\n";
        let multi = Form::parse(Some("multipart/form-data; boundary=XX"), Bytes::from(body)).await.unwrap();
        assert_eq!(multi.to_json(), url.to_json());
    }

    #[tokio::test]
    async fn duplicate_fields_and_foreign_types_are_refused() {
        assert!(matches!(Form::parse(None, Bytes::from_static(b"a=1&a=2")).await, Err(FormError::Duplicate(_))));
        assert!(matches!(Form::parse(Some("text/csv"), Bytes::new()).await, Err(FormError::ContentType)));
        assert!(matches!(Form::parse(None, Bytes::from_static(b"data=%FF")).await, Err(FormError::Utf8(_))));
        let plus = Form::parse(None, Bytes::from_static(b"a=1+2%2B3&flag")).await.unwrap();
        assert_eq!((plus.get("a"), plus.get("flag")), (Some("1 2+3"), Some("")));
    }
}
