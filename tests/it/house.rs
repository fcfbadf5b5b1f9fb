//! House rules a test can check: every source file says what lives in it.

use crate::helpers::{REPO, files_below};

#[test]
fn every_source_file_opens_with_a_module_doc_paragraph() {
    let mut missing = Vec::new();
    for dir in ["src", "tests"] {
        let root = std::path::Path::new(REPO).join(dir);
        for file in files_below(&root).into_iter().filter(|f| f.ends_with(".rs")) {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            if !text.starts_with("//!") {
                missing.push(format!("{dir}/{file}"));
            }
        }
    }
    assert!(missing.is_empty(), "files without a leading //! paragraph: {missing:?}");
}
