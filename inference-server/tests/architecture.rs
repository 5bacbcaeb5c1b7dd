//! The shape of the crate, checked: no import circle between the top-level
//! modules of `src/`, no source file over 600 lines, a `//!` doc on every
//! top-level module. `cargo test -p modelship-server --test architecture`
//! prints the module graph (`-- --nocapture`).
//!
//! An edge `a -> b` is any `crate::b` path in a file under module `a`
//! (tests included); an exported macro (`crate::match_data!`) counts as a
//! use of the module that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        _ => Some(first.trim_end_matches(".rs").to_string()),
    }
}

/// Identifiers that follow `crate::` in `text`, skipping `$crate::`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
        rest = after;
    }
    out
}

/// Names of the `#[macro_export]` macros defined in `text`.
fn exported_macros(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[macro_export]" {
            let def = lines[i + 1..].iter().find(|l| l.contains("macro_rules!"));
            if let Some(def) = def {
                let name = def.split("macro_rules!").nth(1).unwrap().trim();
                out.push(name.trim_end_matches('{').trim().to_string());
            }
        }
    }
    out
}

struct Crate {
    files: Vec<(PathBuf, String)>,
    graph: BTreeMap<String, BTreeSet<String>>,
}

fn read_crate() -> Crate {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    paths.sort();
    let files: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    let mut macro_home = BTreeMap::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &files {
        if let Some(top) = top_module(path) {
            graph.entry(top.clone()).or_default();
            for name in exported_macros(text) {
                macro_home.insert(name, top.clone());
            }
        }
    }
    for (path, text) in &files {
        let Some(top) = top_module(path) else {
            continue;
        };
        for name in crate_paths(text) {
            let target = macro_home.get(&name).cloned().unwrap_or(name);
            if target != top && graph.contains_key(&target) {
                graph.get_mut(&top).unwrap().insert(target);
            }
        }
    }
    Crate { files, graph }
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in &graph[node] {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        state.insert(node.to_string(), 2);
        stack.pop();
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(c) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_form_no_circle() {
    let krate = read_crate();
    for (module, uses) in &krate.graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("{module:10} -> {}", uses.join(", "));
    }
    assert!(krate.graph.contains_key("tensor") && krate.graph["tensor"].is_empty());
    if let Some(cycle) = find_cycle(&krate.graph) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        crate_paths("use crate::tensor::X; $crate::y; a_crate::z"),
        ["tensor"]
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    for (path, text) in read_crate().files {
        let lines = text.lines().count();
        assert!(lines <= 600, "{} has {lines} lines", path.display());
    }
}

#[test]
fn every_top_level_module_says_what_it_is_for() {
    for (path, text) in read_crate().files {
        let rel = path.strip_prefix(src()).unwrap();
        let is_top = rel.components().count() == 1
            || rel.ends_with("mod.rs") && rel.components().count() == 2;
        if is_top && !rel.ends_with("main.rs") {
            assert!(
                text.starts_with("//!"),
                "{} has no //! module doc",
                rel.display()
            );
        }
    }
}
