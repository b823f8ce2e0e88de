//! The automerge-repo wire messages: one CBOR map per binary WebSocket frame.
//!
//! Encoded as the stock JavaScript packages encode them (string keys, plain byte strings);
//! decoded strictly enough that a malformed frame is an error value, never a panic. Unknown
//! message types decode to [`Message::Other`] and are ignored, as the stock client does.

use super::doc_id::DocumentId;
use crate::time::Millis;
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// The only protocol version automerge-repo speaks today.
pub const PROTOCOL_VERSION: &str = "1";

/// The exact text of the `error` a revoked device is sent before its connection closes with
/// code 4403: wipe the local data. Matched whole, never searched for: other errors quote what
/// a peer sent (event ids, names), which could hold any word.
pub const REVOKED_ERROR: &str = "device_revoked: this device has been revoked; wipe its local data";
/// The longest peer id, session id or storage id accepted.
const MAX_ID_LEN: usize = 256;
/// The longest error message accepted.
const MAX_ERROR_LEN: usize = 4_096;

/// A peer's id: free-form text chosen by the peer, unique per connection.
pub type PeerId = String;

/// What a peer says about itself when it joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// Identifies the peer's persistent storage, if it has one.
    pub storage_id: Option<String>,
    /// The peer keeps nothing between sessions.
    pub is_ephemeral: bool,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Client → server, first frame.
    Join {
        sender_id: PeerId,
        peer_metadata: PeerMetadata,
        /// `None` when the field is absent (treated as "1").
        supported_protocol_versions: Option<Vec<String>>,
    },
    /// Server → client: the handshake reply.
    Peer {
        sender_id: PeerId,
        target_id: PeerId,
        peer_metadata: PeerMetadata,
        selected_protocol_version: String,
        /// The server's clock when it answered (`serverTime`, ms since 1970), so a device whose
        /// own clock is wrong still stamps its events in the server's time. A Baton extension:
        /// stock peers neither send nor read it.
        server_time: Option<Millis>,
    },
    /// Something went wrong; the sender usually closes the connection after it.
    Error {
        sender_id: PeerId,
        target_id: Option<PeerId>,
        message: String,
    },
    /// A sync round from a peer that does not have the document yet.
    Request {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// A sync round.
    Sync {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// "I do not have this document (or may not give it to you)."
    DocUnavailable {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
    },
    /// Presence and other transient data, never stored.
    Ephemeral {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
        count: u64,
        session_id: String,
    },
    /// A message type this implementation does not act on (`remote-heads-changed`, ...).
    Other {
        kind: String,
        sender_id: Option<PeerId>,
    },
}

/// A frame that is not a protocol message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct DecodeError(String);

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(e: minicbor::decode::Error) -> Self {
        DecodeError(e.to_string())
    }
}

impl Message {
    /// A sync round for `document_id`: `request` when the sender holds nothing of the document
    /// yet (it asks to be sent it), `sync` otherwise.
    pub fn sync_round(
        request: bool,
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    ) -> Message {
        if request {
            Message::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
        } else {
            Message::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            }
        }
    }

    /// The `type` field on the wire.
    pub fn kind(&self) -> &str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Error { .. } => "error",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::Other { kind, .. } => kind,
        }
    }

    /// The peer that sent the message, as it claims.
    pub fn sender_id(&self) -> Option<&str> {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Error { sender_id, .. }
            | Message::Request { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. } => Some(sender_id),
            Message::Other { sender_id, .. } => sender_id.as_deref(),
        }
    }

    /// The document the message is about, for document messages.
    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. } => Some(*document_id),
            _ => None,
        }
    }

    /// The CBOR bytes of one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        self.encode_into(&mut e)
            .expect("writing CBOR to a Vec cannot fail");
        e.into_writer()
    }

    fn encode_into(
        &self,
        e: &mut Encoder<Vec<u8>>,
    ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        match self {
            Message::Join {
                sender_id,
                peer_metadata,
                supported_protocol_versions,
            } => {
                // Without versions the field is left out, as it came: an empty list would mean
                // "none supported".
                let fields = if supported_protocol_versions.is_some() {
                    4
                } else {
                    3
                };
                e.map(fields)?
                    .str("type")?
                    .str("join")?
                    .str("senderId")?
                    .str(sender_id)?;
                e.str("peerMetadata")?;
                encode_metadata(e, peer_metadata)?;
                if let Some(versions) = supported_protocol_versions {
                    e.str("supportedProtocolVersions")?
                        .array(versions.len() as u64)?;
                    for v in versions {
                        e.str(v)?;
                    }
                }
            }
            Message::Peer {
                sender_id,
                target_id,
                peer_metadata,
                selected_protocol_version,
                server_time,
            } => {
                e.map(5 + u64::from(server_time.is_some()))?
                    .str("type")?
                    .str("peer")?
                    .str("senderId")?
                    .str(sender_id)?;
                e.str("targetId")?.str(target_id)?;
                e.str("peerMetadata")?;
                encode_metadata(e, peer_metadata)?;
                e.str("selectedProtocolVersion")?
                    .str(selected_protocol_version)?;
                if let Some(time) = server_time {
                    e.str("serverTime")?.i64(*time)?;
                }
            }
            Message::Error {
                sender_id,
                target_id,
                message,
            } => {
                e.map(3 + u64::from(target_id.is_some()))?;
                e.str("type")?
                    .str("error")?
                    .str("senderId")?
                    .str(sender_id)?;
                if let Some(target) = target_id {
                    e.str("targetId")?.str(target)?;
                }
                e.str("message")?.str(message)?;
            }
            Message::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
            | Message::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            } => {
                e.map(5)?
                    .str("type")?
                    .str(self.kind())?
                    .str("senderId")?
                    .str(sender_id)?;
                e.str("targetId")?.str(target_id)?;
                e.str("documentId")?.str(&document_id.to_string())?;
                e.str("data")?.bytes(data)?;
            }
            Message::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            } => {
                e.map(4)?
                    .str("type")?
                    .str("doc-unavailable")?
                    .str("senderId")?
                    .str(sender_id)?;
                e.str("targetId")?.str(target_id)?;
                e.str("documentId")?.str(&document_id.to_string())?;
            }
            Message::Ephemeral {
                sender_id,
                target_id,
                document_id,
                data,
                count,
                session_id,
            } => {
                e.map(7)?
                    .str("type")?
                    .str("ephemeral")?
                    .str("senderId")?
                    .str(sender_id)?;
                e.str("targetId")?.str(target_id)?;
                e.str("documentId")?.str(&document_id.to_string())?;
                e.str("data")?.bytes(data)?;
                e.str("count")?.u64(*count)?;
                e.str("sessionId")?.str(session_id)?;
            }
            Message::Other { kind, sender_id } => {
                e.map(1 + u64::from(sender_id.is_some()))?
                    .str("type")?
                    .str(kind)?;
                if let Some(sender) = sender_id {
                    e.str("senderId")?.str(sender)?;
                }
            }
        }
        Ok(())
    }

    /// Read one frame. Any CBOR map with the right fields is accepted (definite or indefinite
    /// length, keys in any order, unknown keys skipped).
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        let mut d = Decoder::new(frame);
        let mut fields = Fields::default();
        let len = d.map()?;
        let mut read = 0u64;
        loop {
            match len {
                Some(n) if read == n => break,
                None if d.datatype()? == Type::Break => {
                    d.skip()?;
                    break;
                }
                _ => {}
            }
            read += 1;
            let key = d.str()?;
            match key {
                "type" => fields.kind = Some(short_str(&mut d, "type")?),
                "senderId" => fields.sender_id = Some(short_str(&mut d, "senderId")?),
                "targetId" => fields.target_id = Some(short_str(&mut d, "targetId")?),
                "documentId" => {
                    fields.document_id = Some(
                        d.str()?
                            .parse()
                            .map_err(|e: super::doc_id::DocumentIdError| bad(e.to_string()))?,
                    );
                }
                "data" => fields.data = Some(d.bytes()?.to_vec()),
                "count" => fields.count = Some(d.u64()?),
                "serverTime" if is_integer(d.datatype()?) => fields.server_time = Some(d.i64()?),
                "sessionId" => fields.session_id = Some(short_str(&mut d, "sessionId")?),
                "message" => {
                    let m = d.str()?;
                    fields.message = Some(m.chars().take(MAX_ERROR_LEN).collect());
                }
                "peerMetadata" => fields.peer_metadata = Some(decode_metadata(&mut d)?),
                "selectedProtocolVersion" => {
                    fields.selected_version = Some(short_str(&mut d, "selectedProtocolVersion")?)
                }
                "supportedProtocolVersions" => {
                    let mut versions = Vec::new();
                    let n = d.array()?.ok_or_else(|| {
                        bad("supportedProtocolVersions must have a definite length")
                    })?;
                    for _ in 0..n.min(16) {
                        versions.push(short_str(&mut d, "a protocol version")?);
                    }
                    for _ in 16..n {
                        d.skip()?;
                    }
                    fields.versions = Some(versions);
                }
                _ => d.skip()?,
            }
        }
        if d.position() != frame.len() {
            return Err(bad("trailing bytes after the message"));
        }
        fields.into_message()
    }
}

fn is_integer(t: Type) -> bool {
    use Type::{I8, I16, I32, I64, U8, U16, U32, U64};
    matches!(t, U8 | U16 | U32 | U64 | I8 | I16 | I32 | I64)
}

fn short_str(d: &mut Decoder<'_>, what: &str) -> Result<String, DecodeError> {
    let s = d.str()?;
    if s.len() > MAX_ID_LEN {
        return Err(bad(format!("{what} is longer than {MAX_ID_LEN} bytes")));
    }
    Ok(s.to_owned())
}

fn encode_metadata(
    e: &mut Encoder<Vec<u8>>,
    m: &PeerMetadata,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    e.map(1 + u64::from(m.storage_id.is_some()))?;
    if let Some(storage) = &m.storage_id {
        e.str("storageId")?.str(storage)?;
    }
    e.str("isEphemeral")?.bool(m.is_ephemeral)?;
    Ok(())
}

fn decode_metadata(d: &mut Decoder<'_>) -> Result<PeerMetadata, DecodeError> {
    let mut m = PeerMetadata::default();
    if d.datatype()? != Type::Map && d.datatype()? != Type::MapIndef {
        d.skip()?;
        return Ok(m);
    }
    let len = d.map()?;
    let mut read = 0u64;
    loop {
        match len {
            Some(n) if read == n => break,
            None if d.datatype()? == Type::Break => {
                d.skip()?;
                break;
            }
            _ => {}
        }
        read += 1;
        match d.str()? {
            "storageId" if d.datatype()? == Type::String => {
                m.storage_id = Some(short_str(d, "storageId")?)
            }
            "isEphemeral" if d.datatype()? == Type::Bool => m.is_ephemeral = d.bool()?,
            _ => d.skip()?,
        }
    }
    Ok(m)
}

#[derive(Default)]
struct Fields {
    kind: Option<String>,
    sender_id: Option<String>,
    target_id: Option<String>,
    document_id: Option<DocumentId>,
    data: Option<Vec<u8>>,
    count: Option<u64>,
    session_id: Option<String>,
    message: Option<String>,
    peer_metadata: Option<PeerMetadata>,
    selected_version: Option<String>,
    versions: Option<Vec<String>>,
    server_time: Option<Millis>,
}

impl Fields {
    fn into_message(self) -> Result<Message, DecodeError> {
        let kind = self.kind.ok_or_else(|| bad("no `type`"))?;
        let need = |field: Option<String>, name: &str| {
            field.ok_or_else(|| bad(format!("`{kind}` needs `{name}`")))
        };
        let doc = |field: Option<DocumentId>| {
            field.ok_or_else(|| bad(format!("`{kind}` needs `documentId`")))
        };
        let data =
            |field: Option<Vec<u8>>| field.ok_or_else(|| bad(format!("`{kind}` needs `data`")));
        Ok(match kind.as_str() {
            "join" => Message::Join {
                sender_id: need(self.sender_id, "senderId")?,
                peer_metadata: self.peer_metadata.unwrap_or_default(),
                supported_protocol_versions: self.versions,
            },
            "peer" => Message::Peer {
                sender_id: need(self.sender_id, "senderId")?,
                target_id: need(self.target_id, "targetId")?,
                peer_metadata: self.peer_metadata.unwrap_or_default(),
                selected_protocol_version: need(self.selected_version, "selectedProtocolVersion")?,
                server_time: self.server_time,
            },
            "error" => Message::Error {
                sender_id: need(self.sender_id, "senderId")?,
                target_id: self.target_id,
                message: self.message.unwrap_or_default(),
            },
            "request" | "sync" => Message::sync_round(
                kind == "request",
                need(self.sender_id, "senderId")?,
                need(self.target_id, "targetId")?,
                doc(self.document_id)?,
                data(self.data)?,
            ),
            "doc-unavailable" => Message::DocUnavailable {
                sender_id: need(self.sender_id, "senderId")?,
                target_id: need(self.target_id, "targetId")?,
                document_id: doc(self.document_id)?,
            },
            "ephemeral" => Message::Ephemeral {
                sender_id: need(self.sender_id, "senderId")?,
                target_id: need(self.target_id, "targetId")?,
                document_id: doc(self.document_id)?,
                data: data(self.data)?,
                count: self.count.ok_or_else(|| bad("`ephemeral` needs `count`"))?,
                session_id: need(self.session_id, "sessionId")?,
            },
            _ => {
                if kind.len() > MAX_ID_LEN {
                    return Err(bad("`type` is too long"));
                }
                Message::Other {
                    kind,
                    sender_id: self.sender_id,
                }
            }
        })
    }
}
