//! Stock JavaScript automerge-repo clients (`tests/js/`), run by Node as phones.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// Where the JavaScript clients live.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

static INSTALL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Install the pinned npm packages of `tests/js` unless they are there already.
pub fn ensure_installed() {
    ensure_installed_in(&dir());
}

/// Install the pinned npm packages of `dir` unless they are there already. `npm install` with
/// the committed lock file installs exactly the locked versions and leaves the lock as it is;
/// `npm ci` is not used because npm 11 refuses the interop clients' lock (it omits the optional
/// native packages of `cbor-extract`, whose install script npm no longer runs unapproved).
pub fn ensure_installed_in(dir: &std::path::Path) {
    let mut done = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|d| d == dir) {
        return;
    }
    let stamp = dir.join("node_modules/.package-lock.json");
    let fresh = match (
        std::fs::metadata(&stamp),
        std::fs::metadata(dir.join("package-lock.json")),
    ) {
        (Ok(installed), Ok(lock)) => installed.modified().ok() >= lock.modified().ok(),
        _ => false,
    };
    if !fresh {
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .expect("npm (Node.js) is needed for the interop and binding tests");
        assert!(status.success(), "npm install failed in {}", dir.display());
    }
    done.push(dir.to_path_buf());
}

/// Run `tests/js/<script>` with `config` as `BATON_PHONE`; returns the JSON line it printed.
pub async fn run(script: &str, config: &Value) -> Value {
    ensure_installed();
    let mut child = tokio::process::Command::new("node")
        .arg(dir().join(script))
        .env("BATON_PHONE", config.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is needed for the interop tests");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read = async {
        use tokio::io::AsyncReadExt;
        let (mut out, mut err) = (String::new(), String::new());
        let (mut o, mut e) = (stdout, stderr);
        let _ = tokio::join!(o.read_to_string(&mut out), e.read_to_string(&mut err));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish"));
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!("{script} printed no result ({status:?})\nstdout: {out}\nstderr: {err}")
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {line}: {e}\n{err}"))
}
