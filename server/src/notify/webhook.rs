//! Webhook delivery by the Standard Webhooks convention (<https://www.standardwebhooks.com>):
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`) with a `whsec_` secret, so receivers verify
//! with any of the convention's libraries.

use super::store::Delivery;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// A webhook signing secret: `whsec_` and the base64 of the key bytes.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret is `whsec_` followed by base64 key bytes")]
    Prefix,
    #[error("the webhook secret's key is not base64: {0}")]
    Base64(base64::DecodeError),
    #[error("the webhook secret's key must be 24 to 64 bytes")]
    Length,
}

impl std::str::FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, SecretError> {
        let key = s.trim().strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        let bytes = STANDARD.decode(key).map_err(SecretError::Base64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length);
        }
        Ok(WebhookSecret(bytes))
    }
}

/// The `webhook-signature` header for a message.
pub fn signature(secret: &WebhookSecret, id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&secret.0) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// POST one delivery. Any 2xx is delivered; anything else, or no answer, is a failure to retry.
pub(super) fn post(
    agent: &ureq::Agent,
    secret: &WebhookSecret,
    delivery: &Delivery,
) -> Result<(), String> {
    let timestamp = crate::now_ms() / 1000;
    let response = agent
        .post(&delivery.recipient)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature(secret, &delivery.id, timestamp, &delivery.body),
        )
        .send(delivery.body.as_str())
        .map_err(|e| format!("{}: {e}", delivery.recipient))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{} answered {status}", delivery.recipient))
    }
}
