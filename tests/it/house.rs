//! House rules a test can check: every source file says what lives in it, the tests stand on
//! the repository alone, `unsafe` stays where ARCHITECTURE.md allows it, the pure modules do
//! no I/O and read no clock, every host function of the script API is documented, and the
//! built-in defaults (`src/defaults/`) are what the repository's `spec/` and `scripts/` hold.

use std::path::Path;

use crate::helpers::{REPO, files_below};

/// `(path relative to the repository, text)` of every file below `dir` ending in one of `exts`
/// (every file when `exts` is empty).
fn sources(dir: &str, exts: &[&str]) -> Vec<(String, String)> {
    let root = Path::new(REPO).join(dir);
    files_below(&root)
        .into_iter()
        .filter(|f| exts.is_empty() || exts.iter().any(|e| f.ends_with(e)))
        .filter_map(|f| Some((format!("{dir}/{f}"), std::fs::read_to_string(root.join(&f)).ok()?)))
        .collect()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(REPO).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_source_file_opens_with_a_module_doc_paragraph() {
    let mut missing = Vec::new();
    for (file, text) in [sources("src", &[".rs"]), sources("tests", &[".rs"])].concat() {
        if !text.starts_with("//!") {
            missing.push(file);
        }
    }
    assert!(missing.is_empty(), "files without a leading //! paragraph: {missing:?}");
}

#[test]
fn nothing_under_src_or_tests_refers_to_material_outside_the_repository() {
    // Built from parts so that this file does not name them itself.
    let needles = [["..", "/shared"].concat(), ["shared", "/reference"].concat()];
    let mut found = Vec::new();
    for (file, text) in [sources("src", &[]), sources("tests", &[])].concat() {
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "references outside the repository (use tests/fixtures/):\n{}", found.join("\n"));
}

/// The line without its `//` comment and with the contents of its string literals blanked,
/// as far as a line-by-line look can tell.
fn code_of(line: &str) -> String {
    let (mut out, mut in_string, mut prev) = (String::new(), false, ' ');
    for c in line.chars() {
        if !in_string && c == '/' && prev == '/' {
            out.pop();
            break;
        }
        if c == '"' && prev != '\\' {
            in_string = !in_string;
        }
        out.push(if in_string && c != '"' { ' ' } else { c });
        prev = c;
    }
    out
}

fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let after = code[i + word.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        before && after
    })
}

/// The comment lines (`//` and `///`) directly above line `n`.
fn comments_above(lines: &[&str], n: usize) -> Vec<String> {
    lines[..n].iter().rev().map(|l| l.trim()).take_while(|l| l.starts_with("//")).map(str::to_owned).collect()
}

/// The files ARCHITECTURE.md allows `unsafe` in: the `src/…` code spans of its invariant line.
fn unsafe_allowed() -> Vec<String> {
    let architecture = read("ARCHITECTURE.md");
    let start = architecture.find("- `unsafe` only in").expect("ARCHITECTURE.md states where `unsafe` may be");
    let item = architecture[start..].split("\n- ").next().unwrap_or_default();
    item.split('`').skip(1).step_by(2).filter(|s| s.starts_with("src/")).map(str::to_owned).collect()
}

#[test]
fn unsafe_is_only_where_architecture_allows_it_and_each_use_says_why_it_is_sound() {
    let allowed = unsafe_allowed();
    assert!(!allowed.is_empty(), "no allowed files found in ARCHITECTURE.md's `unsafe` invariant");
    let mut problems = Vec::new();
    for (file, text) in sources("src", &[".rs"]) {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let code = code_of(line);
            if !has_word(&code, "unsafe") {
                continue;
            }
            let above = comments_above(&lines, n);
            let justified = if has_word(&code, "fn") {
                above.iter().any(|l| l.starts_with("/// # Safety"))
            } else {
                above.iter().any(|l| l.starts_with("// SAFETY:"))
            };
            if !allowed.contains(&file) {
                problems.push(format!("{file}:{}: `unsafe` outside the files ARCHITECTURE.md allows", n + 1));
            } else if !justified {
                problems.push(format!("{file}:{}: `unsafe` without a `// SAFETY:` comment just above", n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const PURE: [&str; 7] = [
    "src/auth/",
    "src/event.rs",
    "src/form.rs",
    "src/ingest/split.rs",
    "src/spec/schema.rs",
    "src/spec/readings.rs",
    "src/meters.rs",
];

const IMPURE: [&str; 10] = [
    "std::fs",
    "tokio::fs",
    "std::net",
    "File::",
    "SystemTime::now",
    "Instant::now",
    "OffsetDateTime::now",
    "Utc::now",
    "std::env::var",
    "std::process",
];

/// `(line number, line)` of `text` outside `#[cfg(test)]` items.
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let (mut out, mut skipping, mut depth) = (Vec::new(), false, 0i64);
    for (n, line) in text.lines().enumerate() {
        if !skipping && line.trim_start().starts_with("#[cfg(test)]") {
            (skipping, depth) = (true, 0);
            continue;
        }
        if !skipping {
            out.push((n + 1, line));
            continue;
        }
        let code = code_of(line).replace("'{'", "").replace("'}'", "");
        depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
        let item_ended = depth <= 0 && (code.contains('}') || code.trim_end().ends_with(';'));
        if item_ended {
            skipping = false;
        }
    }
    out
}

#[test]
fn the_pure_modules_do_no_io_and_read_no_clock() {
    let files: Vec<(String, String)> =
        sources("src", &[".rs"]).into_iter().filter(|(f, _)| PURE.iter().any(|p| f.starts_with(p))).collect();
    assert!(files.len() >= PURE.len(), "pure modules not found: {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>());
    let mut found = Vec::new();
    for (file, text) in &files {
        for (n, line) in non_test_lines(text) {
            let code = code_of(line);
            for needle in IMPURE.iter().filter(|needle| code.contains(*needle)) {
                found.push(format!("{file}:{n}: {needle} in `{}`", line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "I/O or clock in a pure module (pass the value in):\n{}", found.join("\n"));
}

/// The names scripts call: every `pub fn` of the `#[export_module]` (or its `#[rhai_fn(name =
/// …)]`) and every `register_fn("…")` in `src/script/`.
fn host_functions() -> Vec<String> {
    let mut names = Vec::new();
    for (_, text) in sources("src/script", &[".rs"]) {
        names.extend(text.split("register_fn(\"").skip(1).filter_map(|s| s.split('"').next()).map(str::to_owned));
        let Some(start) = text.find("#[export_module]") else { continue };
        let mut renamed: Option<String> = None;
        for line in text[start..].lines().map(str::trim) {
            if let Some(attr) = line.strip_prefix("#[rhai_fn(") {
                renamed = attr.split("name = \"").nth(1).and_then(|s| s.split('"').next()).map(str::to_owned);
                if attr.contains("skip") {
                    renamed = Some(String::new());
                }
            } else if let Some(rest) = line.strip_prefix("pub fn ") {
                let own = rest.split(['(', '<']).next().unwrap_or_default().to_owned();
                names.push(renamed.take().unwrap_or(own));
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_host_function_of_the_script_api_is_documented_in_scripts_readme() {
    let functions = host_functions();
    assert!(functions.len() >= 10, "host functions not found in src/script/: {functions:?}");
    assert!(functions.contains(&"log".to_owned()), "a #[rhai_fn(name = …)] is read: {functions:?}");
    let readme = read("scripts/README.md");
    let undocumented: Vec<&String> = functions
        .iter()
        .filter(|f| !readme.contains(&format!("`{f}(")) && !readme.contains(&format!("`{f}`")))
        .collect();
    assert!(undocumented.is_empty(), "host functions missing from scripts/README.md: {undocumented:?}");
}

/// The built-in specs and scripts (`src/defaults/`, compiled in) are the source; the
/// repository's `spec/` and `scripts/` are what `hookyard init` writes from them. Editing
/// those never rebuilds the server, so this test is what tells they went apart.
#[test]
fn the_repositorys_spec_and_scripts_are_the_built_in_defaults() {
    use hookyard::spec::embedded::{SCRIPTS, SPECS};
    let mut differ = Vec::new();
    for (dir, ext, built_in) in [("spec", "yaml", SPECS), ("scripts", "rhai", SCRIPTS)] {
        let on_disk: Vec<String> = sources(dir, &[ext]).into_iter().map(|(f, _)| f).collect();
        let compiled: Vec<String> = built_in.iter().map(|(n, _)| format!("{dir}/{n}.{ext}")).collect();
        assert_eq!(on_disk, compiled, "{dir}/ and the built-in list of src/spec/embedded.rs name other files");
        let copies: Vec<String> = sources(&format!("src/defaults/{dir}"), &[ext]).into_iter().map(|(f, _)| f).collect();
        assert_eq!(copies.len(), compiled.len(), "src/defaults/{dir}/ holds other files: {copies:?}");
        for (name, text) in built_in {
            let file = format!("{dir}/{name}.{ext}");
            if read(&file) != *text {
                differ.push(file);
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{differ:?} differ from their built-in copy in src/defaults/ (the source of the defaults): \
         change a default there and copy it over, or copy the built-in one back"
    );
}
