//! The console's files, built into the binary (nothing is fetched at run time): the page
//! shells, the style sheet, the scripts and the vendored uPlot, each with its content type
//! and an `ETag` from its bytes.

use std::collections::HashMap;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One file served under `/console/static/`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset { name: $name, content_type: $ty, bytes: include_bytes!(concat!("assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every static file.
pub const ASSETS: &[Asset] = &[
    asset!("console.css", CSS),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("common.js", JS),
    asset!("login.js", JS),
    asset!("log.js", JS),
    asset!("inspector.js", JS),
    asset!("replay.js", JS),
    asset!("meters.js", JS),
    asset!("health.js", JS),
    asset!("setup.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// The page shell every console page is drawn in (by `app.js`).
pub const APP: &str = include_str!("assets/app.html");
/// The log-in form.
pub const LOGIN: &str = include_str!("assets/login.html");
/// What `/console/` shows while no admin token is configured.
pub const DISABLED: &str = include_str!("assets/disabled.html");

/// The static file `name`, with its `ETag`.
pub fn find(name: &str) -> Option<(&'static Asset, &'static str)> {
    let asset = ASSETS.iter().find(|a| a.name == name)?;
    let tag = tags().get(name).map_or("", String::as_str);
    Some((asset, tag))
}

fn tags() -> &'static HashMap<&'static str, String> {
    static TAGS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS.iter().map(|a| (a.name, format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..16]))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_content_type_matching_its_name() {
        for a in ASSETS {
            let want = match a.name.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => "image/svg+xml",
                _ => "text/plain; charset=utf-8",
            };
            assert_eq!(a.content_type, want, "{}", a.name);
            assert!(find(a.name).is_some_and(|(_, tag)| tag.len() == 18));
        }
    }
}
