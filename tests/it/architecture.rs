//! The architecture invariants of ARCHITECTURE.md, checked on the source text so that a change
//! that breaks one fails CI: the layers import one way, `domain` imports nothing of the crate,
//! the store calls no compute stage, the pure stages do no I/O, the environment is read in one
//! module, and no source file outgrows a newcomer's reading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` but the unit-test files (`tests.rs`), with its code before
/// the first `#[cfg(test)]` (unit tests may do what the code may not: read files, call
/// stages), comment lines left out.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (name, code)
        })
        .collect()
}

/// The module a file belongs to at `depth` path segments (`job/store/runs.rs` at 1 is `job`,
/// at 2 `job::store`); `None` for files above that depth.
fn module_of(file: &str, depth: usize) -> Option<String> {
    let path = file.trim_end_matches(".rs").trim_end_matches("/mod");
    let parts: Vec<&str> = path.split('/').collect();
    (parts.len() >= depth && !matches!(parts[0], "lib" | "main")).then(|| parts[..depth].join("::"))
}

/// Which modules at `depth` each module at `depth` refers to through `crate::` paths.
fn imports(depth: usize, within: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in sources() {
        let Some(from) = module_of(&file, depth) else {
            continue;
        };
        if !from.starts_with(within) {
            continue;
        }
        let entry = graph.entry(from.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let path: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let to: Vec<&str> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .take(depth)
                .collect();
            if to.len() == depth {
                let to = to.join("::");
                if to != from && to.starts_with(within) {
                    entry.insert(to);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_cycle_between_layers_nor_between_stages() {
    let layers = imports(1, "");
    assert_eq!(cycle(&layers), None, "layers: {layers:#?}");
    let stages = imports(2, "job");
    assert_eq!(cycle(&stages), None, "stages: {stages:#?}");
}

#[test]
fn the_layers_import_one_way() {
    // Each layer may import only those after it in this list.
    const ORDER: [&str; 9] = [
        "app", "serve", "report", "read", "job", "config", "cli", "domain", "support",
    ];
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    for (from, tos) in imports(1, "") {
        let Some(r) = rank(&from) else {
            panic!("module {from} is not in the layer list of this test and ARCHITECTURE.md")
        };
        for to in tos {
            let allowed = match (from.as_str(), to.as_str()) {
                // clap's derive lives on the types the command line parses into.
                ("cli", "domain") => true,
                _ => rank(&to).is_some_and(|t| t > r),
            };
            assert!(allowed, "{from} imports {to}, which is above it");
        }
    }
}

#[test]
fn domain_and_support_import_nothing_of_the_crate() {
    for (file, code) in sources() {
        if file.starts_with("domain/") || file.starts_with("support/") {
            assert!(!code.contains("crate::"), "{file} imports from the crate");
        }
    }
}

#[test]
fn the_store_calls_no_compute_stage() {
    for (file, code) in sources() {
        if !file.starts_with("job/store/") {
            continue;
        }
        for stage in ["analyze::", "narrate::", "features::"] {
            for (i, _) in code.match_indices(stage) {
                let rest = &code[i + stage.len()..];
                // Types (capitalized) and constants may be named; functions may not.
                let first = rest.chars().next().unwrap_or(' ');
                assert!(
                    first.is_uppercase() || first == '{',
                    "{file} calls {stage}{}",
                    rest.lines().next().unwrap_or("")
                );
                if first == '{' {
                    let list = &rest[1..rest.find('}').unwrap()];
                    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        assert!(
                            item.starts_with(char::is_uppercase),
                            "{file} imports {stage}{item}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_pure_stages_do_no_io() {
    for file in [
        "job/analyze.rs",
        "job/narrate.rs",
        "job/narrate/bands.rs",
        "job/features.rs",
    ] {
        let code = &sources()[file];
        for io in [
            "sqlx",
            "reqwest",
            "tokio",
            "std::fs",
            "std::env",
            "std::net",
            "crate::job::store",
            "crate::config",
            "Store",
        ] {
            assert!(!code.contains(io), "{file} uses {io}");
        }
    }
}

#[test]
fn the_environment_is_read_only_in_config_env() {
    for (file, code) in sources() {
        if file == "config/env.rs" {
            continue;
        }
        for read in [
            "std::env::var",
            "env::var(",
            "var_os(",
            "env(\"",
            "from_process(",
        ] {
            let allowed = file == "main.rs" && read == "from_process(";
            assert!(
                allowed || !code.contains(read),
                "{file} reads the environment ({read}); read it in config/env.rs"
            );
        }
    }
}

#[test]
fn no_source_file_outgrows_a_reading() {
    for (file, code) in sources() {
        let lines = code.lines().count();
        assert!(lines <= 800, "{file} has {lines} lines of code; split it");
    }
}
