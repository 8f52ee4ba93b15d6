//! The documentation against the code, so that neither can drift from the other:
//! - the threat model's promises point at real tests: every test that `docs/threat-model.md`
//!   names exists in the file it names, so a renamed or deleted test cannot leave a line of the
//!   threat model backed by nothing;
//! - the command reference, `docs/commands.md`, has exactly one entry per row of the command
//!   table, with the row's usage as its syntax and the row's permission (the convention is
//!   stated at the top of that page);
//! - the README and the docs link only to files that exist in the repository.

use std::path::Path;

use gokv::command::{Permission, COMMANDS};

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

// ------------------------------------------------------------------------------------------
// docs/commands.md against the command table
// ------------------------------------------------------------------------------------------

/// The `Permission:` phrase of each permission, as the top of `docs/commands.md` lists them.
fn permission_phrase(p: Permission) -> &'static str {
    match p {
        Permission::Open => "none (served before login)",
        Permission::Authenticated => "any logged-in user",
        Permission::Read => "READ",
        Permission::Write => "WRITE",
        Permission::ReadWrite => "READ and WRITE",
        Permission::WriteReadWithGet => "WRITE (and READ with GET)",
        Permission::Admin => "ADMIN on the partition",
        Permission::AdminOrAllForQuotas => "ADMIN on the partition (on * for quotas)",
        Permission::Any => "any grant on the partition",
        Permission::AdminAll => "ADMIN on *",
        Permission::SelfOrAdminAll => "ADMIN on *, or the user itself",
    }
}

/// One `### NAME` entry of the reference: its name, syntax line and permission line.
#[derive(Debug)]
struct Entry {
    name: String,
    syntax: Option<String>,
    permission: Option<String>,
}

/// The entries of `docs/commands.md`, by the convention its top states: a `### NAME`
/// heading, then the syntax in backticks on the next non-empty line, then a
/// `Permission: ...` line before the next heading.
fn entries(page: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut expect_syntax = false;
    for line in page.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            out.push(Entry {
                name: name.trim().to_string(),
                syntax: None,
                permission: None,
            });
            expect_syntax = true;
            continue;
        }
        if line.starts_with("## ") || line.starts_with("# ") {
            expect_syntax = false;
            continue;
        }
        let Some(entry) = out.last_mut() else {
            continue;
        };
        if expect_syntax && !line.trim().is_empty() {
            expect_syntax = false;
            let t = line.trim();
            if t.len() > 2 && t.starts_with('`') && t.ends_with('`') {
                entry.syntax = Some(t[1..t.len() - 1].to_string());
            }
        } else if let Some(p) = line.strip_prefix("Permission: ") {
            if entry.permission.is_none() {
                entry.permission = Some(p.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn the_command_reference_has_one_entry_per_row_of_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/commands.md")).unwrap();
    let entries = entries(&page);
    let mut problems = Vec::new();
    for row in &COMMANDS {
        let name = row.name.to_ascii_uppercase();
        let found: Vec<&Entry> = entries.iter().filter(|e| e.name == name).collect();
        let [entry] = found[..] else {
            problems.push(format!("{name}: {} entries (one expected)", found.len()));
            continue;
        };
        if entry.syntax.as_deref() != Some(row.usage) {
            problems.push(format!(
                "{name}: syntax {:?}, the table's usage is {:?}",
                entry.syntax, row.usage
            ));
        }
        let phrase = permission_phrase(row.permission);
        if entry.permission.as_deref() != Some(phrase) {
            problems.push(format!(
                "{name}: permission {:?}, the table says {:?} ({phrase:?})",
                entry.permission, row.permission
            ));
        }
    }
    for entry in &entries {
        if !COMMANDS
            .iter()
            .any(|row| row.name.to_ascii_uppercase() == entry.name)
        {
            problems.push(format!(
                "{}: an entry for no command of the table",
                entry.name
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/commands.md and src/command/mod.rs disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_command_reference_parser_sees_what_the_convention_says() {
    let page = "## Family\n\n### GET\n\n`GET <partition> <key>`\n\nPermission: READ\n\ntext\n\
                ### NOPE\n\ntext without syntax\n";
    let e = entries(page);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].name, "GET");
    assert_eq!(e[0].syntax.as_deref(), Some("GET <partition> <key>"));
    assert_eq!(e[0].permission.as_deref(), Some("READ"));
    assert_eq!(
        (e[1].syntax.as_deref(), e[1].permission.as_deref()),
        (None, None)
    );
}

// ------------------------------------------------------------------------------------------
// Links
// ------------------------------------------------------------------------------------------

/// Every relative path a page points at: markdown link targets `](path)` and backticked
/// `docs/...`, `src/...`, `tests/...`, `scripts/...` paths, each relative to the repository
/// root (a link in `docs/` relative to `docs/`). Outside-the-repo paths (`../`) are returned
/// too, so that the test can refuse them.
fn linked_paths(page: &str, in_docs: bool) -> Vec<String> {
    let mut out = Vec::new();
    for piece in page.split("](").skip(1) {
        let target = piece.split(')').next().unwrap_or("");
        let target = target.split('#').next().unwrap_or("");
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        out.push(if in_docs && !target.starts_with("../") {
            format!("docs/{target}")
        } else if in_docs {
            target.trim_start_matches("../").to_string()
        } else {
            target.to_string()
        });
    }
    for (i, quoted) in page.split('`').enumerate() {
        if i % 2 == 1
            && ["docs/", "src/", "tests/", "scripts/", "../"]
                .iter()
                .any(|p| quoted.starts_with(p))
            && !quoted.contains(' ')
            && !quoted.contains('<')
            && !quoted.contains('*')
        {
            out.push(quoted.to_string());
        }
    }
    out
}

#[test]
fn the_readme_and_the_docs_point_only_at_files_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![("README.md".to_string(), false)];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            pages.push((format!("docs/{name}"), true));
        }
    }
    let mut broken = Vec::new();
    for (page, in_docs) in &pages {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        for path in linked_paths(&text, *in_docs) {
            if path.starts_with("../") {
                broken.push(format!("{page}: {path} is outside the repository"));
            } else if !root.join(path.trim_end_matches('/')).exists() {
                broken.push(format!("{page}: {path} does not exist"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Every flag `gokv-server --help` lists has a row in the README's configuration table and
/// in `docs/operations.md`'s, so that a new flag cannot stay undocumented.
#[test]
fn every_flag_of_help_is_in_the_configuration_tables() {
    use clap::CommandFactory;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let flags: Vec<String> = gokv::config::Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| !matches!(*long, "help" | "version"))
        .map(|long| format!("`--{long}"))
        .collect();
    assert!(flags.len() > 10, "{flags:?}");
    for page in ["README.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| `--")).collect();
        let missing: Vec<&String> = flags
            .iter()
            .filter(|flag| !rows.iter().any(|row| row.starts_with(&format!("| {flag}"))))
            .collect();
        assert!(
            missing.is_empty(),
            "{page}'s configuration table lacks {missing:?}"
        );
    }
}
