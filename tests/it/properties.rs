//! Property tests: parsers never panic, round-trip what they should, and every name the path
//! sanitiser accepts stays inside the data directory.

use std::path::{Component, Path};

use bytes::Bytes;
use hookyard::auth::HmacVerifier;
use hookyard::form::Form;
use hookyard::ingest::split::parse_csv;
use hookyard::spec::ext::{DigestEncoding, HmacAlgorithm};
use hookyard::store::{DataDir, safe_relative_path};
use proptest::prelude::*;

fn verifier() -> HmacVerifier {
    HmacVerifier {
        header: "X-Signature".into(),
        prefix: "sha512=".into(),
        algorithm: HmacAlgorithm::HmacSha512,
        encoding: DigestEncoding::Hex,
        multiple: true,
        secrets: vec![b"k".to_vec()],
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_signature_header_parser_never_panics(header in proptest::collection::vec(any::<u8>(), 0..400), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = verifier().verify(Some(&header), &body);
    }

    #[test]
    fn a_valid_digest_is_accepted_among_any_others_with_any_spacing(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        others in proptest::collection::vec("[0-9a-f]{2,128}", 0..4),
        pad in " {0,3}",
        upper in any::<bool>(),
    ) {
        let v = verifier();
        let mut good = hex::encode(v.sign(b"k", &body));
        if upper { good = good.to_uppercase(); }
        let mut elements: Vec<String> = others.iter().filter(|o| o.len() % 2 == 0).map(|o| format!("sha512={o}")).collect();
        elements.push(format!("sha512={good}"));
        let header = format!("{pad}{}{pad}", elements.join(&format!(",{pad}")));
        prop_assert!(v.verify(Some(header.as_bytes()), &body).is_ok(), "{}", header);
    }

    #[test]
    fn form_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), multipart in any::<bool>()) {
        let ct = if multipart { Some("multipart/form-data; boundary=B") } else { None };
        let _ = block_on(Form::parse(ct, Bytes::from(body)));
    }

    #[test]
    fn urlencoded_and_multipart_round_trip_any_text(fields in proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,40}", 0..5)) {
        let encoded: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        let parsed = block_on(Form::parse(None, Bytes::from(encoded))).unwrap();
        let mut multipart = String::new();
        for (k, v) in &fields {
            multipart.push_str(&format!("--B0UNDARY\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
        }
        multipart.push_str("--B0UNDARY--\r\n");
        let from_multipart = block_on(Form::parse(Some("multipart/form-data; boundary=B0UNDARY"), Bytes::from(multipart))).unwrap();
        for (k, v) in &fields {
            prop_assert_eq!(parsed.get(k), Some(v.as_str()));
            prop_assert_eq!(from_multipart.get(k), Some(v.as_str()));
        }
    }

    #[test]
    fn csv_parsing_never_panics_and_round_trips(text in "\\PC{0,200}", rows in proptest::collection::vec(proptest::collection::vec("[^\r\u{feff}]{0,12}", 3), 1..6)) {
        let _ = parse_csv(&text);
        let mut writer = csv::Writer::from_writer(Vec::new());
        for r in &rows { writer.write_record(r).unwrap(); }
        let written = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        let parsed = parse_csv(&written);
        // Exact whenever the first row is a usable header (named, distinct columns).
        let header = &rows[0];
        let usable = header.iter().all(|c| !c.trim().is_empty())
            && header.iter().collect::<std::collections::BTreeSet<_>>().len() == header.len();
        if usable {
            prop_assert_eq!(parsed.unwrap(), rows);
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn every_accepted_path_stays_inside_the_data_directory(rel in "[a-zA-Z0-9./:_\\\\-]{0,40}") {
        if let Ok(path) = safe_relative_path(&rel) {
            prop_assert!(path.is_relative());
            prop_assert!(path.components().all(|c| matches!(c, Component::Normal(_))), "{:?}", path);
            prop_assert!(Path::new("/data").join(&path).starts_with("/data"));
        }
    }
}

#[test]
fn accepted_paths_resolve_inside_the_data_directory_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&"[a-z.]{1,6}(/[a-z.]{1,6}){0,3}", |rel| {
            if let Ok(full) = data.resolve(&rel) {
                prop_assert!(full.starts_with(data.root()), "{:?}", full);
            }
            Ok(())
        })
        .unwrap();
}
