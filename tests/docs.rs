//! The documentation's promises point at real tests: every test that `docs/threat-model.md`
//! names exists in the file it names, so a renamed or deleted test cannot leave a line of the
//! threat model backed by nothing.

use std::path::Path;

/// `(file, test)` for every test the page names: a backticked `tests/<file>.rs` sets the file
/// that the backticked snake_case names after it (until the next file) are looked up in.
fn cited_tests(page: &str) -> Vec<(String, String)> {
    let mut cited = Vec::new();
    let mut file: Option<String> = None;
    for (i, quoted) in page.split('`').enumerate() {
        if i % 2 == 0 {
            continue; // outside backticks
        }
        if quoted.starts_with("tests/") && quoted.ends_with(".rs") {
            file = Some(quoted.to_string());
        } else if quoted.matches('_').count() >= 2
            && quoted
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            let file = file
                .clone()
                .unwrap_or_else(|| panic!("`{quoted}` is named before any tests/ file"));
            cited.push((file, quoted.to_string()));
        }
    }
    cited
}

#[test]
fn every_test_the_threat_model_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/threat-model.md")).unwrap();
    let cited = cited_tests(&page);
    assert!(cited.len() > 30, "only {} tests cited", cited.len());
    let missing: Vec<String> = cited
        .iter()
        .filter(|(file, test)| {
            let source =
                std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            !source.contains(&format!("fn {test}("))
        })
        .map(|(file, test)| format!("{file} {test}"))
        .collect();
    assert!(missing.is_empty(), "named but not found: {missing:?}");
}
