//! The join/peer handshake, both sides.

use super::message::{Message, PROTOCOL_VERSION, PeerId, PeerMetadata};
use crate::time::Millis;

/// The server's answer to a client's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The client joined: send `reply`, then sync.
    Joined {
        peer: PeerId,
        metadata: PeerMetadata,
        reply: Message,
    },
    /// Refused: send `reply` and close. The peer was never registered.
    Refused { reply: Message },
}

/// Answer a client's first frame. Only a `join` offering protocol "1" (or offering none, which
/// means "1") is accepted. The reply tells the client the server's clock, `now`.
pub fn accept_join(
    server: &PeerId,
    server_metadata: &PeerMetadata,
    now: Millis,
    first: Message,
) -> Handshake {
    let refuse = |target: Option<PeerId>, message: &str| Handshake::Refused {
        reply: Message::Error {
            sender_id: server.clone(),
            target_id: target,
            message: message.to_owned(),
        },
    };
    let Message::Join {
        sender_id,
        peer_metadata,
        supported_protocol_versions,
    } = first
    else {
        return refuse(
            first.sender_id().map(str::to_owned),
            "the first message must be `join`",
        );
    };
    if sender_id.is_empty() {
        return refuse(None, "a peer id must not be empty");
    }
    if supported_protocol_versions.is_some_and(|v| !v.iter().any(|v| v == PROTOCOL_VERSION)) {
        return refuse(Some(sender_id), "unsupported protocol version");
    }
    Handshake::Joined {
        reply: Message::Peer {
            sender_id: server.clone(),
            target_id: sender_id.clone(),
            peer_metadata: server_metadata.clone(),
            selected_protocol_version: PROTOCOL_VERSION.to_owned(),
            server_time: Some(now),
        },
        peer: sender_id,
        metadata: peer_metadata,
    }
}

/// A client's first frame.
pub fn join(client: &PeerId, metadata: &PeerMetadata) -> Message {
    Message::Join {
        sender_id: client.clone(),
        peer_metadata: metadata.clone(),
        supported_protocol_versions: Some(vec![PROTOCOL_VERSION.to_owned()]),
    }
}

/// Why a server's reply ends the handshake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the server refused the connection: {0}")]
    Refused(String),
    #[error("the server answered `{0}` instead of `peer`")]
    Unexpected(String),
    #[error("the server chose protocol version {0}")]
    Version(String),
}

/// The server, as its reply to `join` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPeer {
    pub peer: PeerId,
    pub metadata: PeerMetadata,
    /// The server's clock when it answered, if it said (a stock server does not).
    pub server_time: Option<Millis>,
}

/// Read the server's reply to `join`.
pub fn read_peer(client: &PeerId, reply: Message) -> Result<ServerPeer, HandshakeError> {
    match reply {
        Message::Peer {
            sender_id,
            target_id,
            peer_metadata,
            selected_protocol_version,
            server_time,
        } if &target_id == client => {
            if selected_protocol_version != PROTOCOL_VERSION {
                return Err(HandshakeError::Version(selected_protocol_version));
            }
            Ok(ServerPeer {
                peer: sender_id,
                metadata: peer_metadata,
                server_time,
            })
        }
        Message::Error { message, .. } => Err(HandshakeError::Refused(message)),
        other => Err(HandshakeError::Unexpected(other.kind().to_owned())),
    }
}
