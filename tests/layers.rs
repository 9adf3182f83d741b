//! Dependencies point one way: the data plane (`src/traffic`) imports nothing from the layers
//! above it (models, store, jobs, HTTP, CLI, startup) nor from their libraries (axum, sqlx, ONNX
//! Runtime, clap); models and the store sit above it, simulation jobs above those, the HTTP API
//! and the CLI on top, startup above all. Read from the source files, so a new import that
//! points up fails here.

use std::path::{Path, PathBuf};

/// Modules of the crate that sit above the data plane.
const ABOVE: [&str; 9] = ["models", "store", "jobs", "http", "cli", "app", "auth", "config", "startup"];

/// Libraries of the layers above.
const UPPER_CRATES: [&str; 7] = ["axum", "sqlx", "ort", "clap", "hyper", "tower", "tower_http"];

/// The source without comments (line comments, doc comments, block comments) and without the
/// contents of string literals, so that prose and messages never count as imports.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            // A string literal (raw strings here hold no quote characters).
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('"', '\n'), not a lifetime.
            let end = if b[i + 1] == b'\\' {
                b[i + 3..].iter().position(|&c| c == b'\'').map_or(b.len(), |p| i + 4 + p)
            } else {
                i + 3
            };
            out.push_str("' '");
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let s = s.trim_start();
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of every item a path reaches from `rest` (the text just after
/// `crate::`): `models` for `models::Engine`, `error` and `models` for `{error::Error, models}`.
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if !rest.starts_with('{') {
        return vec![ident_at(rest).to_string()];
    }
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let item = ident_at(&rest[start..i]);
                if !item.is_empty() {
                    out.push(item.to_string());
                }
                start = i + 1;
                if c == '}' {
                    return out;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every place in `code` (comment-free) that reaches an upper layer of the data plane; `depth`
/// is how many `super::` lead from this file's module to the crate root.
fn upward_imports(code: &str, depth: usize) -> Vec<String> {
    imports_of(code, depth, &ABOVE, &UPPER_CRATES)
}

/// Every place in `code` that reaches one of the crate's modules `above` or one of `crates`.
fn imports_of(code: &str, depth: usize, above: &[&str], crates: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let b = code.as_bytes();
    let mut check = |segments: Vec<String>, at: usize| {
        for s in segments {
            if above.contains(&s.as_str()) {
                let line = code[..at].matches('\n').count() + 1;
                found.push(format!("line {line}: crate::{s}"));
            }
        }
    };
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && is_ident_char(b[at - 1]) {
            continue;
        }
        check(first_segments(&code[at + "crate::".len()..]), at);
    }
    // `super::super::...` climbing to the crate root.
    let prefix = "super::".repeat(depth);
    for (at, _) in code.match_indices(prefix.as_str()) {
        if (at > 0 && (is_ident_char(b[at - 1]) || b[at - 1] == b':')) || code[at + prefix.len()..].starts_with("super")
        {
            continue;
        }
        check(first_segments(&code[at + prefix.len()..]), at);
    }
    for &krate in crates {
        let pat = format!("{krate}::");
        for (at, _) in code.match_indices(pat.as_str()) {
            if at > 0 && (is_ident_char(b[at - 1]) || b[at - 1] == b':') {
                continue;
            }
            let line = code[..at].matches('\n').count() + 1;
            found.push(format!("line {line}: {krate}"));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of the crate's module `module` (`src/<module>.rs` or `src/<module>/**`), each with
/// its comment-free code and its depth below the crate root.
fn module_sources(module: &str) -> Vec<(String, String, usize)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    } else {
        files.push(src.join(format!("{module}.rs")));
    }
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).expect("under src");
            // Module depth below the crate root: traffic/mod.rs and auth.rs are 1, traffic/x.rs 2.
            let parts = rel.components().count();
            let depth = if rel.file_name().is_some_and(|n| n == "mod.rs") { parts - 1 } else { parts };
            let code = code_only(&std::fs::read_to_string(f).expect("read source"));
            (rel.display().to_string(), code, depth)
        })
        .collect()
}

#[test]
fn the_data_plane_imports_nothing_from_the_layers_above_it() {
    let sources = module_sources("traffic");
    assert!(sources.len() > 10, "expected the data plane's files under src/traffic, found {}", sources.len());
    let mut offenders = Vec::new();
    for (file, code, depth) in &sources {
        for hit in upward_imports(code, *depth) {
            offenders.push(format!("{file}: {hit}"));
        }
    }
    assert!(offenders.is_empty(), "src/traffic must not import the layers above it:\n{}", offenders.join("\n"));
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    // (module, the modules above it). `error` and `telemetry` sit under everything; `auth` (tokens
    // and scopes) under jobs and HTTP; `config` holds the flags that startup and the CLI read.
    let layers: [(&str, &[&str]); 6] = [
        ("models", &["store", "jobs", "http", "cli", "app", "auth", "config", "startup"]),
        ("store", &["jobs", "http", "cli", "app", "auth", "config", "startup"]),
        ("auth", &["models", "store", "jobs", "http", "cli", "app", "config", "startup"]),
        ("jobs", &["http", "cli", "app", "config", "startup"]),
        ("app", &["http", "cli", "startup"]),
        ("http", &["cli", "startup"]),
    ];
    let mut offenders = Vec::new();
    for (module, above) in layers {
        let sources = module_sources(module);
        assert!(!sources.is_empty(), "no sources for {module}");
        for (file, code, depth) in &sources {
            for hit in imports_of(code, *depth, above, &[]) {
                offenders.push(format!("{file}: {hit}"));
            }
        }
    }
    assert!(offenders.is_empty(), "imports that point up:\n{}", offenders.join("\n"));
}

#[test]
fn the_scan_finds_upward_imports_in_every_form_and_ignores_prose() {
    let bad = "use crate::models::Engine;\n\
               use crate::{error::Result, store::Store};\n\
               use crate::{\n    error::Error,\n    jobs::{run, params},\n};\n\
               fn f() { crate::http::x(); }\n\
               use super::super::app::AppState;\n\
               use axum::Json;\n\
               #[derive(clap::ValueEnum)] enum A {}\n\
               fn k() { let _ = ('\\'', b'\"'); crate::cli::run(); }\n";
    let hits = upward_imports(&code_only(bad), 2);
    let names: Vec<&str> = hits.iter().map(|h| h.rsplit(' ').next().unwrap_or_default()).collect();
    assert_eq!(
        names,
        ["crate::models", "crate::store", "crate::jobs", "crate::http", "crate::cli", "crate::app", "axum", "clap"],
        "{hits:?}"
    );

    let fine = "//! Rows through `crate::models::GeneratorRows` (a doc comment).\n\
                use crate::error::{Error, Result};\n\
                use super::{packet::Packet, simulate::Output};\n\
                use super::super::error::Error;\n\
                /* crate::http in a block comment */\n\
                fn g() -> &'static str { \"crate::jobs in a message\" }\n\
                fn h(v: &mut Vec<u8>) { v.sort(); let _ = std::cmp::Ordering::Less; }\n\
                fn k() { let _ = ('\\'', b'\"', '\"', \"crate::store\"); }\n";
    assert_eq!(upward_imports(&code_only(fine), 2), Vec::<String>::new());
}
