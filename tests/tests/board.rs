//! The live unit board end to end in headless Chromium (Debian's `chromium`, driven by
//! Playwright from npm, `tests/browser/`): signed in by the URL fragment, it shows a unit's open
//! work, follows the server's stream of changes, and shows an escalation the server fires while
//! it is open, without a reload. A screenshot is kept in `target/test-artifacts/board.png`.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, TestServer};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The board script, running: its JSON lines as they come.
struct Board {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Board {
    fn open(config: Value) -> Board {
        baton_e2e::js::ensure_installed_in(&browser_dir());
        let mut child = tokio::process::Command::new("node")
            .arg(browser_dir().join("board.mjs"))
            .env("BATON_BOARD", config.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the board script (apt-get install chromium; npm in tests/browser)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Board { child, lines }
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the board script answers")
            .unwrap()
            .expect("the board script printed a line (is Debian's chromium installed?)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_an_escalation_as_it_happens() {
    let server = TestServer::start(Backend::Sqlite).await;
    let url = format!("http://{}", server.addr());
    let patel = server.token("cn.patel", "ward-pc", &["charge_nurse"], &["4W", "ICU"]);
    // A 4W task whose acknowledgment window is open.
    let (_, page) = server
        .get(
            "/api/v1/tasks?unit=4W&status=open&escalated=false",
            Some(&patel),
        )
        .await;
    let task = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["next_due_at"].is_i64())
        .min_by_key(|t| t["next_due_at"].as_i64())
        .expect("a 4W task with a deadline")
        .clone();
    let id = task["id"].as_str().unwrap().to_owned();
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("board.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut board = Board::open(json!({
        "url": url, "token": patel, "task": id, "screenshot": screenshot,
    }));
    let ready = board.next().await;
    assert_eq!(ready["units"], json!(["4W", "ICU"]), "{ready}");
    assert_eq!(
        ready["fragment"], "",
        "the token leaves the address bar: {ready}"
    );
    assert_eq!(
        ready["focused"], "unit",
        "the keyboard reaches the unit first: {ready}"
    );
    assert_eq!(ready["level"], 0, "{ready}");
    assert_eq!(ready["errors"], json!([]), "{ready}");

    // The window lapses on the workflow clock; the server escalates with every phone offline.
    let state = server.server().state();
    let due = task["next_due_at"].as_i64().unwrap();
    state.clock.advance(due - state.clock.now() + 1);
    state.scheduler.fire_due().await.unwrap();

    let shown = board.next().await;
    assert_eq!(shown["escalated"], true, "{shown}");
    assert_eq!(shown["level"], 1, "{shown}");
    assert_eq!(shown["same"], true, "shown without a reload: {shown}");
    assert_eq!(
        shown["first"], true,
        "overdue and escalated work comes first: {shown}"
    );
    assert!(
        shown["text"].as_str().unwrap().contains("ESCALATED"),
        "{shown}"
    );
    assert_eq!(shown["errors"], json!([]), "{shown}");
    assert!(board.child.wait().await.unwrap().success());
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "a screenshot is kept at {}",
        screenshot.display()
    );

    // An ICU nurse's board offers ICU alone, and the server refuses them 4W's stream.
    let silva = server.token("rn.silva", "icu-pc", &["nurse"], &["ICU"]);
    let mut theirs = Board::open(json!({ "url": url, "token": silva }));
    let ready = theirs.next().await;
    assert_eq!(ready["units"], json!(["ICU"]), "{ready}");
    let (status, body) = server
        .get("/api/v1/board/events?unit=4W", Some(&silva))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &"unit_not_allowed".into()),
        "{body}"
    );
    let (status, _) = server.get("/api/v1/board/events?unit=ICU", None).await;
    assert_eq!(status, 401);
}
