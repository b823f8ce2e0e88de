//! The terminal phone as a script drives it, against a real server: sign in, the worklist as
//! JSON, acknowledge, a refusal, and work done offline that syncs later.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, TestServer};
use std::path::Path;
use std::process::{Command, Output};

fn phone(server: &str, store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton-phone"))
        .args(["--server", server, "--store"])
        .arg(store)
        .args(["--wait-secs", "5"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "baton-phone failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_drives_the_terminal_phone() {
    let server = TestServer::start(Backend::Sqlite).await;
    let url = format!("http://{}", server.addr());
    let store = tempfile::tempdir().unwrap();
    let token = server.token("dr.fox", "terminal-1", &["physician"], &["4W"]);
    let signed = phone(&url, store.path(), &["--token", &token, "me"]);
    assert!(stdout(&signed).contains("dr.fox"));

    // The worklist as JSON: every task with its id and folded state.
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&phone(&url, store.path(), &["worklist", "--json"]))).unwrap();
    let tasks = list["tasks"].as_array().unwrap();
    assert!(!tasks.is_empty());
    assert!(
        tasks
            .iter()
            .all(|t| t["id"].is_string() && t["state"].is_object())
    );
    let consult = tasks
        .iter()
        .find(|t| t["template"]["id"] == "consult")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A nurse's phone reads the consult before the physician acts, so it holds a copy.
    let nurse_store = tempfile::tempdir().unwrap();
    let nurse = server.token("rn.evans", "terminal-2", &["nurse"], &["4W"]);
    let before = stdout(&phone(
        &url,
        nurse_store.path(),
        &["--token", &nurse, "task", &consult, "--json"],
    ));
    assert!(before.contains("\"acknowledged\":null"), "{before}");

    // Acknowledge: written, synced, and the server has it.
    let acked = stdout(&phone(&url, store.path(), &["acknowledge", &consult]));
    assert!(
        acked.contains("acknowledged") && acked.contains("(synced)"),
        "{acked}"
    );
    let (status, view) = server
        .get(
            &format!("/api/v1/tasks/{consult}"),
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["state"]["acknowledged"]["user"], "dr.fox", "{view}");
    // The nurse's next run catches up with the server before it shows the task.
    let after: serde_json::Value = serde_json::from_str(&stdout(&phone(
        &url,
        nurse_store.path(),
        &["task", &consult, "--json"],
    )))
    .unwrap();
    assert_eq!(after["state"]["acknowledged"]["user"], "dr.fox", "{after}");

    // A refusal names the rule and fails the command.
    let refused = phone(&url, store.path(), &["complete-step", &consult, "request"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("needs field"),
        "{refused:?}"
    );

    // Offline: the worklist comes from the phone's store, and a note is kept for later.
    let offline = "http://127.0.0.1:9";
    let list = phone(offline, store.path(), &["worklist", "--json"]);
    assert!(String::from_utf8_lossy(&list.stderr).contains("offline"));
    let list: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert!(
        list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == consult)
    );
    let noted = stdout(&phone(
        offline,
        store.path(),
        &["note", &consult, "Seen on rounds"],
    ));
    assert!(noted.contains("saved on this phone"), "{noted}");
    // Back online, it syncs.
    let status = stdout(&phone(&url, store.path(), &["status"]));
    assert!(status.contains("online · 0 change(s)"), "{status}");
    let (_, view) = server
        .get(
            &format!("/api/v1/tasks/{consult}"),
            Some(&server.admin_token()),
        )
        .await;
    let notes = view["state"]["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n["text"] == "Seen on rounds"),
        "{view}"
    );
}
