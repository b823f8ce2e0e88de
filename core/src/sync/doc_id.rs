//! Document ids and automerge-repo URLs.
//!
//! A document id is 16 random bytes (a UUID v4) written in base58check: base58 (Bitcoin
//! alphabet) of the bytes followed by the first four bytes of their double SHA-256. A URL is
//! `automerge:<id>`, optionally followed by `#<heads>`, which Baton ignores.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The URL scheme of automerge-repo documents.
pub const URL_PREFIX: &str = "automerge:";

/// The id of one Automerge document.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId([u8; 16]);

impl DocumentId {
    /// A fresh random id.
    pub fn random() -> Self {
        DocumentId(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        DocumentId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// `automerge:<id>`
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Read an id from a URL (`automerge:<id>[#heads]`) or a bare id.
    pub fn from_url(url: &str) -> Result<Self, DocumentIdError> {
        let bare = url.strip_prefix(URL_PREFIX).unwrap_or(url);
        let bare = bare.split_once('#').map_or(bare, |(id, _heads)| id);
        bare.parse()
    }
}

/// A string that is not a document id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an automerge document id (base58check of 16 bytes)")]
pub struct DocumentIdError(String);

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DocumentIdError(s.chars().take(64).collect());
        if s.len() > 64 {
            return Err(err());
        }
        let bytes = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|_| err())?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| err())?;
        Ok(DocumentId(bytes))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl Serialize for DocumentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DocumentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_urls() {
        let id = DocumentId::random();
        assert_eq!(id.to_string().parse::<DocumentId>(), Ok(id));
        assert_eq!(DocumentId::from_url(&id.url()), Ok(id));
        assert_eq!(
            DocumentId::from_url(&format!("{}#abc|def", id.url())),
            Ok(id)
        );
    }

    #[test]
    fn reads_ids_written_by_the_javascript_library() {
        // An id produced by @automerge/automerge-repo's generateAutomergeUrl().
        let id: DocumentId = "2PKEJomwU81EMzXboHXSwz8rWHGj".parse().expect("valid");
        assert_eq!(id.to_string(), "2PKEJomwU81EMzXboHXSwz8rWHGj");
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        let good = DocumentId::random().to_string();
        let mut bad_check = good.clone();
        bad_check.replace_range(0..1, if good.starts_with('2') { "3" } else { "2" });
        for bad in [
            "",
            "hello",
            "../../etc/passwd",
            &bad_check,
            &"1".repeat(100),
            "0OIl",
        ] {
            assert!(bad.parse::<DocumentId>().is_err(), "{bad}");
        }
        // The right checksum over the wrong length is refused too.
        let eight = bs58::encode([7u8; 8]).with_check().into_string();
        assert!(eight.parse::<DocumentId>().is_err());
    }
}
