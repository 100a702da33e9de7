//! The structure `lib.rs` draws, checked on the source text: which module may use which, where
//! the clock may be read, and how long a function may grow without saying why.
//!
//! A failure here names the file and line that break the picture; fix the code, or change the
//! picture in `lib.rs`, `docs/architecture.md` and this table together.

use std::path::{Path, PathBuf};

/// For each top-level module of `src/`, the crate modules it must not use.
///
/// The arrows: engine ← metric ← source / target / adapter ← control ← local ← cli/main.
/// `clock` is a leaf every layer but the engine may use; `telemetry` and `cli` are wiring.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "engine",
        &[
            "adapter",
            "cli",
            "clock",
            "control",
            "local",
            "metric",
            "probe",
            "replay",
            "run",
            "source",
            "spec",
            "store",
            "target",
            "telemetry",
        ],
    ),
    (
        "clock",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "source",
            "target",
            "telemetry",
        ],
    ),
    (
        "metric",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "probe",
            "source",
            "target",
            "telemetry",
        ],
    ),
    (
        "store",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "source",
            "target",
            "telemetry",
        ],
    ),
    (
        "spec",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "run",
            "target",
            "telemetry",
        ],
    ),
    (
        "source",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "run",
            "target",
            "telemetry",
        ],
    ),
    (
        "target",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "run",
            "source",
            "telemetry",
        ],
    ),
    (
        "adapter",
        &["cli", "control", "local", "run", "target", "telemetry"],
    ),
    ("control", &["adapter", "cli", "local", "run", "telemetry"]),
    ("local", &["adapter", "cli", "run", "telemetry"]),
    (
        "replay",
        &[
            "adapter",
            "cli",
            "control",
            "local",
            "source",
            "target",
            "telemetry",
        ],
    ),
];

/// A function longer than this must say why in a comment that starts with `Long:` just above it.
const MAX_FUNCTION_LINES: usize = 80;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files_under(rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    rust_files(&root().join(rel), &mut out);
    out.sort();
    out
}

/// The top-level module a file of `src/` belongs to (`src/engine/stages.rs` → `engine`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(root().join("src")).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::<module>` a line names, in `use` lines and in paths alike.
fn crate_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `use crate::{a, b}` names several.
        if name.is_empty() && after.starts_with('{') {
            let group = after[1..].split('}').next().unwrap_or("");
            for item in group.split(',') {
                let item = item.trim();
                let head: String = item
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    out.push(head);
                }
            }
            rest = after;
        } else {
            rest = &after[name.len()..];
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn modules_use_only_what_lies_beneath_them() {
    let mut broken = Vec::new();
    for file in files_under("src") {
        let module = module_of(&file);
        let Some((_, forbidden)) = FORBIDDEN.iter().find(|(m, _)| *m == module) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for used in crate_modules(line) {
                if forbidden.contains(&used.as_str()) {
                    broken.push(format!(
                        "{}:{}: {module} uses crate::{used}: {}",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "arrows that point the wrong way:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_engine_imports_nothing_impure() {
    let mut broken = Vec::new();
    for file in files_under("src/engine") {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for impure in [
                "tokio",
                "kube",
                "tracing",
                "reqwest",
                "std::time::Instant",
                "SystemTime",
            ] {
                if code.contains(impure) {
                    broken.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the engine must stay pure:\n{}",
        broken.join("\n")
    );
}

#[test]
fn only_the_clock_modules_lift_the_clock_ban() {
    let mut broken = Vec::new();
    let mut allowed_in = Vec::new();
    for dir in [
        "src",
        "demo/src",
        "loadgen/src",
        "tests",
        "benches",
        "examples",
        "demo/tests",
    ] {
        for file in files_under(dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let lifts = text.contains("disallowed_methods");
            let is_clock = file.file_name().is_some_and(|f| f == "clock.rs");
            if lifts && is_clock {
                allowed_in.push(file.clone());
            } else if lifts && file != root().join("tests/architecture.rs") {
                broken.push(file.display().to_string());
            }
        }
    }
    assert!(
        broken.is_empty(),
        "clock reads outside a clock module: {broken:?}"
    );
    assert_eq!(
        allowed_in.len(),
        3,
        "one clock module per crate (src, demo, loadgen): {allowed_in:?}"
    );
    let clippy = std::fs::read_to_string(root().join("clippy.toml")).unwrap();
    for banned in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "tokio::time::Instant::now",
        "tokio::time::Instant::elapsed",
    ] {
        assert!(clippy.contains(banned), "clippy.toml must ban {banned}");
    }
}

/// The functions of a rustfmt-formatted file longer than the limit: (line, name, length),
/// unless a `// Long:` comment stands right above them (after their doc comment).
fn long_functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let sig = trimmed
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("async ")
            .trim_start_matches("const ");
        let Some(rest) = sig.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The body opens on the signature's last line and closes at the same indent.
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        let Some(end) = (open + 1..lines.len()).find(|&j| lines[j] == close) else {
            continue;
        };
        let length = end - i + 1;
        let justified = lines[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let t = l.trim_start();
                t.starts_with("//") || t.starts_with("#[")
            })
            .any(|l| l.trim_start().starts_with("// Long:"));
        if length > MAX_FUNCTION_LINES && !justified {
            out.push((i + 1, name, length));
        }
    }
    out
}

#[test]
fn functions_stay_short_or_say_why() {
    let mut long = Vec::new();
    for file in files_under("src") {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, name, length) in long_functions(&text) {
            long.push(format!(
                "{}:{line}: fn {name} is {length} lines",
                file.display()
            ));
        }
    }
    assert!(
        long.is_empty(),
        "split these, or put a `// Long: <why>` comment above them:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_sees_long_functions_and_their_reasons() {
    let body = "    x();\n".repeat(MAX_FUNCTION_LINES);
    let plain = format!("fn big() {{\n{body}}}\n");
    assert_eq!(
        long_functions(&plain),
        vec![(1, "big".to_string(), MAX_FUNCTION_LINES + 2)]
    );
    let said =
        format!("/// Doc.\n// Long: one table, read top to bottom.\npub fn big() {{\n{body}}}\n");
    assert!(long_functions(&said).is_empty());
    let short = "fn small() {\n    x();\n}\n";
    assert!(long_functions(short).is_empty());
}

#[test]
fn the_arrow_check_reads_grouped_imports() {
    assert_eq!(
        crate_modules("use crate::{clock, engine::Replicas};"),
        vec!["clock".to_string(), "engine".to_string()]
    );
    assert_eq!(
        crate_modules("let x = crate::metric::Quantity::from_milli(1); // crate::cli"),
        vec!["metric".to_string()]
    );
}
