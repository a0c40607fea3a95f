//! Checks that the crate's layers point one way (`ARCHITECTURE.md`, section 1), by reading the
//! sources: for every top-level module, the `crate::<module>` paths it names outside comments.
//!
//! It sees paths, not method calls: an inherent method defined in an upper module and called
//! from below (as `client/sync.rs` once called `Client::member_list` from `maintenance`) stays
//! invisible to it, so such calls are kept out by review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules `client` must never import: everything that is built on it.
const ABOVE_CLIENT: [&str; 12] = [
    "auth",
    "cluster",
    "election",
    "kv",
    "lease",
    "lock",
    "maintenance",
    "namespace",
    "session",
    "testkit",
    "txn",
    "watch",
];

/// The tap sits beside `client`, on the layer of the wire log it feeds: it may use only these.
const TAP_USES: [&str; 5] = ["wire", "wirelog", "error", "proto", "http2"];

/// Modules with nothing of ours below them but `proto` and each other, as listed.
const FLOOR: [(&str, &[&str]); 4] = [
    ("error", &["support"]),
    ("support", &["proto"]),
    // HTTP/2's wire format: nothing of ours below it.
    ("http2", &[]),
    // `wire::Failure` carries the crate's own `error::Code`; `CloseHow` reads HTTP/2 errors.
    ("wire", &["error", "http2"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names `lib.rs` re-exports at the crate root (`pub use client::{Client, ..};`), mapped to
/// the module they come from, so that `crate::Client` counts as an import of `client`.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.rsplit("::").next().unwrap_or(names);
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = name.trim();
            if !name.is_empty() {
                map.insert(name.to_string(), module.to_string());
            }
        }
    }
    map
}

/// `module -> modules it names`, over `src/` (the binary and the generated `proto` excluded).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exports = root_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Ok(rel) = file.strip_prefix(&src) else {
            continue;
        };
        let Some(first) = rel.components().next() else {
            continue;
        };
        let first = first.as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if matches!(module.as_str(), "lib" | "bin" | "proto" | "layering") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        for line in text.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let name = exports.get(&name).cloned().unwrap_or(name);
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_client_imports_nothing_built_on_it() {
    let graph = import_graph();
    let client = graph.get("client").cloned().unwrap_or_default();
    assert!(!client.is_empty(), "no sources found for `client`");
    let bad: Vec<&String> = client
        .iter()
        .filter(|m| ABOVE_CLIENT.contains(&m.as_str()))
        .collect();
    assert!(bad.is_empty(), "src/client imports {bad:?}");
}

#[test]
fn the_tap_uses_only_the_wire_layer() {
    let graph = import_graph();
    let tap = graph.get("tap").cloned().unwrap_or_default();
    assert!(!tap.is_empty(), "no sources found for `tap`");
    let extra: Vec<&String> = tap
        .iter()
        .filter(|m| !TAP_USES.contains(&m.as_str()))
        .collect();
    assert!(extra.is_empty(), "src/tap imports {extra:?}");
    // And nothing below it knows about it.
    for (module, deps) in &graph {
        assert!(
            module == "tap" || !deps.contains("tap"),
            "`{module}` imports the tap"
        );
    }
}

#[test]
fn the_floor_imports_only_what_is_listed() {
    let graph = import_graph();
    for (module, allowed) in FLOOR {
        let deps = graph.get(module).cloned().unwrap_or_default();
        let extra: Vec<&String> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(extra.is_empty(), "`{module}` imports {extra:?}");
    }
}

#[test]
fn no_module_cycles() {
    let graph = import_graph();
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn root_reexports_count_as_their_module() {
    let exports =
        root_exports("pub use client::{Client, ClientOptions};\npub use proto::mvccpb::KeyValue;");
    assert_eq!(exports.get("Client").map(String::as_str), Some("client"));
    assert_eq!(exports.get("KeyValue").map(String::as_str), Some("proto"));
    let graph = import_graph();
    // `trace` names `crate::Result` and `crate::Error` only.
    let trace = graph.get("trace").cloned().unwrap_or_default();
    assert!(trace.contains("error"), "{trace:?}");
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycle_from(&graph, "a"),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    assert_eq!(cycle_from(&graph, "c"), None);
}
