//! Notifications leave through the outbox: written with the event that asks someone to act,
//! delivered at least once as a Standard Webhooks POST that a stock verifier accepts, retried
//! with backoff, and given up as a dead letter after the configured tries.
//!
//! The receiver is `tests/py/webhook_receiver.py`, which verifies with PyPI `standardwebhooks`.
#![allow(clippy::unwrap_used)]

use baton_core::Span;
use baton_e2e::apns::ApnsReceiver;
use baton_e2e::{Backend, TestServer, WAIT};
use baton_server::notify::{ApnsConfig, NotifyConfig, WebhookConfig};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

baton_e2e::on_both_backends!(
    a_failing_receiver_gets_each_notice_once_when_it_recovers,
    a_receiver_that_never_answers_leaves_a_dead_letter
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver that fails its first `fail` requests, and the JSON lines it prints per request.
struct Receiver {
    child: Child,
    port: u16,
    seen: mpsc::Receiver<Value>,
}

impl Receiver {
    fn start(fail: u32) -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/webhook_receiver.py");
        let mut child = Command::new("python3")
            .args([script, "--secret", SECRET, "--fail", &fail.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the webhook receiver (pip install standardwebhooks)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .next()
            .expect("the receiver prints its port (is `standardwebhooks` installed?)")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Receiver { child, port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/baton", self.port)
    }

    /// The next request it saw, within [`WAIT`].
    fn next(&self) -> Value {
        self.seen
            .recv_timeout(WAIT)
            .expect("the receiver saw a request in time")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn server_for(backend: Backend, receiver: &Receiver, tries: u32) -> TestServer {
    let url = receiver.url();
    TestServer::start_with(backend, move |config| {
        config.routing = baton_core::policy::escalation::Routing::On;
        config.notify = NotifyConfig {
            webhook: Some(WebhookConfig {
                url,
                secret: SECRET.parse().unwrap(),
            }),
            max_attempts: tries,
            retry_base: Span::from_millis(50),
            ..NotifyConfig::default()
        };
    })
    .await
}

/// A consult the EHR opens on 4W: the server routes it at once, which asks someone to act.
async fn trigger(server: &TestServer, key: &str) -> String {
    let token = server.integration_token("ehr", &["4W"]);
    let (status, body) = server
        .post_json(
            "/api/v1/triggers",
            Some(&token),
            &json!({
                "template": "consult",
                "unit": "4W",
                "subject": { "ref": "enc-2001", "label": "Bed 3 · A.B." },
                "idempotency_key": key,
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["task_id"].as_str().unwrap().to_owned()
}

async fn a_failing_receiver_gets_each_notice_once_when_it_recovers(backend: Backend) {
    let receiver = Receiver::start(3);
    let server = server_for(backend, &receiver, 8).await;
    // Drain what the demo's own tasks set off, then open one task of our own.
    let task = trigger(&server, "order-77").await;

    // Three refusals, then a verified delivery of the routing notice, with the same id each time.
    let mut ours = Vec::new();
    let mut verified = Vec::new();
    let mut failures = 0;
    while ours
        .iter()
        .all(|r: &Value| !r["verified"].as_bool().unwrap())
    {
        let request = receiver.next();
        if request["verified"] == false && request["error"] == "failing on purpose" {
            failures += 1;
            continue;
        }
        assert_eq!(request["verified"], true, "{request}");
        verified.push(request.clone());
        if request["body"]["task_id"] == task.as_str() {
            ours.push(request);
        }
    }
    assert!(failures >= 3, "{failures}");
    // The demo's discharges have no case manager on the rotation: the exception goes to the
    // charge nurse role, and names the charge nurse on shift.
    let exception = receiver_saw_exception(&receiver, &verified);
    assert_eq!(exception["role"], "charge_nurse", "{exception}");
    assert_eq!(exception["user"], "cn.patel", "{exception}");
    let delivered = &ours[0];
    let body = &delivered["body"];
    assert_eq!(body["unit"], "4W", "{body}");
    assert!(
        ["task.assigned", "task.exception"].contains(&body["type"].as_str().unwrap()),
        "{body}"
    );
    assert_eq!(body["event_id"], "route:open");
    assert_eq!(body["url"], format!("automerge:{task}"));
    let text = body.to_string();
    assert!(
        !text.contains("enc-2001") && !text.contains("A.B."),
        "no patient information in a notification: {text}"
    );

    // Stored as delivered once, with the tries it took; nothing more comes for it.
    let db = server.server().state().db.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = baton_server::notify::store::of_task(&db, &task)
            .await
            .unwrap();
        let webhook: Vec<_> = rows.iter().filter(|r| r.1 == "webhook").collect();
        assert_eq!(webhook.len(), 1, "{rows:?}");
        if webhook[0].4 {
            assert!(
                webhook[0].3 >= 4,
                "three failures, then delivered: {rows:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked delivered: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let again = receiver
        .seen
        .recv_timeout(std::time::Duration::from_millis(500));
    assert!(
        again
            .as_ref()
            .map_or(true, |r| r["body"]["task_id"] != task.as_str()),
        "delivered twice: {again:?}"
    );
    assert_eq!(server.metric("baton_notifications_dead").await, Some(0.0));
}

/// A verified `task.exception` delivery, among `seen` or the requests still to come.
fn receiver_saw_exception(receiver: &Receiver, seen: &[Value]) -> Value {
    let is_exception = |r: &Value| r["verified"] == true && r["body"]["type"] == "task.exception";
    if let Some(r) = seen.iter().find(|r| is_exception(r)) {
        return r["body"].clone();
    }
    loop {
        let r = receiver.next();
        if is_exception(&r) {
            return r["body"].clone();
        }
    }
}

async fn a_receiver_that_never_answers_leaves_a_dead_letter(backend: Backend) {
    let receiver = Receiver::start(u32::MAX);
    let server = server_for(backend, &receiver, 3).await;
    let task = trigger(&server, "order-78").await;
    let admin = server.admin_token();
    let deadline = tokio::time::Instant::now() + baton_e2e::WAIT;
    let letter = loop {
        let (status, body) = server
            .get("/api/v1/notifications/dead?limit=1000", Some(&admin))
            .await;
        assert_eq!(status, 200, "{body}");
        if let Some(letter) = body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["task_id"] == task.as_str())
        {
            break letter.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(letter["attempts"], 3, "{letter}");
    assert_eq!(letter["channel"], "webhook");
    assert!(
        letter["last_error"].as_str().unwrap().contains("503"),
        "{letter}"
    );
    assert!(server.metric("baton_notifications_dead").await.unwrap() >= 1.0);
    // Dead letters are for admins only.
    let nurse = server.token("rn.evans", "phone-1", &["nurse"], &["4W"]);
    let (status, _) = server.get("/api/v1/notifications/dead", Some(&nurse)).await;
    assert_eq!(status, 403);
}

// ---- push ----

baton_e2e::on_both_backends!(
    a_person_s_registered_phones_get_apns_and_fcm_pushes,
    a_token_apns_no_longer_knows_is_forgotten_not_retried
);

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// The FCM and Google sign-in stand-in, and the requests it records.
fn fcm_receiver() -> (Child, u16, mpsc::Receiver<Value>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/push_receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the push receiver");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    (child, port, rx)
}

/// APNs for dr.fox's phones, over HTTP/2 and TLS to `apns`, trusting its CA.
fn apns_config(apns: &ApnsReceiver) -> ApnsConfig {
    ApnsConfig::new(
        apns.url(),
        "org.baton.app".into(),
        "TEAM123456".into(),
        "KEY1234567".into(),
        &fixture("apns-test-key.p8"),
    )
    .unwrap()
    .trusting(apns.ca_pem())
    .unwrap()
}

/// The next APNs request about `task`.
fn apns_push_for(apns: &ApnsReceiver, task: &str) -> Value {
    loop {
        let request = apns.next();
        if request["body"]["baton"]["task_id"] == task {
            return request;
        }
    }
}

/// FCM requests until one for `task`, and the sign-ins before it.
fn fcm_push_for(rx: &mpsc::Receiver<Value>, task: &str) -> (Value, Vec<Value>) {
    let mut tokens = Vec::new();
    loop {
        let request = rx.recv_timeout(WAIT).expect("pushes arrive in time");
        let path = request["path"].as_str().unwrap().to_owned();
        if path == "/token" {
            tokens.push(request);
        } else if path.ends_with("/messages:send")
            && request["body"]["message"]["data"]["task_id"] == task
        {
            return (request, tokens);
        }
    }
}

/// Waits until a push for `task` is delivered, and checks it went to `device` alone.
async fn pushed_only_to(server: &TestServer, task: &str, device: &str) {
    let db = server.server().state().db.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = baton_server::notify::store::of_task(&db, task)
            .await
            .unwrap();
        let push: Vec<_> = rows.iter().filter(|r| r.1 == "push").collect();
        if push.iter().any(|r| r.4) {
            assert_eq!(push.len(), 1, "{rows:?}");
            assert_eq!(push[0].2, device);
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `PUT /api/v1/devices/me/push` as the device of `token`.
async fn register(server: &TestServer, token: &str, platform: &str, push: &str) -> (u16, Value) {
    let body = json!({ "platform": platform, "token": push });
    let body = body.to_string();
    baton_e2e::http_with_body(
        server.addr(),
        "PUT",
        "/api/v1/devices/me/push",
        Some(token),
        body.as_bytes(),
    )
    .await
}

async fn a_person_s_registered_phones_get_apns_and_fcm_pushes(backend: Backend) {
    let apns = ApnsReceiver::start().await;
    let (mut child, port, rx) = fcm_receiver();
    let base = format!("http://127.0.0.1:{port}");
    let account = json!({
        "type": "service_account",
        "project_id": "baton-test",
        "client_email": "push@baton-test.iam.gserviceaccount.com",
        "private_key": fixture("fcm-test-key.pem"),
        "token_uri": format!("{base}/token"),
    });
    let (apns_config, fcm_base) = (apns_config(&apns), base.clone());
    let server = TestServer::start_with(backend, move |config| {
        config.routing = baton_core::policy::escalation::Routing::On;
        config.notify = NotifyConfig {
            apns: Some(apns_config),
            fcm: Some(
                baton_server::notify::FcmConfig::from_service_account(
                    &account.to_string(),
                    fcm_base,
                )
                .unwrap(),
            ),
            retry_base: Span::from_millis(50),
            ..NotifyConfig::default()
        };
    })
    .await;

    // dr.fox, the physician covering 4W, registers his iPhone and his Android tablet.
    let iphone = server.token("dr.fox", "fox-iphone", &["physician"], &["4W"]);
    let pixel = server.token("dr.fox", "fox-pixel", &["physician"], &["4W"]);
    assert_eq!(
        register(&server, &iphone, "apns", "a1b2c3d4e5f6").await.0,
        204
    );
    assert_eq!(
        register(&server, &pixel, "fcm", "fcm-token:XYZ_123")
            .await
            .0,
        204
    );
    // Bad registrations are refused, naming the field.
    let (status, body) = register(&server, &iphone, "sms", "x").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("platform")),
        "{body}"
    );
    let (status, body) = register(&server, &iphone, "apns", "has a space").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("token")),
        "{body}"
    );
    let (status, _) = baton_e2e::http_with_body(
        server.addr(),
        "PUT",
        "/api/v1/devices/me/push",
        Some(&iphone),
        br#"{"platform": "apns"}"#,
    )
    .await;
    assert_eq!(status, 400);
    let ehr = server.integration_token("ehr", &["4W"]);
    assert_eq!(register(&server, &ehr, "apns", "zzz").await.0, 403);

    // A consult from the EHR is routed to him: both phones are told, in each service's shape.
    let task = trigger(&server, "order-90").await;
    let (fcm, tokens) = fcm_push_for(&rx, &task);
    let push = apns_push_for(&apns, &task);

    // APNs is spoken over HTTP/2, negotiated by ALPN on a verified TLS connection.
    assert_eq!(push["version"], "HTTP/2.0");
    assert_eq!(push["alpn"], "h2");
    assert_eq!(push["path"], "/3/device/a1b2c3d4e5f6");
    let headers = &push["headers"];
    assert_eq!(headers["apns-push-type"], "alert");
    assert_eq!(headers["apns-priority"], "10");
    assert_eq!(headers["apns-topic"], "org.baton.app");
    let expiration: i64 = headers["apns-expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hour_from_now = baton_server::now_ms() / 1000 + 3_600;
    assert!((hour_from_now - 60..=hour_from_now).contains(&expiration));
    let bearer = headers["authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("bearer ")
        .unwrap();
    let header = jsonwebtoken::decode_header(bearer).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some("KEY1234567"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(
        bearer,
        &jsonwebtoken::DecodingKey::from_ec_pem(fixture("apns-test-key.pub.pem").as_bytes())
            .unwrap(),
        &validation,
    )
    .expect("the provider token is signed with the team's key")
    .claims;
    assert_eq!(claims["iss"], "TEAM123456");
    assert_eq!(
        push["body"]["aps"]["alert"]["title"],
        "Task assigned to you"
    );
    assert_eq!(push["body"]["baton"]["type"], "task.assigned");
    assert_eq!(push["body"]["baton"]["unit"], "4W");

    assert_eq!(fcm["path"], "/v1/projects/baton-test/messages:send");
    assert_eq!(fcm["headers"]["authorization"], "Bearer ya29.test-token");
    let message = &fcm["body"]["message"];
    assert_eq!(message["token"], "fcm-token:XYZ_123");
    assert_eq!(message["data"]["type"], "task.assigned");
    assert_eq!(message["android"]["priority"], "HIGH");
    // The access token came from exchanging a signed assertion for the service account.
    let form = tokens[0]["body"].as_str().unwrap();
    let assertion = form.split("assertion=").nth(1).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{base}/token")]);
    let claims = jsonwebtoken::decode::<Value>(
        assertion,
        &jsonwebtoken::DecodingKey::from_rsa_pem(fixture("fcm-test-key.pub.pem").as_bytes())
            .unwrap(),
        &validation,
    )
    .expect("the assertion is signed with the service account's key")
    .claims;
    assert_eq!(claims["iss"], "push@baton-test.iam.gserviceaccount.com");

    for body in [&push["body"], &fcm["body"]] {
        let text = body.to_string();
        assert!(
            !text.contains("enc-2001") && !text.contains("A.B."),
            "PHI: {text}"
        );
    }

    // Revoked, the tablet is told nothing more: the next task's pushes go to the iPhone alone.
    let admin = server.admin_token();
    let (status, _) = server
        .post("/api/v1/devices/fox-pixel/revoke", Some(&admin))
        .await;
    assert_eq!(status, 200);
    let next = trigger(&server, "order-91").await;
    pushed_only_to(&server, &next, "fox-iphone").await;
    let _ = child.kill();
    let _ = child.wait();
}

async fn a_token_apns_no_longer_knows_is_forgotten_not_retried(backend: Backend) {
    let apns = ApnsReceiver::start().await;
    let config = apns_config(&apns);
    let server = TestServer::start_with(backend, move |c| {
        c.routing = baton_core::policy::escalation::Routing::On;
        c.notify = NotifyConfig {
            apns: Some(config),
            retry_base: Span::from_millis(50),
            ..NotifyConfig::default()
        };
    })
    .await;
    // dr.fox has an iPhone and an iPad; the app was deleted from the iPhone, so Apple answers
    // its token with 410 Unregistered.
    let iphone = server.token("dr.fox", "fox-iphone", &["physician"], &["4W"]);
    let ipad = server.token("dr.fox", "fox-ipad", &["physician"], &["4W"]);
    assert_eq!(register(&server, &iphone, "apns", "0ld70ken").await.0, 204);
    assert_eq!(register(&server, &ipad, "apns", "11fe70ken").await.0, 204);
    apns.unregister("0ld70ken");

    let first = trigger(&server, "order-93").await;
    let admin = server.admin_token();
    // The iPhone's delivery is a dead letter after its one try, naming Apple's reason.
    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let (status, body) = server.get("/api/v1/notifications/dead", Some(&admin)).await;
        assert_eq!(status, 200, "{body}");
        let ours: Vec<Value> = body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["task_id"] == first.as_str())
            .cloned()
            .collect();
        if !ours.is_empty() {
            break ours;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["recipient"], "fox-iphone");
    assert_eq!(dead[0]["attempts"], 1);
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("410") && error.contains("Unregistered"),
        "{error}"
    );

    // The token is forgotten: the next task is pushed to the iPad alone.
    let next = trigger(&server, "order-94").await;
    pushed_only_to(&server, &next, "fox-ipad").await;
    // Apple heard about the old token once (for the first task) and never again.
    let mut to_old = 0;
    loop {
        let request = apns.next();
        to_old += usize::from(request["path"] == "/3/device/0ld70ken");
        if request["body"]["baton"]["task_id"] == next.as_str() {
            assert_eq!(request["path"], "/3/device/11fe70ken");
            break;
        }
    }
    assert_eq!(to_old, 1);
}

/// `--apns-url http://…`: a gateway on the same host, reached over HTTP/2 without TLS. (The
/// store plays no part in how a push is sent: SQLite alone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_through_a_local_gateway_is_cleartext_http2() {
    let gateway = ApnsReceiver::start_cleartext().await;
    let config = ApnsConfig::new(
        gateway.url(),
        "org.baton.app".into(),
        "TEAM123456".into(),
        "KEY1234567".into(),
        &fixture("apns-test-key.p8"),
    )
    .unwrap();
    let server = TestServer::start_with(Backend::Sqlite, move |c| {
        c.routing = baton_core::policy::escalation::Routing::On;
        c.notify = NotifyConfig {
            apns: Some(config),
            ..NotifyConfig::default()
        };
    })
    .await;
    let iphone = server.token("dr.fox", "fox-iphone", &["physician"], &["4W"]);
    assert_eq!(
        register(&server, &iphone, "apns", "a1b2c3d4e5f6").await.0,
        204
    );
    let task = trigger(&server, "order-95").await;
    let push = apns_push_for(&gateway, &task);
    assert_eq!(push["version"], "HTTP/2.0");
    assert_eq!(push["alpn"], Value::Null);
    assert_eq!(push["path"], "/3/device/a1b2c3d4e5f6");
    assert_eq!(push["headers"]["apns-topic"], "org.baton.app");
}
