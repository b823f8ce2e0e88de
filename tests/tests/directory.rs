//! The directory over REST: units with time zones, roles, users, devices and rotations, each
//! within what the caller administers, refused with the field named, written to the security
//! audit; a rotation set here reaches phones through the unit's index document. On SQLite and
//! Postgres.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, Phone, TestServer, http_with_body};
use serde_json::{Value, json};

baton_e2e::on_both_backends!(admins_keep_the_directory_and_coverage_follows);

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    http_with_body(
        server.addr(),
        method,
        path,
        Some(token),
        body.to_string().as_bytes(),
    )
    .await
}

fn refused(answer: &(u16, Value), status: u16, error: &str, field: &str) {
    let (got, body) = answer;
    assert_eq!(
        (*got, body["error"].as_str(), body["field"].as_str()),
        (status, Some(error), Some(field)),
        "{body}"
    );
}

async fn admins_keep_the_directory_and_coverage_follows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin_token();
    let unit_admin = server.token_with("admin.4w", "console-4w", &[], &[], true, 3_600);

    // A unit, with its time zone and its index document.
    let saved = send(
        &server,
        "PUT",
        "/api/v1/units/5E",
        &admin,
        &json!({ "name": "5 East", "time_zone": "Europe/London" }),
    )
    .await;
    assert_eq!(saved.0, 200, "{}", saved.1);
    assert!(
        saved.1["index_url"]
            .as_str()
            .unwrap()
            .starts_with("automerge:")
    );
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/5E",
            &admin,
            &json!({ "name": "5 East", "time_zone": "Mars/Olympus" }),
        )
        .await,
        422,
        "invalid_field",
        "time_zone",
    );
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/a%20b",
            &admin,
            &json!({ "name": "x", "time_zone": "UTC" }),
        )
        .await,
        422,
        "invalid_field",
        "id",
    );
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/5E",
            &admin,
            &json!({ "name": "5 East", "time_zone": "UTC", "colour": "red" }),
        )
        .await,
        422,
        "invalid_field",
        "colour",
    );
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/5E",
            &admin,
            &json!({ "time_zone": "UTC" }),
        )
        .await,
        422,
        "invalid_field",
        "name",
    );
    let (status, body) = send(
        &server,
        "PUT",
        "/api/v1/units/9Z",
        &unit_admin,
        &json!({ "name": "x", "time_zone": "UTC" }),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (403, &"not_server_admin".into()),
        "{body}"
    );
    let (_, units) = server.get("/api/v1/units", Some(&admin)).await;
    let ids: Vec<&str> = units["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["4W", "5E", "ICU"]);
    assert_eq!(units["units"][1]["time_zone"], "Europe/London");
    let (_, theirs) = server.get("/api/v1/units", Some(&unit_admin)).await;
    assert_eq!(theirs["units"].as_array().unwrap().len(), 1, "{theirs}");

    // A role, a user and their membership.
    let (status, _) = send(
        &server,
        "PUT",
        "/api/v1/roles/respiratory",
        &admin,
        &json!({ "name": "Respiratory therapist" }),
    )
    .await;
    assert_eq!(status, 200);
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/roles/system",
            &admin,
            &json!({ "name": "x" }),
        )
        .await,
        422,
        "invalid_field",
        "id",
    );
    let created = server
        .post_json(
            "/api/v1/users",
            Some(&admin),
            &json!({ "id": "rt.lee", "display_name": "Robin Lee" }),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["memberships"], json!([]));
    refused(
        &server
            .post_json(
                "/api/v1/users",
                Some(&admin),
                &json!({ "id": "rt.lee", "display_name": "Someone else" }),
            )
            .await,
        409,
        "already_exists",
        "id",
    );
    refused(
        &server
            .post_json(
                "/api/v1/users",
                Some(&admin),
                &json!({ "id": "rt.lee2", "display_name": "\u{7}" }),
            )
            .await,
        422,
        "invalid_field",
        "display_name",
    );
    let (status, body) = server
        .put(
            "/api/v1/users/rt.lee/memberships/5E/respiratory",
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A rotation: checked, saved, and on the unit's index for phones.
    let rotation =
        json!({ "anchor": "2026-01-05T07:00:00", "shift": "12h", "primary": ["rt.lee"] });
    let (status, body) = send(
        &server,
        "PUT",
        "/api/v1/units/5E/rotations/respiratory",
        &admin,
        &rotation,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    refused(&send(&server, "PUT", "/api/v1/units/5E/rotations/respiratory", &admin,
        &json!({ "anchor": "2026-01-05T07:00:00", "shift": "12h", "primary": ["rt.lee", "rn.evans"] })).await,
        409, "not_a_member", "primary[1]");
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/5E/rotations/respiratory",
            &admin,
            &json!({ "anchor": "soon", "shift": "12h", "primary": ["rt.lee"] }),
        )
        .await,
        422,
        "invalid_field",
        "anchor",
    );
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/5E/rotations/respiratory",
            &admin,
            &json!({ "anchor": "2026-01-05T07:00:00", "shift": "a while", "primary": ["rt.lee"] }),
        )
        .await,
        422,
        "invalid_field",
        "shift",
    );
    refused(
        &send(
            &server,
            "PUT",
            "/api/v1/units/5E/rotations/respiratory",
            &unit_admin,
            &rotation,
        )
        .await,
        403,
        "not_unit_admin",
        "unit",
    );
    let lee = server.token("rt.lee", "phone-lee", &["respiratory"], &["5E"]);
    let index = baton_e2e::index_of(server.addr(), &lee, "5E").await;
    let mut phone = Phone::connect(server.addr(), &lee).await.unwrap();
    let doc = phone.open(index).await.unwrap();
    let coverage = baton_core::index::read(&doc)
        .unwrap()
        .coverage
        .expect("coverage on the index");
    assert_eq!(coverage.zone, "Europe/London");
    let on_index = &coverage.rotations[&"respiratory".into()];
    assert_eq!(
        on_index.primary,
        vec![baton_core::ids::UserId::new("rt.lee")]
    );
    phone.close().await;
    // Taken off again: the index follows.
    let (status, _) = server
        .delete("/api/v1/units/5E/rotations/respiratory", Some(&admin))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .delete("/api/v1/units/5E/rotations/respiratory", Some(&admin))
        .await;
    assert_eq!(status, 404);
    let mut phone = Phone::connect(server.addr(), &lee).await.unwrap();
    let doc = phone.open(index).await.unwrap();
    let coverage = baton_core::index::read(&doc).unwrap().coverage.unwrap();
    assert!(coverage.rotations.is_empty(), "{coverage:?}");
    phone.close().await;

    // An override: someone else in for an hour, over the rotation, on phones too.
    let created = server
        .post_json(
            "/api/v1/users",
            Some(&admin),
            &json!({ "id": "rt.kim", "display_name": "Jo Kim" }),
        )
        .await;
    assert_eq!(created.0, 201);
    server
        .put(
            "/api/v1/users/rt.kim/memberships/5E/respiratory",
            Some(&admin),
        )
        .await;
    let (status, _) = send(
        &server,
        "PUT",
        "/api/v1/units/5E/rotations/respiratory",
        &admin,
        &rotation,
    )
    .await;
    assert_eq!(status, 200);
    let now = server.server().state().clock.now();
    let cover = json!({ "role": "respiratory", "user": "rt.kim", "from": now, "minutes": 60 });
    let (status, added) = server
        .post_json("/api/v1/units/5E/overrides", Some(&admin), &cover)
        .await;
    assert_eq!(status, 201, "{added}");
    refused(
        &server
            .post_json(
                "/api/v1/units/5E/overrides",
                Some(&admin),
                &json!({ "role": "respiratory", "user": "rn.evans", "from": now, "minutes": 1 }),
            )
            .await,
        409,
        "not_a_member",
        "user",
    );
    refused(
        &server
            .post_json(
                "/api/v1/units/5E/overrides",
                Some(&admin),
                &json!({ "role": "respiratory", "user": "rt.kim", "from": now, "minutes": 0 }),
            )
            .await,
        422,
        "invalid_field",
        "minutes",
    );
    refused(
        &server
            .post_json("/api/v1/units/5E/overrides", Some(&unit_admin), &cover)
            .await,
        403,
        "not_unit_admin",
        "unit",
    );
    let (_, listed) = server.get("/api/v1/units/5E/overrides", Some(&admin)).await;
    assert_eq!(listed["overrides"][0]["id"], added["id"], "{listed}");
    let mut phone = Phone::connect(server.addr(), &lee).await.unwrap();
    let doc = phone.open(index).await.unwrap();
    let plan = baton_core::index::read(&doc).unwrap().coverage.unwrap();
    let on = plan
        .schedule()
        .unwrap()
        .covering(&"5E".into(), &"respiratory".into(), now + 60_000);
    assert_eq!(
        on.primary.as_ref().map(|u| u.as_str()),
        Some("rt.kim"),
        "{plan:?}"
    );
    phone.close().await;
    let (status, _) = server
        .delete(
            &format!(
                "/api/v1/units/5E/overrides/{}",
                added["id"].as_str().unwrap()
            ),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200);
    let mut phone = Phone::connect(server.addr(), &lee).await.unwrap();
    let doc = phone.open(index).await.unwrap();
    let plan = baton_core::index::read(&doc).unwrap().coverage.unwrap();
    assert!(plan.overrides.is_empty(), "{plan:?}");
    let on = plan
        .schedule()
        .unwrap()
        .covering(&"5E".into(), &"respiratory".into(), now + 60_000);
    assert_eq!(on.primary.as_ref().map(|u| u.as_str()), Some("rt.lee"));
    phone.close().await;

    // Lists page, within what the caller administers.
    let mut seen = Vec::new();
    let mut query = "/api/v1/users?limit=2".to_owned();
    loop {
        let (status, page) = server.get(&query, Some(&admin)).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => query = format!("/api/v1/users?limit=2&cursor={next}"),
            None => break,
        }
        assert!(seen.len() < 100, "the pages never end");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert!(seen.contains(&"rt.lee".to_owned()));
    let (_, theirs) = server
        .get("/api/v1/users?limit=500", Some(&unit_admin))
        .await;
    for user in theirs["users"].as_array().unwrap() {
        let memberships = user["memberships"].as_array().unwrap();
        assert!(
            !memberships.is_empty() && memberships.iter().all(|m| m["unit"] == "4W"),
            "{user}"
        );
    }
    let (_, devices) = server
        .get("/api/v1/devices?user=rt.lee", Some(&admin))
        .await;
    assert_eq!(devices["devices"][0]["id"], "phone-lee", "{devices}");
    assert_eq!(devices["devices"][0]["revoked_at"], Value::Null);
    let (_, theirs) = server
        .get("/api/v1/devices?user=rt.lee", Some(&unit_admin))
        .await;
    assert_eq!(theirs["devices"], json!([]), "not a 4W device: {theirs}");
    let nurse = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let (status, _) = server.get("/api/v1/devices", Some(&nurse)).await;
    assert_eq!(status, 403);

    // Every change is on the security audit.
    let (_, audit) = server
        .get("/api/v1/audit/security?limit=1000&user=admin", Some(&admin))
        .await;
    let kinds: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "unit_saved",
        "role_saved",
        "user_created",
        "membership_granted",
        "rotation_saved",
        "rotation_removed",
        "override_added",
        "override_removed",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}
