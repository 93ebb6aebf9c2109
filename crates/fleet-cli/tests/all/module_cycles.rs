//! No two modules of a crate import each other: within every crate of the workspace, the
//! modules that share a parent depend on each other one way only. A child may use its parent's
//! items (that is what `super` is for) and a parent its children's; siblings may not go round
//! in a circle, directly or through others. Test code (`#[cfg(test)]` and `tests.rs` modules)
//! is left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module path of a source file under `src` (`[]` for the crate root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a file that ships: before its first `#[cfg(test)]`, without comments.
fn shipped_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of every path after `crate::` or `super::` in `code`, resolved to
/// absolute module paths (`use crate::{a, b::c}` names `a` and `b`).
fn references(code: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` of `a/b.rs` (module a::b) and of `a/b/mod.rs` (also a::b) is `a`.
            let _ = is_mod_file;
            let mut m = module.to_vec();
            m.pop();
            m
        }),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let names: Vec<Vec<String>> = if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group.
                let mut depth = 0;
                let mut names = Vec::new();
                let mut current = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(std::mem::take(&mut current));
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        current.push(c);
                    }
                }
                names.push(current);
                names.iter().map(|n| segments(n.trim())).collect()
            } else {
                vec![segments(rest)]
            };
            for name in names {
                let name: Vec<String> = name.into_iter().take_while(|n| n != "self").collect();
                if name.is_empty() {
                    continue;
                }
                let mut path = base.clone();
                path.extend(name);
                out.push(path);
            }
        }
    }
    out
}

/// The segments of the path `a::b::c` at the start of `text`.
fn segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        rest = &rest[name.len()..];
        out.push(name);
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => break,
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            // Binaries are crates of their own; `tests` folders are test code.
            if name != "bin" && name != "tests" {
                files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// The cycles among sibling modules of the crate whose sources are `src`: each as the
/// modules' common parent and the members, with one use that makes each edge.
fn cycles(src: &Path) -> Vec<String> {
    let mut all = Vec::new();
    files(src, &mut all);
    // (parent, from, to) → where.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for file in &all {
        let module = module_of(src, file);
        let is_mod = file.file_name().is_some_and(|n| n == "mod.rs");
        let code = shipped_code(&std::fs::read_to_string(file).unwrap());
        for target in references(&code, &module, is_mod) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // A use of an ancestor or of a descendant is not between siblings.
            if common == module.len() || common == target.len() {
                continue;
            }
            let parent = module[..common].to_vec();
            edges
                .entry((parent, module[common].clone(), target[common].clone()))
                .or_insert_with(|| file.strip_prefix(src).unwrap().display().to_string());
        }
    }
    let mut by_parent: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        by_parent
            .entry(parent.clone())
            .or_default()
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
    }
    let mut found = Vec::new();
    for (parent, graph) in &by_parent {
        // A cycle through `start`: is `start` reachable from one of its own targets?
        let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        for start in graph.keys() {
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                for next in graph.get(&node).into_iter().flatten() {
                    if next == start {
                        let members: BTreeSet<String> = path.iter().cloned().collect();
                        if reported.insert(members) {
                            let mut ring = path.clone();
                            ring.push(start.clone());
                            let hops: Vec<String> = ring
                                .windows(2)
                                .map(|w| {
                                    let at = &edges[&(parent.clone(), w[0].clone(), w[1].clone())];
                                    format!("{} → {} ({at})", w[0], w[1])
                                })
                                .collect();
                            found.push(format!(
                                "in {}: {}",
                                if parent.is_empty() {
                                    "the crate root".to_owned()
                                } else {
                                    parent.join("::")
                                },
                                hops.join(", ")
                            ));
                        }
                    } else if seen.insert(next.clone()) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        crates += 1;
        let name = src
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for cycle in cycles(&src) {
            problems.push(format!("{name} {cycle}"));
        }
    }
    assert!(
        crates >= 6,
        "found {crates} crates under {}",
        root.display()
    );
    assert!(
        problems.is_empty(),
        "modules that import each other (move what both need below both):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_cycle_it_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("outer")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod outer;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use crate::{a::Other, outer};\n").unwrap();
    std::fs::write(
        src.join("outer/mod.rs"),
        "mod x;\nmod y;\nuse self::x::X;\n",
    )
    .unwrap();
    std::fs::write(src.join("outer/x.rs"), "use super::y::Y;\nuse super::X;\n").unwrap();
    std::fs::write(
        src.join("outer/y.rs"),
        "// use super::x::X; (a comment)\nuse crate::outer::x::X;\n#[cfg(test)]\nuse crate::a::A;\n",
    )
    .unwrap();
    let found = cycles(&src);
    assert_eq!(
        found,
        [
            "in the crate root: a → b (a.rs), b → a (b.rs)",
            "in outer: x → y (outer/x.rs), y → x (outer/y.rs)",
        ]
    );
}
