//! `core/src` is laid out in folders along a request's path, each using only the folders
//! before it: a use of a later folder (an import cycle in the making) fails here, naming the
//! file and line. Test code (`tests.rs`, `#[cfg(test)]` modules) may use anything.

use std::path::{Path, PathBuf};

/// The folders, lowest first (the order `core/src/lib.rs` documents).
const LAYERS: [&str; 8] = [
    "config",
    "telemetry",
    "cache",
    "plugins",
    "http",
    "jobs",
    "admin",
    "app",
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

#[test]
fn folders_use_only_the_folders_before_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut top_level: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            path.is_dir()
                .then(|| path.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    top_level.sort();
    let mut known: Vec<String> = LAYERS.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(
        top_level, known,
        "a folder of core/src is missing from LAYERS"
    );

    let mut problems = Vec::new();
    for (rank, layer) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        for file in files {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("#[cfg(test)]") {
                    break;
                }
                if code.starts_with("//") {
                    continue;
                }
                for (later_rank, later) in LAYERS.iter().enumerate().skip(rank + 1) {
                    if code.contains(&format!("crate::{later}::"))
                        || code.contains(&format!("crate::{later};"))
                        || code.contains(&format!("crate::{later}}}"))
                    {
                        problems.push(format!(
                            "{}:{}: `{layer}` (layer {rank}) uses `{later}` (layer {later_rank}): {}",
                            file.strip_prefix(&src).unwrap().display(),
                            n + 1,
                            code
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
