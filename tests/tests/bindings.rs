//! The bindings' own test suites, run against a real server: the Python one (pytest) today.
//! Each suite starts `baton-server serve --demo` itself; this test generates the bindings from
//! the `baton-ffi` library Cargo built beside it and hands the suite the server binary.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `baton-ffi` dynamic library Cargo built as this test's dependency: beside the test, in
/// `target/<profile>/deps`, or one up when it was built on its own.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps, deps.parent().unwrap()]
        .iter()
        .map(|dir| dir.join("libbaton_ffi.so"))
        .find(|path| path.exists())
        .expect("libbaton_ffi.so is built with this test (baton-ffi is a dependency)")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Generate the bindings for `language` from the library into `out`, as
/// `bindings/generate.sh` does through the `uniffi-bindgen` binary.
fn generate(language: uniffi_bindgen::bindings::TargetLanguage, library: &Path, out: &Path) {
    uniffi_bindgen::bindings::generate(uniffi_bindgen::bindings::GenerateOptions {
        languages: vec![language],
        source: library.to_str().unwrap().into(),
        out_dir: out.to_str().unwrap().into(),
        metadata_no_deps: true,
        ..Default::default()
    })
    .unwrap();
}

#[test]
fn the_python_bindings_pass_their_suite_against_a_real_server() {
    let library = library();
    let out = tempfile::tempdir().unwrap();
    generate(
        uniffi_bindgen::bindings::TargetLanguage::Python,
        &library,
        out.path(),
    );
    std::fs::copy(&library, out.path().join("libbaton_ffi.so")).unwrap();
    let python_path = format!(
        "{}:{}",
        out.path().display(),
        repo().join("bindings/python").display()
    );
    let run = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("bindings/python/tests"))
        .env("PYTHONPATH", python_path)
        .env("BATON_SERVER_BIN", env!("CARGO_BIN_EXE_baton-server-e2e"))
        .output()
        .expect("python3 runs (pytest: python3 -m pip install pytest)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the Python suite failed:\n{report}");
    assert!(report.contains(" passed"), "{report}");
    assert!(
        !report.contains("skipped"),
        "nothing may be skipped:\n{report}"
    );
}
