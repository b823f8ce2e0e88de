//! One document and the sync state of every peer syncing it, with a gate on incoming changes.
//!
//! Incoming sync messages are applied to the document, and if they carried changes the caller's
//! `accept` check (Baton's [`crate::validate`]) sees them applied; only if it agrees does the
//! sender's sync state advance. A refused message is taken back out: the document is rebuilt
//! from its history up to the heads it had before (refusals are rare, so the common path pays
//! for no copy), and it and every other sync state are exactly as they were. The sender's sync
//! starts over: once it has taken the refused changes out of its copy it keeps syncing the
//! document on the same connection; a peer that offers them again is sent nothing more of it.
//!
//! The caller persists [`Received::changes`] **before** calling [`DocSync::generate`] for any
//! peer, so no peer is ever told about heads that are not yet durable.
//!
//! **Nothing unvalidated enters the document.** Automerge queues a change whose dependencies it
//! lacks and applies it, unchecked, once they arrive; a saved document even keeps such changes.
//! Here a change is applied only once it is causally ready: one that is not is held beside the
//! document, per peer and bounded ([`SyncLimits`]), and the peer is asked for what it depends
//! on. When the dependencies come, the held changes are judged together with them, against the
//! identity of the peer that sent them. Bloom-filter false positives make honest peers send
//! such changes too, so holding one is no refusal. The document itself never has a queue, so
//! [`Automerge::save`] never writes one.
//!
//! A peer whose changes were accepted is always answered with the document's heads, even when
//! Automerge's own bookkeeping would stay quiet (the peer's next message already announced the
//! same heads): those heads are the peer's acknowledgment that its changes are stored.

use super::message::PeerId;
use crate::validate::Applied;
use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// `doc` without the changes Automerge queued for want of their dependencies (a document loaded
/// from bytes that carried such changes): rebuilt from its applied history alone.
pub fn without_queue(doc: Automerge) -> Result<Automerge, automerge::AutomergeError> {
    if doc.get_missing_deps(&[]).is_empty() {
        return Ok(doc);
    }
    let mut clean = doc.fork_at(&doc.get_heads())?;
    clean.set_actor(doc.get_actor().clone());
    Ok(clean)
}

/// Bounds on what a peer may send to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncLimits {
    /// New changes one run of messages may carry, counting every change received that the
    /// document does not have, ready or not.
    pub max_changes: usize,
    /// Changes held per peer while they wait for their dependencies.
    pub max_held: usize,
    /// Bytes of changes held per peer while they wait for their dependencies.
    pub max_held_bytes: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_changes: 1_000,
            max_held: 1_000,
            max_held_bytes: 4 * 1024 * 1024,
        }
    }
}

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
    #[error("too many changes at once ({count}, limit {limit})")]
    TooManyChanges { count: usize, limit: usize },
    #[error("this peer's changes to this document were refused earlier on this connection")]
    Blocked,
}

/// The most refused changes remembered per peer and document (an honest client is refused a
/// handful at most); a peer past it is blocked, so what a connection keeps stays small.
const MAX_REFUSED: usize = 256;

#[derive(Debug)]
struct PeerState {
    sync: sync::State,
    /// Sent more changes at once than allowed, or changes that broke Automerge: nothing more is
    /// taken from or sent to it on this connection.
    blocked: bool,
    /// Changes of its that were refused on this connection. Its sync started over after the
    /// refusal; a peer that took them out of its copy (as Baton's client does) syncs on, but one
    /// that offers them again kept them, and is blocked.
    refused: HashSet<ChangeHash>,
    /// Sent changes that were accepted and not yet acknowledged.
    owed_ack: bool,
    /// Changes it sent whose dependencies the document lacks: never applied until they are
    /// ready, then judged with the changes that made them so.
    held: Vec<Change>,
    /// The document's heads when a look found nothing (more) to send it. While the heads and
    /// its sync state stand, the next look would find nothing either: Automerge's
    /// `generate_sync_message` depends on nothing else, and after a message it waits for the
    /// peer's answer. Cleared whenever its sync state changes.
    quiet_at: Option<Vec<ChangeHash>>,
}

impl PeerState {
    fn fresh() -> Self {
        PeerState {
            sync: sync::State::new(),
            blocked: false,
            refused: HashSet::new(),
            owed_ack: false,
            held: Vec::new(),
            quiet_at: None,
        }
    }

    /// Hold `changes` for later, within `limits`. What does not fit is dropped, and the peer is
    /// told to forget what it sent, so it sends those changes again once they can be taken.
    fn hold(&mut self, changes: Vec<Change>, limits: &SyncLimits) {
        let mut bytes = 0;
        let before = changes.len();
        self.held = changes
            .into_iter()
            .take_while(|c| {
                bytes += c.raw_bytes().len();
                bytes <= limits.max_held_bytes
            })
            .take(limits.max_held)
            .collect();
        if self.held.len() < before {
            self.sync.needs_reset = true;
            self.quiet_at = None;
        }
    }
}

/// Whether `doc` has the change `hash` (its queue is always empty).
fn has(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_missing_deps(std::slice::from_ref(hash)).is_empty()
}

/// The next message for one peer, owed acknowledgments included. While changes of the peer are
/// held, it is asked for their missing dependencies rather than for the held changes.
fn next_message(doc: &Automerge, peer: &mut PeerState) -> Option<Vec<u8>> {
    let heads = doc.get_heads();
    if !peer.owed_ack && peer.quiet_at.as_ref() == Some(&heads) {
        return None;
    }
    if std::mem::take(&mut peer.owed_ack) {
        // Forget what was last announced, so the current heads are sent.
        peer.sync.last_sent_heads.clear();
    }
    let Some(mut message) = doc.generate_sync_message(&mut peer.sync) else {
        peer.quiet_at = Some(heads);
        return None;
    };
    // A message sent is in flight: Automerge sends nothing more until the peer answers.
    peer.quiet_at = (peer.sync.in_flight && peer.sync.last_sent_heads == heads).then_some(heads);
    if !peer.held.is_empty() {
        let held: HashSet<ChangeHash> = peer.held.iter().map(Change::hash).collect();
        let mut need: BTreeSet<ChangeHash> = message
            .need
            .iter()
            .filter(|h| !held.contains(h))
            .copied()
            .collect();
        need.extend(
            peer.held
                .iter()
                .flat_map(|c| c.deps())
                .filter(|d| !held.contains(d) && !has(doc, d)),
        );
        let theirs: HashSet<&ChangeHash> = peer.sync.their_heads.iter().flatten().collect();
        if !need.iter().all(|h| theirs.contains(h)) {
            // As Automerge does: no summary of what is here until what is missing has come.
            message.have.clear();
        }
        message.need = need.into_iter().collect();
    }
    Some(message.encode())
}

/// Every change `messages` carry, each chunk taken apart: a change chunk is one change, a
/// document chunk (a peer sending its whole document) holds many.
fn carried(messages: &[sync::Message]) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    for chunk in messages.iter().flat_map(|m| m.changes.iter()) {
        for part in split_chunks(chunk)? {
            match Change::try_from(part) {
                // Parsing a change does not check its chunk's checksum (loading does): a
                // damaged change would be applied under a hash its bytes do not have.
                Ok(change) if part.get(4..8) != Some(&change.hash().0[..4]) => {
                    return Err("a change's checksum does not match its contents".to_owned());
                }
                Ok(change) => changes.push(change),
                Err(_) => {
                    let doc = Automerge::load(part).map_err(|e| e.to_string())?;
                    changes.extend(doc.get_changes(&[]));
                }
            }
        }
    }
    Ok(changes)
}

/// The storage chunks in `bytes`, one after the other: each is the magic bytes, a checksum, a
/// type byte, its length (LEB128) and that many bytes.
fn split_chunks(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    const HEADER: usize = 4 + 4 + 1;
    let mut chunks = Vec::new();
    while !bytes.is_empty() {
        let (len, len_bytes) = bytes
            .get(HEADER..)
            .and_then(uleb128)
            .ok_or_else(|| "a change chunk is cut short".to_owned())?;
        let total = HEADER
            .checked_add(len_bytes)
            .and_then(|n| n.checked_add(len))
            .filter(|n| *n <= bytes.len())
            .ok_or_else(|| "a change chunk is cut short".to_owned())?;
        let (chunk, rest) = bytes.split_at(total);
        chunks.push(chunk);
        bytes = rest;
    }
    Ok(chunks)
}

/// An unsigned LEB128 number at the start of `bytes`: its value and its length in bytes.
fn uleb128(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        let low = u64::from(byte & 0x7f);
        value |= low.checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// `candidates` split into the changes that can be applied to `doc` (in an order that puts
/// every change after its dependencies) and those that wait on a change neither `doc` nor the
/// candidates hold (in the order they came).
fn causally_ready(doc: &Automerge, candidates: Vec<Change>) -> (Vec<Change>, Vec<Change>) {
    let index: HashMap<ChangeHash, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let mut waiting_on = vec![0usize; candidates.len()];
    let mut missing = vec![false; candidates.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
    for (i, change) in candidates.iter().enumerate() {
        for dep in change.deps() {
            match index.get(dep) {
                Some(&j) => {
                    waiting_on[i] += 1;
                    dependents[j].push(i);
                }
                None if !has(doc, dep) => missing[i] = true,
                None => {}
            }
        }
    }
    let mut next: VecDeque<usize> = (0..candidates.len())
        .filter(|&i| waiting_on[i] == 0 && !missing[i])
        .collect();
    let mut order = Vec::with_capacity(candidates.len());
    while let Some(i) = next.pop_front() {
        order.push(i);
        for &k in &dependents[i] {
            waiting_on[k] -= 1;
            if waiting_on[k] == 0 && !missing[k] {
                next.push_back(k);
            }
        }
    }
    let mut slots: Vec<Option<Change>> = candidates.into_iter().map(Some).collect();
    let ready = order.iter().filter_map(|&i| slots[i].take()).collect();
    let unready = slots.into_iter().flatten().collect();
    (ready, unready)
}

/// A document being synced with some peers.
#[derive(Debug)]
pub struct DocSync {
    doc: Automerge,
    peers: BTreeMap<PeerId, PeerState>,
    limits: SyncLimits,
    /// Refused changes could not be taken back out: nothing is sent or taken any more.
    poisoned: bool,
}

impl DocSync {
    /// Sync `doc` with default limits. Any change it holds that is not causally ready (a queue
    /// Automerge kept from a load) is dropped: only what is applied counts.
    pub fn new(doc: Automerge) -> Self {
        Self::with_limits(doc, SyncLimits::default())
    }

    pub fn with_limits(doc: Automerge, limits: SyncLimits) -> Self {
        // A queue that cannot be dropped poisons the document: it takes and sends nothing.
        let (doc, poisoned) = match doc.get_missing_deps(&[]).is_empty() {
            true => (doc, false),
            false => match without_queue(doc.clone()) {
                Ok(clean) => (clean, false),
                Err(_) => (doc, true),
            },
        };
        DocSync {
            doc,
            peers: BTreeMap::new(),
            limits,
            poisoned,
        }
    }

    /// Changes held for `peer` while they wait for their dependencies.
    pub fn held(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, |p| p.held.len())
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
        // Reading the messages and their changes touches nothing yet; a panic in Automerge's
        // parsers is a malformed message like any other.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let messages = data
                .iter()
                .map(|d| sync::Message::decode(d.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let incoming = carried(&messages)?;
            Ok::<_, String>((messages, incoming))
        }));
        let (messages, incoming) = read
            .unwrap_or_else(|_| Err("the message could not be read".to_owned()))
            .map_err(ReceiveError::Malformed)?;
        let entry = self
            .peers
            .entry(peer.clone())
            .or_insert_with(PeerState::fresh);
        if entry.blocked || self.poisoned {
            return Err(ReceiveError::Blocked);
        }
        // Every change new to the document counts against the limit, ready or not.
        let mut seen: HashSet<ChangeHash> = entry.held.iter().map(Change::hash).collect();
        let mut candidates = std::mem::take(&mut entry.held);
        let mut new = 0usize;
        // A peer still holds a refused change when it offers it again, builds on it, or names
        // it among its heads.
        let refused = &entry.refused;
        let mut refused_again = messages
            .iter()
            .any(|m| m.heads.iter().any(|h| refused.contains(h)));
        for change in incoming {
            if refused.contains(&change.hash()) || change.deps().iter().any(|d| refused.contains(d))
            {
                refused_again = true;
            } else if seen.insert(change.hash()) && !has(&self.doc, &change.hash()) {
                new += 1;
                candidates.push(change);
            }
        }
        if refused_again {
            // It kept what was refused (a stock client does): judging it again would only
            // refuse it again, and the two would ask each other for it forever.
            entry.blocked = true;
            return Err(ReceiveError::Blocked);
        }
        if new > self.limits.max_changes {
            entry.blocked = true;
            return Err(ReceiveError::TooManyChanges {
                count: new,
                limit: self.limits.max_changes,
            });
        }
        let (ready, unready) = causally_ready(&self.doc, candidates);
        let mut state = entry.sync.clone();
        let before = self.doc.get_heads();
        // Automerge panics on some malformed changes (one naming an actor the document does not
        // know, for one) instead of returning an error. A panic here is a refusal of the run;
        // the document may be half-changed, so it is poisoned and its owner loads it again.
        let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match self.apply_all(&mut state, messages, &ready) {
                Err(e) => Err(ReceiveError::Apply(e.to_string())),
                Ok(()) if ready.is_empty() => Ok(()),
                Ok(()) => accept(&Applied {
                    before: &before,
                    after: &self.doc,
                    changes: &ready,
                })
                .map_err(ReceiveError::Refused),
            }
        }));
        let verdict = match judged {
            Ok(verdict) => verdict,
            Err(_) => {
                self.poisoned = true;
                if let Some(entry) = self.peers.get_mut(peer) {
                    entry.blocked = true;
                }
                return Err(ReceiveError::Apply(
                    "the changes could not be applied".to_owned(),
                ));
            }
        };
        let Some(entry) = self.peers.get_mut(peer) else {
            return Err(ReceiveError::Blocked);
        };
        match verdict {
            Ok(()) => {
                entry.sync = state;
                entry.quiet_at = None;
                entry.owed_ack |= !ready.is_empty();
                entry.hold(unready, &self.limits);
                Ok(Received { changes: ready })
            }
            Err(refusal) => {
                if matches!(refusal, ReceiveError::Refused(_)) {
                    // The peer's copy holds changes this document never will: start its sync
                    // over, so that once it takes them out (as Baton's client does) the two
                    // sync afresh on this connection.
                    if entry.refused.len() + ready.len() > MAX_REFUSED {
                        entry.blocked = true;
                    }
                    entry.refused.extend(ready.iter().map(Change::hash));
                    entry.sync = sync::State::new();
                    entry.quiet_at = None;
                }
                if self.doc.get_heads() != before {
                    self.take_back(&before);
                }
                Err(refusal)
            }
        }
    }

    /// Apply `ready` (causally ready, in order) to the document, then each message's headers to
    /// `state`. Nothing is left queued: if Automerge kept anything back, that is an error.
    fn apply_all(
        &mut self,
        state: &mut sync::State,
        messages: Vec<sync::Message>,
        ready: &[Change],
    ) -> Result<(), automerge::AutomergeError> {
        if !ready.is_empty() {
            self.doc.apply_changes(ready.iter().cloned())?;
            if !self.doc.get_missing_deps(&[]).is_empty() {
                return Err(automerge::AutomergeError::MissingDeps);
            }
        }
        for message in messages {
            let headers = sync::Message {
                changes: sync::ChunkList::empty(),
                ..message
            };
            self.doc.receive_sync_message(state, headers)?;
        }
        Ok(())
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

    /// The heads `peer` last announced, if it announced any.
    pub fn their_heads(&self, peer: &PeerId) -> Option<&[ChangeHash]> {
        self.peers.get(peer)?.sync.their_heads.as_deref()
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
