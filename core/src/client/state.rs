//! What the client holds: every document with its sync state for the current connection, the
//! local changes the server has not acknowledged yet, and the change listeners.
//!
//! Everything here is synchronous and touches no socket: the connection hands in frames' data
//! and sends what it is given back. Every change is written to the [`Store`] before it becomes
//! visible, so what a listener or the server sees is always durable on the device.

use super::clock::ServerTime;
use super::rest::{self, Me};
use super::store::{Store, StoreError};
use super::{ClientError, DocChanged, Origin, Refused};
use crate::doc::{self, Author, NewTask, TaskDoc};
use crate::event::{Event, EventBody};
use crate::hlc::HlcClock;
use crate::ids::{EventId, UnitId};
use crate::sync::DocumentId;
use crate::template::{Template, TemplateRef, TemplateRegistry};
use crate::time::Millis;
use crate::validate::{self, AuthContext, Limits};
use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, Change, ChangeHash};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The metadata key of the unacknowledged local changes.
const PENDING: &str = "pending";
/// The metadata key of the sign-in token.
pub(crate) const TOKEN: &str = "token";
/// The metadata key of the signed-in person (`GET /api/v1/me`, JSON).
const ME: &str = "me";
/// The metadata key of the server's templates (a JSON array).
const TEMPLATES: &str = "templates";
/// The metadata key of the last measured server-minus-device clock offset (i64 LE, ms).
const CLOCK_OFFSET: &str = "clock_offset";
/// A document held in more chunks than this is saved whole at its next change.
const MAX_CHUNKS: usize = 64;

/// One document as the client holds it.
pub(crate) struct Replica {
    pub(crate) doc: Automerge,
    /// The sync state for the current connection (fresh for every connection).
    pub(crate) sync: sync::State,
    /// Local changes the server has not yet acknowledged.
    pending: BTreeSet<ChangeHash>,
    /// The server said it does not have the document (or will not share it).
    pub(crate) unavailable: bool,
    /// The store holds less than `doc`: save it whole at the next write.
    dirty: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("heads", &self.doc.get_heads())
            .field("pending", &self.pending.len())
            .field("unavailable", &self.unavailable)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl Replica {
    fn new(doc: Automerge) -> Self {
        Replica {
            doc,
            sync: sync::State::new(),
            pending: BTreeSet::new(),
            unavailable: false,
            dirty: false,
        }
    }

    /// Whether the client holds nothing of the document yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.doc.get_heads().is_empty()
    }

    /// Whether the server has said, on this connection, that it holds exactly what we hold.
    pub(crate) fn in_sync(&self) -> bool {
        let Some(theirs) = &self.sync.their_heads else {
            return false;
        };
        let mut theirs = theirs.clone();
        theirs.sort();
        theirs == self.doc.get_heads()
    }

    /// Drop the pending changes the server's heads now include.
    fn settle(&mut self) -> bool {
        let Some(theirs) = &self.sync.their_heads else {
            return false;
        };
        if self.pending.is_empty()
            || !theirs
                .iter()
                .all(|h| self.doc.get_change_meta_by_hash(h).is_some())
        {
            return false;
        }
        let unseen: BTreeSet<ChangeHash> = self
            .doc
            .get_changes(theirs)
            .iter()
            .map(Change::hash)
            .collect();
        let before = self.pending.len();
        self.pending.retain(|h| unseen.contains(h));
        self.pending.len() != before
    }
}

/// One message for the server.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) doc: DocumentId,
    /// Sent as `request`: the client holds nothing of the document.
    pub(crate) request: bool,
    pub(crate) data: Vec<u8>,
}

/// Everything the client holds.
#[derive(Debug)]
pub(crate) struct State {
    store: Store,
    pub(crate) docs: BTreeMap<DocumentId, Replica>,
    listeners: BTreeMap<u64, (DocumentId, mpsc::Sender<DocChanged>)>,
    next_listener: u64,
    clock: HlcClock,
    actor: ActorId,
    pub(crate) wiped: bool,
    /// Who is signed in, as the server last said (kept in the store).
    pub(crate) me: Option<Me>,
    /// The templates tasks follow: the server's, once it said, else the shipped ones.
    pub(crate) templates: Arc<TemplateRegistry>,
    pub(crate) time: ServerTime,
}

impl State {
    /// Read every document from the store.
    pub(crate) fn load(store: Store) -> Result<State, ClientError> {
        let pending = store.meta(PENDING).map(decode_pending).unwrap_or_default();
        let mut docs = BTreeMap::new();
        for id in store.doc_ids().collect::<Vec<_>>() {
            let bytes = store.doc(&id).unwrap_or_default();
            let doc = Automerge::load(&bytes).map_err(|e| ClientError::Document {
                doc: id,
                problem: e.to_string(),
            })?;
            let mut replica = Replica::new(doc);
            replica.pending = pending.get(&id).cloned().unwrap_or_default();
            docs.insert(id, replica);
        }
        // What the store says of the person and templates is what the server said; a value
        // that no longer reads is simply asked for again at the next connection.
        let me = store
            .meta(ME)
            .and_then(|bytes| serde_json::from_slice(bytes).ok());
        let templates = store
            .meta(TEMPLATES)
            .and_then(|bytes| serde_json::from_slice::<Vec<serde_json::Value>>(bytes).ok())
            .and_then(|list| rest::templates_from(&list).ok())
            .unwrap_or_else(TemplateRegistry::shipped);
        let offset = store
            .meta(CLOCK_OFFSET)
            .and_then(|bytes| bytes.try_into().ok())
            .map(i64::from_le_bytes);
        Ok(State {
            store,
            docs,
            listeners: BTreeMap::new(),
            next_listener: 0,
            clock: HlcClock::new(),
            actor: ActorId::random(),
            wiped: false,
            me,
            templates: Arc::new(templates),
            time: ServerTime::with_offset(offset),
        })
    }

    /// Keep what the server said of the signed-in person and its templates.
    pub(crate) fn set_identity(
        &mut self,
        me: Me,
        templates: Option<(TemplateRegistry, Vec<serde_json::Value>)>,
    ) -> Result<(), ClientError> {
        let json = serde_json::to_vec(&me).map_err(|e| ClientError::Api(e.to_string()))?;
        self.store.set_meta(ME, &json)?;
        self.me = Some(me);
        if let Some((registry, list)) = templates {
            let json = serde_json::to_vec(&list).map_err(|e| ClientError::Api(e.to_string()))?;
            self.store.set_meta(TEMPLATES, &json)?;
            self.templates = Arc::new(registry);
        }
        Ok(())
    }

    /// Keep the clock offset just measured, for runs that start offline.
    pub(crate) fn set_clock_offset(&mut self, offset: i64) -> Result<(), StoreError> {
        if self.store.meta(CLOCK_OFFSET) == Some(&offset.to_le_bytes()[..]) {
            return Ok(());
        }
        self.store.set_meta(CLOCK_OFFSET, &offset.to_le_bytes())
    }

    /// The template a task follows.
    pub(crate) fn template(&self, template: &TemplateRef) -> Result<Arc<Template>, ClientError> {
        self.templates
            .get(template)
            .cloned()
            .ok_or_else(|| ClientError::Doc(doc::DocError::UnknownTemplate(template.clone())))
    }

    /// Who the server will take `author`'s changes to a task of `unit` to be: the signed-in
    /// person with their roles there, as the server last said; before it has said, the author
    /// as given.
    fn auth_for(&self, unit: &UnitId, author: &Author) -> AuthContext {
        let (user, device, roles) = match &self.me {
            Some(me) => (
                me.user.clone(),
                me.device.clone().into(),
                me.roles_on(unit).to_vec(),
            ),
            None => (
                author.user.clone(),
                author.device.clone(),
                vec![author.role.clone()],
            ),
        };
        AuthContext {
            user,
            device,
            units: if roles.is_empty() {
                Vec::new()
            } else {
                vec![unit.clone()]
            },
            roles,
            system: false,
        }
    }

    pub(crate) fn token(&self) -> Option<String> {
        self.store
            .meta(TOKEN)
            .and_then(|t| String::from_utf8(t.to_vec()).ok())
    }

    pub(crate) fn set_token(&mut self, token: &str) -> Result<(), StoreError> {
        self.store.set_meta(TOKEN, token.as_bytes())
    }

    /// How many local changes the server has not acknowledged.
    pub(crate) fn pending(&self) -> usize {
        self.docs.values().map(|r| r.pending.len()).sum()
    }

    /// A document with something in it.
    pub(crate) fn doc(&self, id: &DocumentId) -> Option<&Automerge> {
        self.docs.get(id).filter(|r| !r.is_empty()).map(|r| &r.doc)
    }

    /// Ask for a document the client does not hold (again, if it was unavailable before).
    pub(crate) fn want(&mut self, id: DocumentId) {
        let replica = self
            .docs
            .entry(id)
            .or_insert_with(|| Replica::new(Automerge::new()));
        if replica.unavailable {
            replica.unavailable = false;
            replica.sync = sync::State::new();
        }
    }

    /// Forget an empty document nobody could give us.
    pub(crate) fn forget_if_empty(&mut self, id: &DocumentId) {
        if self.docs.get(id).is_some_and(Replica::is_empty) {
            self.docs.remove(id);
        }
    }

    /// A new connection: nothing is assumed about what the server has.
    pub(crate) fn reset_sync(&mut self) {
        for replica in self.docs.values_mut() {
            replica.sync = sync::State::new();
            replica.unavailable = false;
        }
    }

    /// The next message for the server about every document that needs one.
    pub(crate) fn outgoing(&mut self) -> Vec<Outgoing> {
        self.docs
            .iter_mut()
            .filter(|(_, r)| !r.unavailable)
            .filter_map(|(id, r)| {
                let request = r.is_empty();
                r.doc.generate_sync_message(&mut r.sync).map(|m| Outgoing {
                    doc: *id,
                    request,
                    data: m.encode(),
                })
            })
            .collect()
    }

    /// Apply a sync message from the server. Returns the reply, if one is due.
    pub(crate) fn receive(
        &mut self,
        id: DocumentId,
        data: &[u8],
    ) -> Result<Option<Outgoing>, ClientError> {
        if self.wiped {
            return Ok(None);
        }
        let message =
            sync::Message::decode(data).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let replica = self
            .docs
            .entry(id)
            .or_insert_with(|| Replica::new(Automerge::new()));
        replica.unavailable = false;
        let before = replica.doc.get_heads();
        replica
            .doc
            .receive_sync_message(&mut replica.sync, message)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let changes = replica.doc.get_changes(&before);
        let settled = replica.settle();
        if !changes.is_empty() {
            // The document already holds the changes; if they cannot be stored, it is saved
            // whole at its next write.
            self.persist(id, &changes)?;
            self.notify(id, Origin::Remote);
        }
        if settled {
            self.save_pending()?;
        }
        let replica = self.docs.get_mut(&id).expect("inserted above");
        let request = replica.is_empty();
        Ok(replica
            .doc
            .generate_sync_message(&mut replica.sync)
            .map(|m| Outgoing {
                doc: id,
                request,
                data: m.encode(),
            }))
    }

    /// The server has nothing for `id`.
    pub(crate) fn unavailable(&mut self, id: DocumentId) {
        if let Some(replica) = self.docs.get_mut(&id) {
            replica.unavailable = true;
        }
    }

    /// Append an event to a task through the typed API. The server's whole validation runs
    /// first (the task's rules, identity, stamps, bounds), so an honest app never sends a change
    /// the server refuses; the change is stored before anyone sees it. `now` is the server's
    /// time as the client knows it, `device_time` the device's own clock.
    pub(crate) fn append(
        &mut self,
        id: DocumentId,
        author: &Author,
        now: Millis,
        device_time: Millis,
        body: EventBody,
    ) -> Result<Event, ClientError> {
        let replica = self
            .docs
            .get(&id)
            .filter(|r| !r.is_empty())
            .ok_or(ClientError::NotHeld(id))?;
        let before = replica.doc.get_heads();
        let mut task = TaskDoc::from_automerge(replica.doc.clone())?;
        let template = self.template(&task.meta().template)?;
        task.set_actor(self.actor.clone());
        let event =
            task.append_on_device(&template, author, &mut self.clock, now, device_time, body)?;
        self.validate(&replica.doc, &task, author, now)?;
        let doc = task.into_automerge();
        let changes = doc.get_changes(&before);
        self.commit_local(id, doc, &changes)?;
        Ok(event)
    }

    /// Open a new task on this device, validated as the server will validate it.
    pub(crate) fn create(
        &mut self,
        template: &TemplateRef,
        new: NewTask,
        author: &Author,
        now: Millis,
    ) -> Result<(DocumentId, Event), ClientError> {
        let template = self.template(template)?;
        let (task, event) = TaskDoc::create(
            &template,
            new,
            author,
            &mut self.clock,
            now,
            self.actor.clone(),
        )?;
        self.validate(&Automerge::new(), &task, author, now)?;
        let id = DocumentId::random();
        let doc = task.into_automerge();
        let changes = doc.get_changes(&[]);
        self.docs.insert(id, Replica::new(Automerge::new()));
        if let Err(e) = self.commit_local(id, doc, &changes) {
            self.docs.remove(&id);
            return Err(e);
        }
        Ok((id, event))
    }

    /// The server's whole validation of `author`'s changes that turn `before` into `task`, as the
    /// server will run it at `now`.
    fn validate(
        &self,
        before: &Automerge,
        task: &TaskDoc,
        author: &Author,
        now: Millis,
    ) -> Result<(), ClientError> {
        let auth = self.auth_for(&task.meta().unit, author);
        validate::validate_changes(
            before,
            task.automerge(),
            &auth,
            &self.templates,
            now,
            &Limits::default(),
        )?;
        Ok(())
    }

    /// Make `doc` (the held copy of `id` plus this device's new `changes`) the held copy:
    /// stored first, then pending until the server acknowledges it, then told to listeners.
    fn commit_local(
        &mut self,
        id: DocumentId,
        doc: Automerge,
        changes: &[Change],
    ) -> Result<(), ClientError> {
        let replica = self.docs.get_mut(&id).expect("checked by the caller");
        let previous = std::mem::replace(&mut replica.doc, doc);
        if let Err(e) = self.persist(id, changes) {
            // Not durable, so it did not happen.
            let replica = self.docs.get_mut(&id).expect("checked above");
            replica.doc = previous;
            return Err(e);
        }
        let replica = self.docs.get_mut(&id).expect("checked above");
        replica.pending.extend(changes.iter().map(Change::hash));
        self.save_pending()?;
        self.notify(id, Origin::Local);
        Ok(())
    }

    /// The server refused changes of `id` that this device sent (`message`, as the server
    /// worded it). The copy is rebuilt without this device's unacknowledged changes; their
    /// events are then written again, in order, except the refused one (named by the message)
    /// and any the task's rules no longer allow without it. When the message names no event of
    /// this device's, all of them are taken out. The document then syncs afresh.
    pub(crate) fn refused(
        &mut self,
        id: DocumentId,
        message: &str,
    ) -> Result<Refused, ClientError> {
        let mut report = Refused {
            doc: id,
            events: Vec::new(),
            message: message.to_owned(),
        };
        let Some(replica) = self.docs.get_mut(&id) else {
            return Ok(report);
        };
        replica.sync = sync::State::new();
        let all = replica.doc.get_changes(&[]);
        let pending = unacknowledged(&all, &replica.pending);
        if pending.is_empty() {
            return Ok(report);
        }
        let mut base = Automerge::new();
        base.apply_changes(all.iter().filter(|c| !pending.contains(&c.hash())).cloned())
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let kept: BTreeSet<EventId> = match doc::read_events(&base, None) {
            Ok(log) => log.events.into_iter().map(|e| e.id).collect(),
            Err(_) => BTreeSet::new(),
        };
        let mut local: Vec<Event> = doc::read_events(&replica.doc, None)?
            .events
            .into_iter()
            .filter(|e| !kept.contains(&e.id))
            .collect();
        local.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let named = named_event(message);
        let replay = match local.iter().position(|e| Some(&e.id) == named.as_ref()) {
            Some(i) => {
                report.events.push(local.remove(i).id);
                local
            }
            None => {
                report.events.extend(local.into_iter().map(|e| e.id));
                Vec::new()
            }
        };
        // The taken-out changes' actor and sequence numbers are never used again.
        self.actor = ActorId::random();
        self.clock = HlcClock::new();
        let replica = self.docs.get_mut(&id).expect("checked above");
        replica.pending.clear();
        replica.dirty = true;
        if base.get_heads().is_empty() {
            // The task itself was refused: nothing of it is left.
            self.docs.remove(&id);
            self.store.remove_doc(id)?;
            self.save_pending()?;
            self.notify_gone(id);
            return Ok(report);
        }
        let base_heads = base.get_heads();
        let mut task = TaskDoc::from_automerge(base)?;
        task.set_actor(self.actor.clone());
        let template = self.template(&task.meta().template)?;
        for event in replay {
            let written = task
                .state(&template)
                .and_then(|state| task.replay(&template, &state, &event));
            if written.is_err() {
                report.events.push(event.id);
            }
        }
        let doc = task.into_automerge();
        let replica = self.docs.get_mut(&id).expect("checked above");
        replica.pending = doc
            .get_changes(&base_heads)
            .iter()
            .map(Change::hash)
            .collect();
        replica.doc = doc;
        self.persist(id, &[])?;
        self.save_pending()?;
        self.notify(id, Origin::Refused);
        Ok(report)
    }

    /// Write new changes of `id` to the store: appended, or the whole document when the store
    /// holds less than the document or too many chunks of it.
    fn persist(&mut self, id: DocumentId, changes: &[Change]) -> Result<(), ClientError> {
        if self.wiped {
            return Err(ClientError::Wiped);
        }
        let replica = self.docs.get_mut(&id).expect("persisting a held document");
        let written = if replica.dirty || self.store.chunks(&id) >= MAX_CHUNKS {
            self.store.put_doc(id, &replica.doc.save())
        } else {
            let bytes: Vec<u8> = changes
                .iter()
                .flat_map(|c| c.raw_bytes().to_vec())
                .collect();
            self.store.append_doc(id, &bytes)
        };
        replica.dirty = written.is_err();
        Ok(written?)
    }

    fn save_pending(&mut self) -> Result<(), StoreError> {
        let pending: BTreeMap<DocumentId, &BTreeSet<ChangeHash>> = self
            .docs
            .iter()
            .filter(|(_, r)| !r.pending.is_empty())
            .map(|(id, r)| (*id, &r.pending))
            .collect();
        if pending.is_empty() {
            self.store.remove_meta(PENDING)
        } else {
            self.store.set_meta(PENDING, &encode_pending(&pending))
        }
    }

    /// Tell the listeners of `id`. A listener whose queue is full already has a notification
    /// waiting, and reads the document as it is when it gets to it.
    fn notify(&mut self, id: DocumentId, origin: Origin) {
        let Some(doc) = self.docs.get(&id) else {
            return;
        };
        let changed = DocChanged {
            doc: id,
            heads: doc.doc.get_heads(),
            origin,
        };
        for (doc, tx) in self.listeners.values() {
            if *doc == id {
                let _ = tx.try_send(changed.clone());
            }
        }
    }

    /// Tell the listeners of `id` that the document is gone from the device, and close them.
    fn notify_gone(&mut self, id: DocumentId) {
        let changed = DocChanged {
            doc: id,
            heads: Vec::new(),
            origin: Origin::Refused,
        };
        self.listeners.retain(|_, (doc, tx)| {
            if *doc == id {
                let _ = tx.try_send(changed.clone());
            }
            *doc != id
        });
    }

    pub(crate) fn listen(&mut self, id: DocumentId, tx: mpsc::Sender<DocChanged>) -> u64 {
        self.next_listener += 1;
        self.listeners.insert(self.next_listener, (id, tx));
        self.next_listener
    }

    pub(crate) fn unlisten(&mut self, listener: u64) {
        self.listeners.remove(&listener);
    }

    pub(crate) fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// Delete everything held, on the device and in memory. Listeners are closed.
    pub(crate) fn wipe(&mut self) -> Result<(), StoreError> {
        self.wiped = true;
        self.me = None;
        self.docs.clear();
        self.listeners.clear();
        self.store.wipe()
    }
}

/// The changes among `all` (a document's, in causal order) that the server may not have: those
/// in `pending` that no other change builds on (a change from the server that builds on one
/// shows the server has it, whatever the acknowledgment bookkeeping says).
fn unacknowledged(all: &[Change], pending: &BTreeSet<ChangeHash>) -> BTreeSet<ChangeHash> {
    let mut pending = pending.clone();
    let by_hash: HashMap<ChangeHash, &Change> = all.iter().map(|c| (c.hash(), c)).collect();
    let mut stack: Vec<ChangeHash> = all
        .iter()
        .filter(|c| !pending.contains(&c.hash()))
        .flat_map(|c| c.deps().to_vec())
        .collect();
    while let Some(hash) = stack.pop() {
        if pending.remove(&hash)
            && let Some(change) = by_hash.get(&hash)
        {
            stack.extend_from_slice(change.deps());
        }
    }
    pending
}

/// The event a refusal names: ``<doc>: refused: event <id>: …`` or ``… event <id> (<kind>): …``.
fn named_event(message: &str) -> Option<EventId> {
    let (_, rest) = message.split_once("refused: event ")?;
    let id = rest.split(' ').next()?.trim_end_matches(':');
    (!id.is_empty()).then(|| EventId::from(id))
}

/// `id (16) · count (u32 LE) · hash (32) × count`, for each document.
fn encode_pending(pending: &BTreeMap<DocumentId, &BTreeSet<ChangeHash>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, hashes) in pending {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(hashes.len() as u32).to_le_bytes());
        for hash in hashes.iter() {
            out.extend_from_slice(&hash.0);
        }
    }
    out
}

/// The inverse of [`encode_pending`]; a malformed tail is ignored (the server's heads settle
/// what it has at the next connection anyway).
fn decode_pending(mut bytes: &[u8]) -> BTreeMap<DocumentId, BTreeSet<ChangeHash>> {
    let mut pending = BTreeMap::new();
    while let Some((id, rest)) = bytes.split_first_chunk::<16>() {
        let Some((count, mut rest)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let mut hashes = BTreeSet::new();
        for _ in 0..u32::from_le_bytes(*count) {
            let Some((hash, tail)) = rest.split_first_chunk::<32>() else {
                return pending;
            };
            hashes.insert(ChangeHash(*hash));
            rest = tail;
        }
        pending.insert(DocumentId::from_bytes(*id), hashes);
        bytes = rest;
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_event() {
        let doc = DocumentId::random();
        let cases = [
            (
                format!(
                    "{doc}: refused: event e-1 (acknowledged): the task was already acknowledged by rn.evans"
                ),
                Some("e-1"),
            ),
            (
                format!(
                    "{doc}: refused: event e-2: its user is `dr.fox` but the sender is `rn.evans`"
                ),
                Some("e-2"),
            ),
            (
                format!("{doc}: refused: too many changes at once (1001, limit 1000)"),
                None,
            ),
        ];
        for (message, event) in cases {
            assert_eq!(named_event(&message), event.map(EventId::from), "{message}");
        }
    }

    #[test]
    fn pending_changes_round_trip() {
        let mut pending = BTreeMap::new();
        let hashes: BTreeSet<ChangeHash> = [ChangeHash([1; 32]), ChangeHash([2; 32])].into();
        pending.insert(DocumentId::random(), &hashes);
        let bytes = encode_pending(&pending);
        let back = decode_pending(&bytes);
        assert_eq!(back.len(), 1);
        assert_eq!(back.values().next(), Some(&hashes));
        // A cut-short value loses only what was cut.
        assert!(decode_pending(&bytes[..bytes.len() - 1]).is_empty());
    }
}
