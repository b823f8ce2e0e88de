//! One document and the sync state of every peer syncing it, with a gate on incoming changes.
//!
//! Incoming sync messages are applied to a copy of the document first. If they carry changes,
//! the caller's `accept` check (Baton's [`crate::validate`]) sees the document before and after;
//! only if it agrees does the copy replace the document and the sender's sync state advance.
//! A refused message leaves the document and every sync state exactly as they were.
//!
//! The caller persists [`Received::changes`] **before** calling [`DocSync::generate`] for any
//! peer, so no peer is ever told about heads that are not yet durable.
//!
//! A peer whose changes were accepted is always answered with the document's heads, even when
//! Automerge's own bookkeeping would stay quiet (the peer's next message already announced the
//! same heads): those heads are the peer's acknowledgment that its changes are stored.

use super::message::PeerId;
use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change};
use std::collections::BTreeMap;

/// What applying a sync message did.
#[derive(Debug, Default)]
pub struct Received {
    /// Changes new to this document, in causal order: persist them before generating replies.
    pub changes: Vec<Change>,
}

/// Why a sync message was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError<E> {
    #[error("not a sync message: {0}")]
    Malformed(String),
    #[error("the changes could not be applied: {0}")]
    Apply(String),
    #[error("the changes were refused: {0}")]
    Refused(E),
    #[error("this peer's changes to this document were refused earlier on this connection")]
    Blocked,
}

#[derive(Debug)]
struct PeerState {
    sync: sync::State,
    /// Sent changes that were refused: nothing more is taken from or sent to it on this
    /// connection (it would only send the same changes again).
    blocked: bool,
    /// Sent changes that were accepted and not yet acknowledged.
    owed_ack: bool,
}

impl PeerState {
    fn fresh() -> Self {
        PeerState {
            sync: sync::State::new(),
            blocked: false,
            owed_ack: false,
        }
    }
}

/// The next message for one peer, owed acknowledgments included.
fn next_message(doc: &Automerge, peer: &mut PeerState) -> Option<Vec<u8>> {
    if std::mem::take(&mut peer.owed_ack) {
        // Forget what was last announced, so the current heads are sent.
        peer.sync.last_sent_heads.clear();
    }
    doc.generate_sync_message(&mut peer.sync)
        .map(sync::Message::encode)
}

/// A document being synced with some peers.
#[derive(Debug)]
pub struct DocSync {
    doc: Automerge,
    peers: BTreeMap<PeerId, PeerState>,
}

impl DocSync {
    pub fn new(doc: Automerge) -> Self {
        DocSync {
            doc,
            peers: BTreeMap::new(),
        }
    }

    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    pub fn has_peer(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Start syncing with `peer` from scratch (a new connection: nothing is assumed about what it
    /// has, so anything lost on an earlier connection is sent again; an earlier refusal is
    /// forgotten, and the same changes will be refused again if sent again).
    pub fn add_peer(&mut self, peer: PeerId) {
        self.peers.insert(peer, PeerState::fresh());
    }

    /// Stop syncing with `peer`.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Apply a sync message from `peer` (added if new), if `accept` agrees with its changes.
    pub fn receive<E>(
        &mut self,
        peer: &PeerId,
        data: &[u8],
        accept: impl FnOnce(&Automerge, &Automerge) -> Result<(), E>,
    ) -> Result<Received, ReceiveError<E>> {
        let message =
            sync::Message::decode(data).map_err(|e| ReceiveError::Malformed(e.to_string()))?;
        let entry = self
            .peers
            .entry(peer.clone())
            .or_insert_with(PeerState::fresh);
        if entry.blocked {
            return Err(ReceiveError::Blocked);
        }
        let mut state = entry.sync.clone();
        if message.changes.is_empty() {
            self.doc
                .receive_sync_message(&mut state, message)
                .map_err(|e| ReceiveError::Apply(e.to_string()))?;
            entry.sync = state;
            return Ok(Received::default());
        }
        let before = self.doc.get_heads();
        let mut candidate = self.doc.clone();
        candidate
            .receive_sync_message(&mut state, message)
            .map_err(|e| ReceiveError::Apply(e.to_string()))?;
        let changes = candidate.get_changes(&before);
        if !changes.is_empty()
            && let Err(refusal) = accept(&self.doc, &candidate)
        {
            entry.blocked = true;
            return Err(ReceiveError::Refused(refusal));
        }
        self.doc = candidate;
        entry.sync = state;
        entry.owed_ack = !changes.is_empty();
        Ok(Received { changes })
    }

    /// Change the document locally (the server's own events). Returns the new changes, to be
    /// persisted before peers are told.
    pub fn update<T>(&mut self, f: impl FnOnce(&mut Automerge) -> T) -> (T, Vec<Change>) {
        let before = self.doc.get_heads();
        let out = f(&mut self.doc);
        let changes = self.doc.get_changes(&before);
        (out, changes)
    }

    /// The next sync message for `peer`, if it needs one.
    pub fn generate(&mut self, peer: &PeerId) -> Option<Vec<u8>> {
        let state = self.peers.get_mut(peer).filter(|p| !p.blocked)?;
        next_message(&self.doc, state)
    }

    /// The next sync message for every peer that needs one.
    pub fn generate_all(&mut self) -> Vec<(PeerId, Vec<u8>)> {
        let doc = &self.doc;
        self.peers
            .iter_mut()
            .filter(|(_, state)| !state.blocked)
            .filter_map(|(peer, state)| next_message(doc, state).map(|m| (peer.clone(), m)))
            .collect()
    }

    /// Whether `peer` has everything this document has, as far as its sync state knows.
    pub fn in_sync_with(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.sync.their_heads.as_ref())
            .is_some_and(|theirs| {
                let mut ours = self.doc.get_heads();
                let mut theirs = theirs.clone();
                ours.sort();
                theirs.sort();
                ours == theirs
            })
    }
}
