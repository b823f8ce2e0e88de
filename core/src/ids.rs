//! Identifier newtypes. They are plain strings on the wire; the types keep a user id from being
//! passed where a role is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// A person, as the identity provider names them.
    UserId
);
string_id!(
    /// One installation of the app on one phone (or one server node).
    DeviceId
);
string_id!(
    /// A clinical role: `nurse`, `charge_nurse`, `physician`, ...
    Role
);
string_id!(
    /// A care unit: `4W`, `ICU`, ...
    UnitId
);
string_id!(
    /// A workflow template: `discharge`, `consult`, ...
    TemplateId
);
string_id!(
    /// A step within a template.
    StepId
);
string_id!(
    /// An event within a task document. Unique per document.
    EventId
);

impl EventId {
    /// A fresh random id for an event written by a person.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// The server's own identity in events it writes (escalations, off-track exceptions).
pub const SYSTEM_USER: &str = "baton";
/// The role the server acts in.
pub const SYSTEM_ROLE: &str = "system";
/// The role an administrator acts in on a task, through the server's admin API (reassigning or
/// cancelling work); no device may write in it.
pub const ADMIN_ROLE: &str = "admin";
