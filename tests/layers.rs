//! The crate's modules form layers (see `docs/architecture.md` and the crate docs): each
//! top-level module uses only modules below it. This test reads the sources and fails on
//! an import that points up or sideways into a later module, so a cycle cannot creep back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// Bottom to top. `error` (the crate-wide error enum) and `lib.rs` sit above everything.
const ORDER: [&str; 18] = [
    "test_util",
    "io",
    "union_find",
    "colour",
    "backend",
    "data",
    "instances",
    "output",
    "metrics",
    "baseline",
    "stain",
    "model",
    "postprocess",
    "pipeline",
    "train",
    "pretrained",
    "export",
    "slide",
];

/// Items the crate root re-exports from `instances`.
const ROOT_INSTANCES: [&str; 6] = [
    "Instance",
    "InstanceMask",
    "InstanceSegmenter",
    "Instances",
    "Nuclei",
    "Nucleus",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text refers to through `crate::…`, including the
/// names in a `crate::{a::…, b::…}` group (comments skipped).
fn references(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: at depth 1, after `{` or `,`.
            let (mut depth, mut start) = (1, true);
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 1 => {
                        names.push(ident(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            names.push(ident(rest));
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            if ROOT_INSTANCES.contains(&n.as_str()) {
                Some("instances".to_string())
            } else {
                ORDER.contains(&n.as_str()).then_some(n)
            }
        })
        .collect()
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut modules_seen = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "error" {
            continue;
        }
        let rank = ORDER
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("src/{} is in no layer: add it to ORDER", rel.display()));
        *modules_seen.entry(module.clone()).or_insert(0) += 1;
        let text = std::fs::read_to_string(file).unwrap();
        for used in references(&text) {
            let used_rank = ORDER.iter().position(|m| *m == used).unwrap();
            if used_rank > rank {
                wrong.push(format!(
                    "src/{} ({module}) uses crate::{used}, a higher layer",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
    // Every layer listed exists, so the list stays the crate's real map.
    for m in ORDER {
        assert!(
            modules_seen.contains_key(m),
            "module {m} listed but not found in src/"
        );
    }
}

#[test]
fn the_reference_scanner_reads_paths_and_skips_comments() {
    let text =
        "use crate::{\n    data::{LabelMap, read_rgb},\n    Nuclei, // crate::train\n    io,\n};\n\
                let x = crate::model::io::load(y); // crate::export";
    assert_eq!(references(text), ["data", "instances", "io", "model"]);
}
