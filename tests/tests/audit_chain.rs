//! The audit trail is tamper-evident: `baton-server audit verify` passes on what the server
//! wrote, while it serves and after, and names the first broken link when a row of either chain
//! is edited or slipped in, or a change of a task's history is taken away. On SQLite and
//! Postgres.
#![allow(clippy::unwrap_used)]

use baton_core::{Author, EventBody};
use baton_e2e::{Backend, Phone, TestServer, append};
use sqlx::{Executor, Row};
use std::process::Command;

baton_e2e::on_both_backends!(verify_passes_on_what_the_server_wrote_and_names_each_tamper);

const BIN: &str = env!("CARGO_BIN_EXE_baton-server-e2e");

/// Run `audit verify`: whether it passed, and what it printed.
fn verify(server: &TestServer) -> (bool, String) {
    let mut command = Command::new(BIN);
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(&server.data_dir);
    if let baton_server::Storage::Postgres(url) = &server.config.storage {
        command.args(["--database-url", url]);
    }
    let out = command.output().unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed)
}

fn assert_broken(server: &TestServer, names: &str) {
    let (passed, printed) = verify(server);
    assert!(!passed, "verify passed:\n{printed}");
    assert!(
        printed.contains("BROKEN") && printed.contains(names),
        "expected the break to name `{names}`:\n{printed}"
    );
}

async fn verify_passes_on_what_the_server_wrote_and_names_each_tamper(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    // A nurse notes something on a task from a phone: an event on the task events' chain.
    let token = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let mut phone = Phone::connect(server.addr(), &token).await.unwrap();
    let task = baton_e2e::listed_task(&mut phone, server.addr(), &token, "4W", "discharge").await;
    let doc = phone.open(task).await.unwrap();
    let (noted, note) = append(
        &doc,
        &Author::new("rn.evans", "nurse", "phone-1"),
        EventBody::Note {
            text: "Family is on the way".into(),
        },
    );
    phone.push(task, noted).await.unwrap();
    phone.close().await;
    // A refused token and an admin action: records on the security audit's chain.
    let (status, _) = server.get("/api/v1/me", Some("not-a-token")).await;
    assert_eq!(status, 401);
    let (status, body) = server
        .post(
            "/api/v1/devices/phone-1/revoke",
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // It checks out while the server serves, and once it has stopped.
    let (passed, printed) = verify(&server);
    assert!(passed, "{printed}");
    assert!(printed.contains("every chain and every task history checks out"));
    server.server.take().unwrap().shutdown().await;
    let (passed, printed) = verify(&server);
    assert!(passed, "{printed}");

    let mut db = server.database().await;
    let row = sqlx::query(
        "SELECT seq, user_id, heads FROM task_events WHERE doc_id = $1 AND event_id = $2",
    )
    .bind(task.to_string())
    .bind(note.id.to_string())
    .fetch_one(&mut db)
    .await
    .unwrap();
    let (seq, heads): (i64, String) = (row.get(0), row.get(2));
    assert_eq!(row.get::<String, _>(1), "rn.evans");

    // An event's author changed: its link no longer matches.
    let set_user =
        |user: &str| format!("UPDATE task_events SET user_id = '{user}' WHERE seq = {seq}");
    db.execute(sqlx::AssertSqlSafe(set_user("dr.fox")))
        .await
        .unwrap();
    assert_broken(&server, &format!("task_events: link {seq}"));
    db.execute(sqlx::AssertSqlSafe(set_user("rn.evans")))
        .await
        .unwrap();
    assert!(verify(&server).0);

    // A security record rewritten.
    let detail: String = sqlx::query("SELECT detail FROM security_audit WHERE seq = 1")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    sqlx::query("UPDATE security_audit SET detail = 'nothing happened' WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap();
    assert_broken(&server, "security_audit: link 1");
    sqlx::query("UPDATE security_audit SET detail = $1 WHERE seq = 1")
        .bind(&detail)
        .execute(&mut db)
        .await
        .unwrap();
    assert!(verify(&server).0);

    // A record slipped in beside the chain.
    sqlx::query(
        "INSERT INTO security_audit (id, at, kind, detail) VALUES ('slipped', 0, 'login', 'x')",
    )
    .execute(&mut db)
    .await
    .unwrap();
    assert_broken(&server, "no place on the chain, the first slipped");
    sqlx::query("DELETE FROM security_audit WHERE id = 'slipped'")
        .execute(&mut db)
        .await
        .unwrap();
    assert!(verify(&server).0);

    // The last record cut off the end.
    let last = sqlx::query("SELECT MAX(seq) FROM security_audit")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get::<i64, _>(0);
    let kept = sqlx::query(
        "SELECT id, at, kind, user_id, device_id, doc_id, detail, hash FROM security_audit WHERE seq = $1",
    )
    .bind(last)
    .fetch_one(&mut db)
    .await
    .unwrap();
    sqlx::query("DELETE FROM security_audit WHERE seq = $1")
        .bind(last)
        .execute(&mut db)
        .await
        .unwrap();
    assert_broken(
        &server,
        &format!("security_audit: the rows end at link {}", last - 1),
    );
    sqlx::query(
        "INSERT INTO security_audit (id, at, kind, user_id, device_id, doc_id, detail, hash, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(kept.get::<String, _>(0))
    .bind(kept.get::<i64, _>(1))
    .bind(kept.get::<String, _>(2))
    .bind(kept.get::<Option<String>, _>(3))
    .bind(kept.get::<Option<String>, _>(4))
    .bind(kept.get::<Option<String>, _>(5))
    .bind(kept.get::<String, _>(6))
    .bind(kept.get::<String, _>(7))
    .bind(last)
    .execute(&mut db)
    .await
    .unwrap();
    assert!(verify(&server).0);

    // The change that carried the note taken out of the task's history: the chain
    // still holds the event, and names the change it arrived with.
    let change = heads.split(',').next().unwrap().to_owned();
    let stored =
        sqlx::query("SELECT bytes, received_at FROM doc_changes WHERE doc_id = $1 AND hash = $2")
            .bind(task.to_string())
            .bind(&change)
            .fetch_one(&mut db)
            .await
            .unwrap();
    let (bytes, received_at): (Vec<u8>, i64) = (stored.get(0), stored.get(1));
    sqlx::query("DELETE FROM doc_changes WHERE doc_id = $1 AND hash = $2")
        .bind(task.to_string())
        .bind(&change)
        .execute(&mut db)
        .await
        .unwrap();
    assert_broken(&server, &format!("arrived with change {change}"));
    sqlx::query(
        "INSERT INTO doc_changes (doc_id, hash, bytes, received_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(task.to_string())
    .bind(&change)
    .bind(&bytes)
    .bind(received_at)
    .execute(&mut db)
    .await
    .unwrap();
    let (passed, printed) = verify(&server);
    assert!(passed, "{printed}");

    // Rows from before the chains existed are put on them once, at the next start.
    sqlx::query(
        "INSERT INTO security_audit (id, at, kind, detail) VALUES ('from-before', 1, 'login', 'x')",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("UPDATE audit_chains SET sealed = 0 WHERE chain = 'security_audit'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_broken(&server, "the first from-before");
    let restarted = baton_server::Server::start(server.config.clone())
        .await
        .unwrap();
    restarted.shutdown().await;
    let (passed, printed) = verify(&server);
    assert!(passed, "{printed}");
    let placed: Option<i64> =
        sqlx::query("SELECT seq FROM security_audit WHERE id = 'from-before'")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get(0);
    assert_eq!(placed, Some(last + 1));
}
