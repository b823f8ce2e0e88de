//! One error enum for every call, with a stable `code` in each variant that an app can switch
//! on, and a `message` safe to show.

use baton_core::client::ClientError;
use baton_core::doc::AppendError;
use baton_core::validate::ValidationError;

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum BatonError {
    /// The task's rules do not allow the action now. `code` names the rule (`missing_field`,
    /// `out_of_sequence`, `not_owner`, …); `step` and `field` say where, when the rule is about
    /// one.
    #[error("{message}")]
    Refused {
        code: String,
        message: String,
        step: Option<String>,
        field: Option<String>,
    },
    /// The server would refuse the change (identity, unit, stamp, bounds). `code` names the
    /// check (`impersonation`, `unit_not_allowed`, …).
    #[error("{message}")]
    Invalid { code: String, message: String },
    /// The task is not on this device and the server cannot be reached, or did not answer in
    /// time.
    #[error("{message}")]
    Offline { code: String, message: String },
    /// The server has no such task for this person.
    #[error("{message}")]
    NotFound { code: String, message: String },
    /// Nobody has signed in on this device yet.
    #[error("{message}")]
    SignedOut { code: String, message: String },
    /// The device was wiped (revoked, or signed out).
    #[error("{message}")]
    Wiped { code: String, message: String },
    /// The server answered what the client cannot use (REST or sync).
    #[error("{message}")]
    Server { code: String, message: String },
    /// The store on the device cannot be read or written (a wrong key, a full disk).
    #[error("{message}")]
    Storage { code: String, message: String },
    /// An argument is not usable (a malformed task id, a key of the wrong length).
    #[error("{message}")]
    InvalidArgument { code: String, message: String },
    #[error("{message}")]
    Internal { code: String, message: String },
}

/// The serde tag of a core error: its stable code.
fn tag(value: &impl serde::Serialize, key: &str) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.get(key).and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn refused(refusal: &baton_core::rules::Refusal, message: String) -> BatonError {
    let value = serde_json::to_value(refusal).unwrap_or_default();
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    BatonError::Refused {
        code: tag(refusal, "refusal"),
        message,
        step: text("step"),
        field: text("field"),
    }
}

impl From<ClientError> for BatonError {
    fn from(e: ClientError) -> Self {
        let message = e.to_string();
        let code = |c: &str| c.to_owned();
        match &e {
            ClientError::Append(AppendError::Refused(refusal)) => refused(refusal, message),
            ClientError::Invalid(ValidationError::Refused { refusal, .. }) => {
                refused(refusal, message)
            }
            ClientError::Invalid(invalid) => BatonError::Invalid {
                code: tag(invalid, "error"),
                message,
            },
            ClientError::Offline(_) => BatonError::Offline {
                code: code("offline"),
                message,
            },
            ClientError::Timeout(_) => BatonError::Offline {
                code: code("timeout"),
                message,
            },
            ClientError::Unavailable(_) | ClientError::NotHeld(_) => BatonError::NotFound {
                code: code("not_found"),
                message,
            },
            ClientError::SignedOut => BatonError::SignedOut {
                code: code("signed_out"),
                message,
            },
            ClientError::Wiped => BatonError::Wiped {
                code: code("wiped"),
                message,
            },
            ClientError::Store(_) => BatonError::Storage {
                code: code("store"),
                message,
            },
            ClientError::Api(_) => BatonError::Server {
                code: code("api"),
                message,
            },
            ClientError::Protocol(_) | ClientError::Index(_) => BatonError::Server {
                code: code("protocol"),
                message,
            },
            ClientError::Document { .. } | ClientError::Doc(_) | ClientError::Append(_) => {
                BatonError::Server {
                    code: code("document"),
                    message,
                }
            }
        }
    }
}
