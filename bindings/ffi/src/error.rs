//! One error enum for every call, with a stable `code` in each variant that an app can switch
//! on, and a `reason` safe to show (`message` would clash with Kotlin's `Throwable.message`).

use crate::convert::Fields;
use baton_core::client::ClientError;
use baton_core::doc::AppendError;
use baton_core::validate::ValidationError;

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum BatonError {
    /// The task's rules do not allow the action now. `code` names the rule (`missing_field`,
    /// `out_of_sequence`, `not_owner`, …); `step` and `field` say where, when the rule is about
    /// one.
    #[error("{reason}")]
    Refused {
        code: String,
        reason: String,
        step: Option<String>,
        field: Option<String>,
    },
    /// The server would refuse the change (identity, unit, stamp, bounds). `code` names the
    /// check (`impersonation`, `unit_not_allowed`, …).
    #[error("{reason}")]
    Invalid { code: String, reason: String },
    /// The task is not on this device and the server cannot be reached, or did not answer in
    /// time.
    #[error("{reason}")]
    Offline { code: String, reason: String },
    /// The server has no such task for this person.
    #[error("{reason}")]
    NotFound { code: String, reason: String },
    /// Nobody has signed in on this device yet.
    #[error("{reason}")]
    SignedOut { code: String, reason: String },
    /// The device was wiped (revoked, or signed out).
    #[error("{reason}")]
    Wiped { code: String, reason: String },
    /// The server answered what the client cannot use (REST or sync).
    #[error("{reason}")]
    Server { code: String, reason: String },
    /// The store on the device cannot be read or written (a wrong key, a full disk).
    #[error("{reason}")]
    Storage { code: String, reason: String },
    /// An argument is not usable (a malformed task id, a key of the wrong length).
    #[error("{reason}")]
    InvalidArgument { code: String, reason: String },
    #[error("{reason}")]
    Internal { code: String, reason: String },
}

/// The serde tag of a core error: its stable code.
fn tag(value: &impl serde::Serialize, key: &str) -> String {
    Fields::of(value)
        .text(key)
        .unwrap_or_else(|| "unknown".to_owned())
}

fn refused(refusal: &baton_core::rules::Refusal, reason: String) -> BatonError {
    let fields = Fields::of(refusal);
    let text = |key: &str| fields.text(key);
    BatonError::Refused {
        code: fields
            .text("refusal")
            .unwrap_or_else(|| "unknown".to_owned()),
        reason,
        step: text("step"),
        field: text("field"),
    }
}

impl From<ClientError> for BatonError {
    fn from(e: ClientError) -> Self {
        let reason = e.to_string();
        let code = |c: &str| c.to_owned();
        match &e {
            ClientError::Append(AppendError::Refused(refusal)) => refused(refusal, reason),
            ClientError::Invalid(ValidationError::Refused { refusal, .. }) => {
                refused(refusal, reason)
            }
            ClientError::Invalid(invalid) => BatonError::Invalid {
                code: tag(invalid, "error"),
                reason,
            },
            ClientError::Offline(_) => BatonError::Offline {
                code: code("offline"),
                reason,
            },
            ClientError::Timeout(_) => BatonError::Offline {
                code: code("timeout"),
                reason,
            },
            ClientError::Unavailable(_) | ClientError::NotHeld(_) => BatonError::NotFound {
                code: code("not_found"),
                reason,
            },
            ClientError::SignedOut => BatonError::SignedOut {
                code: code("signed_out"),
                reason,
            },
            ClientError::Wiped => BatonError::Wiped {
                code: code("wiped"),
                reason,
            },
            ClientError::Store(_) => BatonError::Storage {
                code: code("store"),
                reason,
            },
            ClientError::Api(_) => BatonError::Server {
                code: code("api"),
                reason,
            },
            ClientError::Protocol(_) | ClientError::Index(_) => BatonError::Server {
                code: code("protocol"),
                reason,
            },
            ClientError::Document { .. } | ClientError::Doc(_) | ClientError::Append(_) => {
                BatonError::Server {
                    code: code("document"),
                    reason,
                }
            }
        }
    }
}
