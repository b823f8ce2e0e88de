//! Least privilege for administrators: who administers what is in the server's records (a
//! token's `admin` claim alone makes no one an admin); an admin of 4W sees and changes only
//! 4W's users, devices, memberships, tasks and notifications, and nothing that belongs to no
//! unit; the server's admin, everything. Every scenario runs on SQLite and on Postgres.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, TestServer};
use serde_json::Value;
use std::process::Command;

baton_e2e::on_both_backends!(
    a_unit_admin_sees_only_their_units,
    a_unit_admin_changes_only_their_units,
    the_admin_claim_alone_makes_no_admin,
    the_server_admin_reaches_every_unit,
    admin_grant_records_an_admin_from_the_command_line,
);

const BIN: &str = env!("CARGO_BIN_EXE_baton-server-e2e");

fn unit_admin(server: &TestServer) -> String {
    server.token_with("admin.4w", "ward-pc-4w", &[], &[], true, 3_600)
}

fn units_of(page: &Value) -> Vec<String> {
    let mut units: Vec<String> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["unit"].as_str().unwrap().to_owned())
        .collect();
    units.sort();
    units.dedup();
    units
}

async fn a_task_of(server: &TestServer, unit: &str) -> String {
    let (status, page) = server
        .get(
            &format!("/api/v1/tasks?unit={unit}"),
            Some(&server.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["tasks"][0]["id"].as_str().unwrap().to_owned()
}

async fn a_unit_admin_sees_only_their_units(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = unit_admin(&server);
    let (status, me) = server.get("/api/v1/me", Some(&admin)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (&me["admin"], &me["server_admin"], &me["admin_units"]),
        (&true.into(), &false.into(), &serde_json::json!(["4W"])),
        "{me}"
    );

    let (status, page) = server.get("/api/v1/tasks", Some(&admin)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(units_of(&page), ["4W"], "{page}");
    let (status, answer) = server.get("/api/v1/tasks?unit=ICU", Some(&admin)).await;
    assert_eq!(
        (status, &answer["error"]),
        (403, &"unit_not_allowed".into())
    );

    let icu_task = a_task_of(&server, "ICU").await;
    let (status, _) = server
        .get(&format!("/api/v1/tasks/{icu_task}"), Some(&admin))
        .await;
    assert_eq!(status, 404, "an ICU task is not 4W's admin's to see");
    let w4_task = a_task_of(&server, "4W").await;
    let (status, view) = server
        .get(&format!("/api/v1/tasks/{w4_task}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{view}");

    // The security audit belongs to no unit: the server's admins only.
    let (status, answer) = server.get("/api/v1/audit/security", Some(&admin)).await;
    assert_eq!(
        (status, &answer["error"]),
        (403, &"not_server_admin".into())
    );
    let (status, answer) = server.get("/api/v1/notifications/dead", Some(&admin)).await;
    assert_eq!(status, 200, "{answer}");
}

async fn a_unit_admin_changes_only_their_units(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = unit_admin(&server);
    // Devices are enrolled on first use.
    for (user, device, role, unit) in [
        ("rn.evans", "phone-evans", "nurse", "4W"),
        ("rn.silva", "phone-silva", "nurse", "ICU"),
        ("ph.nguyen", "phone-nguyen", "pharmacist", "4W"),
    ] {
        let token = server.token(user, device, &[role], &[unit]);
        let (status, me) = server.get("/api/v1/me", Some(&token)).await;
        assert_eq!(status, 200, "{me}");
    }

    // Memberships: on 4W, yes; on ICU, no.
    let (status, answer) = server
        .put("/api/v1/users/rn.silva/memberships/4W/nurse", Some(&admin))
        .await;
    assert_eq!((status, &answer["member"]), (200, &true.into()), "{answer}");
    let (status, answer) = server
        .put("/api/v1/users/rn.evans/memberships/ICU/nurse", Some(&admin))
        .await;
    assert_eq!(
        (status, &answer["error"], &answer["field"]),
        (403, &"not_unit_admin".into(), &"unit".into()),
        "{answer}"
    );
    let (status, answer) = server
        .delete("/api/v1/users/rn.silva/memberships/ICU/nurse", Some(&admin))
        .await;
    assert_eq!((status, &answer["error"]), (403, &"not_unit_admin".into()));
    // rn.silva's ICU role stands.
    let silva = server.token("rn.silva", "phone-silva", &["nurse"], &["ICU"]);
    assert_eq!(server.get("/api/v1/me", Some(&silva)).await.0, 200);

    // Devices: one last used by someone of 4W, yes; of nobody on 4W, as if it did not exist.
    let (status, answer) = server
        .post("/api/v1/devices/phone-evans/revoke", Some(&admin))
        .await;
    assert_eq!(
        (status, &answer["revoked"]),
        (200, &true.into()),
        "{answer}"
    );
    server
        .delete("/api/v1/users/rn.silva/memberships/4W/nurse", Some(&admin))
        .await;
    let (status, _) = server
        .post("/api/v1/devices/phone-silva/revoke", Some(&admin))
        .await;
    assert_eq!(status, 404);
    assert_eq!(server.get("/api/v1/me", Some(&silva)).await.0, 200);

    // Users: disabling reaches all their units, so only one who works on 4W alone.
    let (status, answer) = server
        .post("/api/v1/users/ph.nguyen/disable", Some(&admin))
        .await;
    assert_eq!(
        (status, &answer["error"], &answer["field"]),
        (403, &"not_unit_admin".into(), &"unit".into()),
        "{answer}"
    );
    let (status, _) = server
        .post("/api/v1/users/rn.silva/disable", Some(&admin))
        .await;
    assert_eq!(status, 404);
    let (status, answer) = server
        .post("/api/v1/users/rn.okafor/disable", Some(&admin))
        .await;
    assert_eq!(
        (status, &answer["disabled"]),
        (200, &true.into()),
        "{answer}"
    );
    // Nor the server's admin, nor themselves.
    let (status, _) = server
        .post("/api/v1/users/admin/disable", Some(&admin))
        .await;
    assert_eq!(status, 404);
    let (status, answer) = server
        .post("/api/v1/users/admin.4w/disable", Some(&admin))
        .await;
    assert_eq!((status, &answer["error"]), (409, &"self_lockout".into()));

    // Every refusal changed nothing: the server's admin still gets in, and so does the nurse
    // whose ICU role stands.
    assert_eq!(
        server
            .get("/api/v1/me", Some(&server.admin_token()))
            .await
            .0,
        200
    );
    let nguyen = server.token("ph.nguyen", "phone-nguyen", &["pharmacist"], &["4W", "ICU"]);
    assert_eq!(server.get("/api/v1/me", Some(&nguyen)).await.0, 200);
}

async fn the_admin_claim_alone_makes_no_admin(backend: Backend) {
    let server = TestServer::start(backend).await;
    // rn.evans is in the records, but not as an admin; the token claims admin anyway.
    let forged = server.token_with("rn.evans", "phone-1", &["nurse"], &["4W"], true, 3_600);
    let (status, me) = server.get("/api/v1/me", Some(&forged)).await;
    assert_eq!((status, &me["admin"]), (200, &false.into()), "{me}");
    for (method, path) in [
        ("GET", "/api/v1/audit/security"),
        ("GET", "/api/v1/notifications/dead"),
        ("POST", "/api/v1/users/rn.okafor/disable"),
        ("POST", "/api/v1/devices/phone-2/revoke"),
        ("PUT", "/api/v1/users/rn.evans/memberships/ICU/nurse"),
    ] {
        let (status, answer) = baton_e2e::http(server.addr(), method, path, Some(&forged)).await;
        assert_eq!(
            (status, &answer["error"]),
            (403, &"not_admin".into()),
            "{path}"
        );
    }
    // The unit admin's record without the claim is no admin either.
    let unclaimed = server.token_with("admin.4w", "ward-pc-4w", &[], &[], false, 3_600);
    let (status, answer) = server.get("/api/v1/tasks", Some(&unclaimed)).await;
    assert_eq!(
        (status, &answer["error"]),
        (403, &"no_access".into()),
        "{answer}"
    );
}

async fn the_server_admin_reaches_every_unit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    let (status, me) = server.get("/api/v1/me", Some(&admin)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["server_admin"], true);
    assert_eq!(me["admin_units"], serde_json::json!(["4W", "ICU"]));
    let (_, page) = server.get("/api/v1/tasks", Some(&admin)).await;
    assert_eq!(units_of(&page), ["4W", "ICU"]);
    let (status, _) = server.get("/api/v1/audit/security", Some(&admin)).await;
    assert_eq!(status, 200);
    let (status, answer) = server
        .put("/api/v1/users/rn.evans/memberships/ICU/nurse", Some(&admin))
        .await;
    assert_eq!(status, 200, "{answer}");
    // A unit admin is no match for the server's: nor is their own reach widened by it.
    let (status, answer) = server
        .post("/api/v1/users/admin.4w/disable", Some(&admin))
        .await;
    assert_eq!(status, 200, "{answer}");
}

async fn admin_grant_records_an_admin_from_the_command_line(backend: Backend) {
    let server = TestServer::start(backend).await;
    let grant = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["admin", "grant", "--data-dir"])
            .arg(&server.data_dir)
            .args(args);
        if let baton_server::Storage::Postgres(url) = &server.config.storage {
            command.args(["--database-url", url]);
        }
        command.output().unwrap()
    };
    let out = grant(&[
        "--user",
        "it.ops",
        "--display-name",
        "IT on call",
        "--unit",
        "ICU",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "it.ops administers ICU"
    );
    let token = server.token_with("it.ops", "it-laptop", &[], &[], true, 3_600);
    let (status, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (&me["display_name"], &me["admin_units"]),
        (&"IT on call".into(), &serde_json::json!(["ICU"]))
    );
    let (_, page) = server.get("/api/v1/tasks", Some(&token)).await;
    assert_eq!(units_of(&page), ["ICU"]);

    let out = grant(&["--user", "it.ops", "--unit", "5E"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no unit `5E`"));
    let out = grant(&["--user", "it.ops"]);
    assert!(out.status.success());
    let (_, me) = server.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me["server_admin"], true, "{me}");
}
