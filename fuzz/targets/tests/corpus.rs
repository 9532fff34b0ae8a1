//! Replays every saved fuzz input (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through its target: what once passed or once crashed must pass now.

use std::path::{Path, PathBuf};
use x2gobroker_fuzz_targets::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/targets lies in fuzz/")
        .to_path_buf()
}

/// Runs every file of `<fuzz>/<kind>/<target>/`; the number of files per target.
fn replay(kind: &str) -> Vec<(String, usize)> {
    let root = fuzz_dir().join(kind);
    let Ok(directories) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut counts = Vec::new();
    for directory in directories {
        let directory = directory.expect("a readable directory entry").path();
        if !directory.is_dir() {
            continue;
        }
        let name = directory
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a UTF-8 directory name")
            .to_string();
        let run = target(&name).unwrap_or_else(|| panic!("{kind}/{name}: no such fuzz target"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
            .expect("a readable corpus directory")
            .map(|entry| entry.expect("a readable entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for file in &files {
            let data = std::fs::read(file).expect("a readable corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails its target", file.display());
        }
        counts.push((name, files.len()));
    }
    counts
}

#[test]
fn the_saved_corpus_passes_every_target() {
    let counts = replay("corpus");
    for (name, _) in TARGETS {
        let files = counts
            .iter()
            .find(|(known, _)| known == name)
            .map_or(0, |(_, files)| *files);
        assert!(files > 0, "fuzz/corpus/{name}/ is empty or missing");
    }
}

#[test]
fn every_regression_input_passes() {
    let counts = replay("regressions");
    assert!(
        counts.iter().map(|(_, files)| files).sum::<usize>() > 0,
        "fuzz/regressions/ holds the inputs of fixed crashes"
    );
}
