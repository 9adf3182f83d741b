//! No two modules of the service (`src/`) or of the data plane (`crates/traffic/src/`) refer to
//! each other (issue 19, item 5): a module that needs another's pieces and is needed by it back
//! is one module in two files, or two modules with a third one missing. A reference is any
//! `super::` or `crate::` path in code (comments aside), resolved to the deepest module file it
//! names.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Every `.rs` file under `root` as its module path (`http::simulations`, `simulate` for
/// `simulate/mod.rs`, `` for `lib.rs`).
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path.strip_prefix(root).expect("inside").with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().to_string()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), path);
            }
        }
    }
    out
}

/// The module files `module`'s code refers to.
fn references(module: &str, text: &str, known: &BTreeMap<String, PathBuf>, is_mod_rs: bool) -> BTreeSet<String> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let here: Vec<&str> = if module.is_empty() { vec![] } else { module.split("::").collect() };
    // `super` of a file module is its parent; of a `mod.rs`, the folder's parent.
    let parent: Vec<&str> = if is_mod_rs || here.is_empty() { here.clone() } else { here[..here.len() - 1].to_vec() };
    let parent = if is_mod_rs && !parent.is_empty() { parent[..parent.len() - 1].to_vec() } else { parent };
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for (start, prefix) in code
        .match_indices("super::")
        .map(|(i, _)| (i, "super"))
        .chain(code.match_indices("crate::").map(|(i, _)| (i, "crate")))
    {
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let mut path: Vec<String> =
            if prefix == "super" { parent.iter().map(|s| s.to_string()).collect() } else { vec![] };
        let rest = &code[start + prefix.len() + 2..];
        // The path's segments, and with `{...}` each of the names inside (one level).
        let segs: Vec<&str> = rest.split("::").take_while(|s| !s.is_empty()).collect();
        for seg in segs {
            let name: String = seg.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if seg.starts_with('{') {
                // The earlier segments are plain names: this group's brace is the first one.
                let open = rest.find('{').unwrap_or(0) + 1;
                let close = rest.find('}').unwrap_or(rest.len()).max(open);
                for item in rest[open..close].split(',') {
                    let first: String =
                        item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    let mut p = path.clone();
                    p.push(first);
                    resolve(&p, known, &mut found);
                }
                break;
            }
            if name.is_empty() {
                break;
            }
            path.push(name.clone());
            if name != seg {
                break;
            }
        }
        resolve(&path, known, &mut found);
    }
    found.remove(module);
    found
}

/// The deepest module file a path names.
fn resolve(path: &[String], known: &BTreeMap<String, PathBuf>, found: &mut BTreeSet<String>) {
    for n in (1..=path.len()).rev() {
        let m = path[..n].join("::");
        if known.contains_key(&m) {
            found.insert(m);
            return;
        }
    }
}

fn circles(root: &Path) -> Vec<String> {
    let known = modules(root);
    let deps: BTreeMap<&String, BTreeSet<String>> = known
        .iter()
        .map(|(m, path)| {
            let text = std::fs::read_to_string(path).expect("source");
            let is_mod = path.file_stem().is_some_and(|s| s == "mod");
            (m, references(m, &text, &known, is_mod))
        })
        .collect();
    let mut out = Vec::new();
    for (a, refs) in &deps {
        for b in refs {
            if a.as_str() < b.as_str() && deps.get(b).is_some_and(|r| r.contains(a.as_str())) {
                out.push(format!("{a} <-> {b}"));
            }
        }
    }
    out
}

#[test]
fn no_two_modules_refer_to_each_other() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (crate_name, root) in [("ipet", repo.join("src")), ("ipet-traffic", repo.join("crates/traffic/src"))] {
        found.extend(circles(&root).into_iter().map(|c| format!("{crate_name}: {c}")));
    }
    assert!(found.is_empty(), "modules referring to each other: {found:?}");
}

#[test]
fn the_scan_sees_a_circle() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("http")).expect("dir");
    std::fs::write(dir.path().join("lib.rs"), "pub mod a;\npub mod http;\n").expect("write");
    std::fs::write(dir.path().join("a.rs"), "use crate::http::{b::X};\n// crate::http::c mentioned in a comment\n")
        .expect("write");
    std::fs::write(dir.path().join("http/mod.rs"), "pub mod b;\npub mod c;\n").expect("write");
    std::fs::write(dir.path().join("http/b.rs"), "pub struct X;\nfn f() { super::c::g() }\n").expect("write");
    std::fs::write(dir.path().join("http/c.rs"), "use super::{b::X};\npub fn g() {}\nfn h() { crate::a::i() }\n")
        .expect("write");
    assert_eq!(circles(dir.path()), vec!["http::b <-> http::c".to_string()]);
}
