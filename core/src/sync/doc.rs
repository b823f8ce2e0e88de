//! One document and the sync state of every peer syncing it, with a gate on incoming changes.
//!
//! Incoming sync messages are applied to the document, and if they carried changes the caller's
//! `accept` check (Baton's [`crate::validate`]) sees them applied; only if it agrees does the
//! sender's sync state advance. A refused message is taken back out: the document is rebuilt
//! from its history up to the heads it had before (refusals are rare, so the common path pays
//! for no copy), and it and every sync state are exactly as they were.
//!
//! The caller persists [`Received::changes`] **before** calling [`DocSync::generate`] for any
//! peer, so no peer is ever told about heads that are not yet durable.
//!
//! A peer whose changes were accepted is always answered with the document's heads, even when
//! Automerge's own bookkeeping would stay quiet (the peer's next message already announced the
//! same heads): those heads are the peer's acknowledgment that its changes are stored.

use super::message::PeerId;
use crate::validate::Applied;
use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change, ChangeHash};
use std::collections::{BTreeMap, HashMap};

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
    /// Refused changes could not be taken back out: nothing is sent or taken any more.
    poisoned: bool,
}

/// The changes some sync messages carry, in the order they come; `None` if one of their chunks is
/// not a single change (a compressed document chunk), so the document must be asked instead.
fn carried(messages: &[sync::Message]) -> Option<Vec<Change>> {
    messages
        .iter()
        .flat_map(|m| m.changes.iter())
        .map(|chunk| Change::try_from(chunk).ok())
        .collect()
}

impl DocSync {
    pub fn new(doc: Automerge) -> Self {
        DocSync {
            doc,
            peers: BTreeMap::new(),
            poisoned: false,
        }
    }

    /// Whether refused changes could not be taken back out of the document (it cannot happen
    /// unless Automerge fails to rebuild its own history). A poisoned document holds changes
    /// nobody accepted: it sends and takes nothing more, and its owner must drop it and load it
    /// again from storage, which never saw them.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
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
        accept: impl FnOnce(&Applied<'_>) -> Result<(), E>,
    ) -> Result<Received, ReceiveError<E>> {
        self.receive_all(peer, &[data], accept)
    }

    /// Apply sync messages `peer` sent one after the other, as one: their changes are applied
    /// and judged together (one pass over the document instead of one per message), and the
    /// sender's sync state then takes each message in turn. If `accept` refuses, none of them
    /// is applied.
    pub fn receive_all<E, D: AsRef<[u8]>>(
        &mut self,
        peer: &PeerId,
        data: &[D],
        accept: impl FnOnce(&Applied<'_>) -> Result<(), E>,
    ) -> Result<Received, ReceiveError<E>> {
        let messages = data
            .iter()
            .map(|d| sync::Message::decode(d.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReceiveError::Malformed(e.to_string()))?;
        let entry = self
            .peers
            .entry(peer.clone())
            .or_insert_with(PeerState::fresh);
        if entry.blocked || self.poisoned {
            return Err(ReceiveError::Blocked);
        }
        let mut state = entry.sync.clone();
        let before = self.doc.get_heads();
        let carried = carried(&messages);
        let applied = self.apply_all(&mut state, messages, carried.as_deref());
        let changes = if self.doc.get_heads() == before {
            Vec::new()
        } else {
            self.changes_since(&before, carried)
        };
        let verdict = match applied {
            Err(e) => Err(ReceiveError::Apply(e.to_string())),
            Ok(()) if changes.is_empty() => Ok(()),
            Ok(()) => accept(&Applied {
                before: &before,
                after: &self.doc,
                changes: &changes,
            })
            .map_err(ReceiveError::Refused),
        };
        let Some(entry) = self.peers.get_mut(peer) else {
            return Err(ReceiveError::Blocked);
        };
        match verdict {
            Ok(()) => {
                entry.sync = state;
                entry.owed_ack |= !changes.is_empty();
                Ok(Received { changes })
            }
            Err(refusal) => {
                entry.blocked = matches!(refusal, ReceiveError::Refused(_));
                if !changes.is_empty() {
                    self.take_back(&before);
                }
                Err(refusal)
            }
        }
    }

    /// Apply `messages` to the document and to `state`: when every change they carry is known
    /// (`carried`), all the changes at once and then each message without them; otherwise each
    /// message as it is.
    fn apply_all(
        &mut self,
        state: &mut sync::State,
        messages: Vec<sync::Message>,
        carried: Option<&[Change]>,
    ) -> Result<(), automerge::AutomergeError> {
        if let Some(carried) = carried.filter(|c| !c.is_empty()) {
            self.doc.apply_changes(carried.iter().cloned())?;
            for message in messages {
                let headers = sync::Message {
                    changes: sync::ChunkList::empty(),
                    ..message
                };
                self.doc.receive_sync_message(state, headers)?;
            }
        } else {
            for message in messages {
                self.doc.receive_sync_message(state, message)?;
            }
        }
        Ok(())
    }

    /// The changes applied since `before`, in causal order as the document has them: from the
    /// message's own bytes when it carried them all (rebuilding a change from the document costs
    /// a walk over its operations).
    fn changes_since(&self, before: &[ChangeHash], carried: Option<Vec<Change>>) -> Vec<Change> {
        let new = self.doc.get_changes_meta(before);
        carried
            .and_then(|carried| {
                let mut by_hash: HashMap<ChangeHash, Change> =
                    carried.into_iter().map(|c| (c.hash(), c)).collect();
                new.iter().map(|m| by_hash.remove(&m.hash)).collect()
            })
            .unwrap_or_else(|| self.doc.get_changes(before))
    }

    /// Rebuild the document as it stood at `before`, dropping what a refused message added.
    fn take_back(&mut self, before: &[ChangeHash]) {
        let actor = self.doc.get_actor().clone();
        match self.doc.fork_at(before) {
            Ok(mut doc) => {
                doc.set_actor(actor);
                self.doc = doc;
            }
            Err(_) => self.poisoned = true,
        }
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
        if self.poisoned {
            return None;
        }
        let state = self.peers.get_mut(peer).filter(|p| !p.blocked)?;
        next_message(&self.doc, state)
    }

    /// The next sync message for every peer that needs one.
    pub fn generate_all(&mut self) -> Vec<(PeerId, Vec<u8>)> {
        if self.poisoned {
            return Vec::new();
        }
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
