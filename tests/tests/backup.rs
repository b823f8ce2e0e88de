//! `baton-server backup` copies a serving SQLite database consistently, with its signing key:
//! a server started on the copy has the work and accepts the tokens the original issued, and
//! the copy's audit trail checks out.
#![allow(clippy::unwrap_used)]

use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, append};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_baton-server-e2e");

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_the_work_and_its_keys() {
    let server = TestServer::start(Backend::Sqlite).await;
    let token = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let task = baton_e2e::listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let doc = phone.open(task).await.unwrap();
    let (noted, note) = append(
        &doc,
        &Author::new("rn.evans", "nurse", "phone-1"),
        EventBody::Note {
            text: "Family on the way".into(),
        },
    );
    phone.push(task, noted).await.unwrap();

    // Taken while the server serves (the phone is still connected).
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backup");
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let (ok, printed) = run(&[
        "backup",
        "--data-dir",
        &data_dir,
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(ok, "{printed}");
    assert!(
        printed.contains("baton.db and signing-key.pem"),
        "{printed}"
    );
    // Never over an earlier backup; never for Postgres.
    let (ok, printed) = run(&[
        "backup",
        "--data-dir",
        &data_dir,
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(!ok && printed.contains("not empty"), "{printed}");
    let other = dir.path().join("pg");
    let (ok, printed) = run(&[
        "backup",
        "--data-dir",
        &data_dir,
        "--database-url",
        "postgres://postgres@127.0.0.1:5432/test",
        "--to",
        other.to_str().unwrap(),
    ]);
    assert!(!ok && printed.contains("pg_dump"), "{printed}");
    assert!(!other.exists());
    phone.close().await;

    // The copy's trail checks out, and a server on it has the note and takes the same tokens.
    let (ok, printed) = run(&["audit", "verify", "--data-dir", to.to_str().unwrap()]);
    assert!(ok, "{printed}");
    let mut config = baton_server::Config::new("127.0.0.1:0".parse().unwrap(), &to);
    config.storage = baton_server::Storage::Sqlite;
    let restored = baton_server::Server::start(config).await.unwrap();
    let (status, view) = baton_e2e::http(
        restored.addr(),
        "GET",
        &format!("/api/v1/tasks/{task}"),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    let history = view["state"]["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["event"] == note.id.to_string() && h["kind"] == "note"),
        "the note is in the restored task: {history:?}"
    );
    restored.shutdown().await;
}
