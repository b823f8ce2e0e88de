//! Push to phones: the APNs and FCM HTTP v1 request shapes, with their credentials.
//!
//! - **APNs**: `POST {base}/3/device/{token}` with `apns-push-type: alert`, `apns-priority: 10`,
//!   `apns-topic` (the app's bundle id), `apns-collapse-id` (the delivery id) and a provider token
//!   (`authorization: bearer`, ES256 signed with the team's `.p8` key, renewed every 50 minutes),
//!   over HTTP/2 ([`super::h2`]), as Apple's servers require. Apple keeps the push for an hour
//!   while the phone is unreachable (`apns-expiration`).
//! - **FCM**: `POST {base}/v1/projects/{project}/messages:send` with an OAuth access token from
//!   the service account's key (a signed JWT exchanged at its `token_uri`, renewed before expiry).
//!
//! Payloads carry the notice's kind, task id, unit and event id, and a generic alert: never
//! patient information. A push service that answers that the device's token is no longer valid
//! (APNs `410`, `BadDeviceToken`, `DeviceTokenNotForTopic`; FCM `404`) makes the delivery
//! [`PushError::Gone`]: retrying would never succeed, and the phone registers a new token when
//! it next starts.

use super::h2::H2Client;
use super::store::Delivery;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// How long the push services keep a push for a phone they cannot reach. Re-notification covers
/// longer waits with a fresh push.
const KEEP_FOR_S: i64 = 3_600;

/// Why a push was not delivered.
#[derive(Debug)]
pub(super) enum PushError {
    /// Worth trying again later.
    Retry(String),
    /// The service no longer knows the device's token: no later try can succeed.
    Gone(String),
}

impl From<String> for PushError {
    fn from(error: String) -> Self {
        PushError::Retry(error)
    }
}

impl From<&str> for PushError {
    fn from(error: &str) -> Self {
        PushError::Retry(error.to_owned())
    }
}

/// APNs: where, as which app, and the team's signing key.
#[derive(Clone)]
pub struct ApnsConfig {
    /// `https://api.push.apple.com` (or a gateway; a local receiver in tests).
    pub base_url: String,
    /// The app's bundle id.
    pub topic: String,
    pub team_id: String,
    pub key_id: String,
    pub key: EncodingKey,
    /// The HTTP/2 connection pool, trusting the public roots and any [`ApnsConfig::trusting`].
    client: H2Client,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("base_url", &self.base_url)
            .field("topic", &self.topic)
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// FCM: where, which project, and the service account that signs in.
#[derive(Clone)]
pub struct FcmConfig {
    /// `https://fcm.googleapis.com` (a local receiver in tests).
    pub base_url: String,
    pub project: String,
    pub client_email: String,
    /// Where the service account's assertion is exchanged for an access token.
    pub token_uri: String,
    pub key: EncodingKey,
}

impl std::fmt::Debug for FcmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmConfig")
            .field("base_url", &self.base_url)
            .field("project", &self.project)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// A service account key file, as Google issues it.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    token_uri: String,
}

impl FcmConfig {
    /// Read a service account key file (JSON), sending to `base_url`.
    pub fn from_service_account(json: &str, base_url: String) -> Result<FcmConfig, String> {
        let account: ServiceAccount =
            serde_json::from_str(json).map_err(|e| format!("the service account key: {e}"))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("the service account's private key: {e}"))?;
        Ok(FcmConfig {
            base_url,
            project: account.project_id,
            client_email: account.client_email,
            token_uri: account.token_uri,
            key,
        })
    }
}

impl ApnsConfig {
    /// An APNs configuration from the team's `.p8` key (PEM).
    pub fn new(
        base_url: String,
        topic: String,
        team_id: String,
        key_id: String,
        p8: &str,
    ) -> Result<ApnsConfig, String> {
        let key =
            EncodingKey::from_ec_pem(p8.as_bytes()).map_err(|e| format!("the APNs key: {e}"))?;
        Ok(ApnsConfig {
            base_url,
            topic,
            team_id,
            key_id,
            key,
            client: H2Client::new(&[])?,
        })
    }

    /// Trust the root certificates in `pem` too, besides the public ones: a gateway in front of
    /// Apple with a private CA, or a test's receiver.
    pub fn trusting(mut self, pem: &str) -> Result<ApnsConfig, String> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the APNs root certificates: {e}"))?;
        if roots.is_empty() {
            return Err("the APNs root certificates: no certificate in the file".to_owned());
        }
        self.client = H2Client::new(&roots)?;
        Ok(self)
    }
}

/// A bearer token and when to renew it (Unix seconds).
#[derive(Debug, Default)]
struct Cached {
    token: String,
    renew_at: i64,
}

/// Sends pushes, keeping each provider's credentials fresh.
#[derive(Debug, Default)]
pub(super) struct Pusher {
    pub apns: Option<ApnsConfig>,
    pub fcm: Option<FcmConfig>,
    apns_token: Mutex<Cached>,
    fcm_token: Mutex<Cached>,
}

/// The alert people see: what happened, never to whom.
fn alert(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "task.assigned" => ("Task assigned to you", "Open Baton to acknowledge it."),
        "task.escalated" => ("Task escalated to you", "A task has stalled and needs you."),
        "task.renotified" => (
            "Still waiting on you",
            "A task you were asked about needs you.",
        ),
        "task.handoff_offered" => ("Handoff offered", "Someone is handing you a task."),
        "task.follow_up_due" => ("Follow-up due", "A task you own is due for follow-up."),
        _ => ("Task exception", "A task needs attention."),
    }
}

/// What a push says, whichever service carries it.
struct Push {
    /// The delivery's id: the collapse key, so a retried push replaces its first try.
    id: String,
    title: &'static str,
    body: &'static str,
    /// The notice's kind, task, unit and event: what the phone needs to sync.
    data: Value,
}

impl Push {
    fn of(delivery: &Delivery) -> Result<Push, String> {
        let notice: Value = serde_json::from_str(&delivery.body).map_err(|e| e.to_string())?;
        let field = |name: &str| notice[name].as_str().unwrap_or_default().to_owned();
        let (title, body) = alert(&delivery.kind);
        Ok(Push {
            id: delivery.id.clone(),
            title,
            body,
            data: json!({
                "type": delivery.kind,
                "task_id": field("task_id"),
                "unit": field("unit"),
                "event_id": field("event_id"),
            }),
        })
    }
}

impl Pusher {
    pub(super) fn new(apns: Option<ApnsConfig>, fcm: Option<FcmConfig>) -> Pusher {
        Pusher {
            apns,
            fcm,
            ..Pusher::default()
        }
    }

    /// Send one delivery to a device registered on `platform` with `token`. FCM goes through
    /// the blocking `agent` on a blocking thread; APNs through its own HTTP/2 pool.
    pub(super) async fn send(
        self: &Arc<Self>,
        agent: &ureq::Agent,
        delivery: &Delivery,
        platform: &str,
        token: &str,
    ) -> Result<(), PushError> {
        let push = Push::of(delivery)?;
        match platform {
            "apns" => self.apns(&push, token).await,
            "fcm" => {
                let (pusher, agent, token) = (Arc::clone(self), agent.clone(), token.to_owned());
                tokio::task::spawn_blocking(move || pusher.fcm(&agent, &push, &token))
                    .await
                    .unwrap_or_else(|e| Err(format!("the delivery stopped: {e}").into()))
            }
            other => Err(format!("unknown push platform `{other}`").into()),
        }
    }

    async fn apns(&self, push: &Push, token: &str) -> Result<(), PushError> {
        let apns = self.apns.as_ref().ok_or("APNs is not configured")?;
        let bearer = format!("bearer {}", self.apns_bearer(apns)?);
        let expiration = (crate::now_ms() / 1000 + KEEP_FOR_S).to_string();
        let payload = json!({
            "aps": {
                "alert": { "title": push.title, "body": push.body },
                "sound": "default",
                "thread-id": push.data["task_id"],
            },
            "baton": push.data,
        });
        let url = format!("{}/3/device/{token}", apns.base_url.trim_end_matches('/'));
        let headers = [
            ("authorization", bearer.as_str()),
            ("apns-push-type", "alert"),
            ("apns-priority", "10"),
            ("apns-expiration", expiration.as_str()),
            ("apns-topic", apns.topic.as_str()),
            ("apns-collapse-id", push.id.as_str()),
            ("content-type", "application/json"),
        ];
        let answer = apns
            .client
            .post(&url, &headers, payload.to_string().into_bytes())
            .await
            .map_err(|e| format!("APNs: {e}"))?;
        if answer.status.is_success() {
            return Ok(());
        }
        // APNs explains a refusal as `{"reason": "…"}`.
        let reason = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let error = format!("APNs answered {} {reason}", answer.status);
        match (answer.status.as_u16(), reason.as_str()) {
            (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
                Err(PushError::Gone(error))
            }
            _ => Err(PushError::Retry(error)),
        }
    }

    fn fcm(&self, agent: &ureq::Agent, push: &Push, token: &str) -> Result<(), PushError> {
        let fcm = self.fcm.as_ref().ok_or("FCM is not configured")?;
        let bearer = self.fcm_bearer(agent, fcm)?;
        let payload = json!({
            "message": {
                "token": token,
                "notification": { "title": push.title, "body": push.body },
                "data": push.data,
                "android": {
                    "priority": "HIGH",
                    "collapse_key": push.id,
                    "ttl": format!("{KEEP_FOR_S}s"),
                },
            }
        });
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            fcm.base_url.trim_end_matches('/'),
            fcm.project
        );
        let response = agent
            .post(&url)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .send(payload.to_string().as_str())
            .map_err(|e| format!("FCM: {e}"))?;
        match response.status().as_u16() {
            // FCM's `UNREGISTERED`: the app was uninstalled or the token expired.
            404 => Err(PushError::Gone(format!(
                "FCM answered {}",
                response.status()
            ))),
            _ => Ok(answered("FCM", response.status())?),
        }
    }

    /// An APNs provider token: ES256, `iss` the team, `iat` now; renewed every 50 minutes
    /// (Apple refuses tokens older than an hour, and new ones more often than every 20).
    fn apns_bearer(&self, apns: &ApnsConfig) -> Result<String, String> {
        let now = crate::now_ms() / 1000;
        let mut cached = self.apns_token.lock().unwrap_or_else(|e| e.into_inner());
        if cached.token.is_empty() || now >= cached.renew_at {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(apns.key_id.clone());
            let claims = json!({ "iss": apns.team_id, "iat": now });
            cached.token = jsonwebtoken::encode(&header, &claims, &apns.key)
                .map_err(|e| format!("signing the APNs token: {e}"))?;
            cached.renew_at = now + 50 * 60;
        }
        Ok(cached.token.clone())
    }

    /// An FCM access token, exchanged for the service account's signed assertion and kept until
    /// a minute before it expires.
    fn fcm_bearer(&self, agent: &ureq::Agent, fcm: &FcmConfig) -> Result<String, String> {
        let now = crate::now_ms() / 1000;
        let mut cached = self.fcm_token.lock().unwrap_or_else(|e| e.into_inner());
        if cached.token.is_empty() || now >= cached.renew_at {
            let claims = json!({
                "iss": fcm.client_email,
                "scope": "https://www.googleapis.com/auth/firebase.messaging",
                "aud": fcm.token_uri,
                "iat": now,
                "exp": now + 3600,
            });
            let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &fcm.key)
                .map_err(|e| format!("signing the FCM assertion: {e}"))?;
            let form = format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
            );
            let mut response = agent
                .post(&fcm.token_uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .send(form.as_str())
                .map_err(|e| format!("FCM sign-in: {e}"))?;
            answered("FCM sign-in", response.status())?;
            let body = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .map_err(|e| format!("FCM sign-in: {e}"))?;
            #[derive(Deserialize)]
            struct Token {
                access_token: String,
                #[serde(default)]
                expires_in: Option<i64>,
            }
            let token: Token =
                serde_json::from_str(&body).map_err(|e| format!("FCM sign-in answer: {e}"))?;
            cached.token = token.access_token;
            cached.renew_at = now + token.expires_in.unwrap_or(3600).clamp(120, 3600) - 60;
        }
        Ok(cached.token.clone())
    }
}

fn answered(what: &str, status: ureq::http::StatusCode) -> Result<(), String> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{what} answered {status}"))
    }
}
