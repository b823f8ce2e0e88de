//! The automerge-repo sync protocol, sans-IO.
//!
//! - [`message`]: the CBOR messages of one WebSocket frame each.
//! - [`doc_id`]: document ids and `automerge:` URLs.
//! - [`handshake`]: `join` / `peer`.
//! - [`doc`]: a document with per-peer [`automerge::sync`] state and a gate on incoming changes.
//! - [`actor`]: one document's actor: inputs in, effects out (commits, messages, audits).
//!
//! Sockets, storage and timers live with the caller (the server, the device client).

pub mod actor;
pub mod doc;
pub mod doc_id;
pub mod handshake;
pub mod message;

pub use doc::{DocSync, ReceiveError, Received, SyncLimits, without_queue};
pub use doc_id::DocumentId;
pub use message::{Message, PeerId, PeerMetadata, REVOKED_ERROR};
