//! The bindings' own test suites, run against a real server: Python (pytest) and Kotlin on the
//! JVM (kotlinc from npm, JNA and kotlinx-coroutines from Debian's `libjna-java`,
//! `libkotlinx-coroutines-java` and `libkotlinx-atomicfu-java`). Each suite starts
//! `baton-server serve --demo` itself; this test generates the bindings from the `baton-ffi`
//! library Cargo built beside it and hands the suite the server binary.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// What a suite printed, for the failure message.
fn report(run: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
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
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("BATON_SERVER_BIN", env!("CARGO_BIN_EXE_baton-server-e2e"))
        .output()
        .expect("python3 runs (pytest: python3 -m pip install pytest)");
    let report = report(&run);
    assert!(run.status.success(), "the Python suite failed:\n{report}");
    assert!(report.contains(" passed"), "{report}");
    assert!(
        !report.contains("skipped"),
        "nothing may be skipped:\n{report}"
    );
}

/// Debian's jars, as its packages install them.
const JARS: [&str; 3] = [
    "/usr/share/java/jna.jar",
    "/usr/share/java/kotlinx-coroutines-core.jar",
    "/usr/share/java/atomicfu.jar",
];

#[test]
fn the_kotlin_bindings_and_the_android_view_models_pass_their_suites_on_the_jvm() {
    for jar in JARS {
        assert!(
            Path::new(jar).exists(),
            "{jar} is missing: apt-get install libjna-java libkotlinx-coroutines-java libkotlinx-atomicfu-java"
        );
    }
    let kotlin = repo().join("bindings/kotlin");
    let android = repo().join("mobile-examples/android");
    baton_e2e::js::ensure_installed_in(&kotlin);
    let compiler = kotlin.join("node_modules/kotlin-compiler");
    let library = library();
    let work = tempfile::tempdir().unwrap();
    let generated = work.path().join("generated");
    generate(
        uniffi_bindgen::bindings::TargetLanguage::Kotlin,
        &library,
        &generated,
    );
    let native = work.path().join("native");
    std::fs::create_dir_all(&native).unwrap();
    std::fs::copy(&library, native.join("libbaton_ffi.so")).unwrap();

    let classes = work.path().join("classes");
    let compile = Command::new(compiler.join("bin/kotlinc"))
        .arg("-cp")
        .arg(JARS.join(":"))
        .arg(generated.join("health/baton/ffi/baton_ffi.kt"))
        .arg(kotlin.join("shim/DelicateCoroutinesApi.kt"))
        .arg(kotlin.join("src/health/baton/Updates.kt"))
        .arg(kotlin.join("test/Harness.kt"))
        .arg(kotlin.join("test/BindingsTest.kt"))
        // The Android sample's view-model layer and its test, in plain Kotlin.
        .arg(android.join("app/src/main/java/health/baton/example/model/Models.kt"))
        .arg(android.join("model-test/ModelTest.kt"))
        .arg("-d")
        .arg(&classes)
        .output()
        .expect("kotlinc runs (it needs a JDK)");
    assert!(
        compile.status.success(),
        "kotlinc failed:\n{}",
        report(&compile)
    );

    let classpath = [
        classes.display().to_string(),
        compiler.join("lib/kotlin-stdlib.jar").display().to_string(),
    ]
    .into_iter()
    .chain(JARS.iter().map(|j| (*j).to_owned()))
    .collect::<Vec<_>>()
    .join(":");
    for (main, suite) in [
        ("BindingsTestKt", "the Kotlin bindings' suite"),
        ("ModelTestKt", "the Android sample's view-model suite"),
    ] {
        let run = Command::new("java")
            .arg(format!("-Djna.library.path={}", native.display()))
            .arg("-cp")
            .arg(&classpath)
            .arg(main)
            .env("BATON_SERVER_BIN", env!("CARGO_BIN_EXE_baton-server-e2e"))
            .output()
            .expect("java runs");
        let report = report(&run);
        assert!(run.status.success(), "{suite} failed:\n{report}");
        assert!(report.contains("all checks passed"), "{report}");
    }
}
