//! The sync protocol, without sockets: messages, handshake, and documents converging between a
//! server and phones over a network that loses, duplicates and reorders messages.
#![allow(clippy::unwrap_used)] // building CBOR into a Vec cannot fail

mod common;

use automerge::{ActorId, Automerge, ReadDoc};
use baton_core::event::EventBody;
use baton_core::sync::handshake::{
    Handshake, HandshakeError, ServerPeer, accept_join, join, read_peer,
};
use baton_core::sync::message::{Message, PeerMetadata};
use baton_core::sync::{DocSync, DocumentId, ReceiveError};
use baton_core::validate::{
    Applied, AuthContext, Known, Limits, ValidationError, validate_applied,
};
use baton_core::{TaskDoc, TemplateRegistry};
use common::*;
use proptest::prelude::*;
use std::collections::VecDeque;

fn every_message() -> Vec<Message> {
    let doc = DocumentId::random();
    let meta = PeerMetadata {
        storage_id: Some("3760df37-a4c6-4f66-9ecd-732039a9385d".into()),
        is_ephemeral: false,
    };
    vec![
        Message::Join {
            sender_id: "peer-a".into(),
            peer_metadata: meta.clone(),
            supported_protocol_versions: Some(vec!["1".into()]),
        },
        // Without versions (the stock server takes "1"): encoded without the field.
        Message::Join {
            sender_id: "peer-b".into(),
            peer_metadata: PeerMetadata::default(),
            supported_protocol_versions: None,
        },
        Message::Peer {
            sender_id: "baton".into(),
            target_id: "peer-a".into(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
            server_time: None,
        },
        Message::Peer {
            sender_id: "baton".into(),
            target_id: "peer-a".into(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
            server_time: Some(1_767_596_400_000),
        },
        Message::Error {
            sender_id: "baton".into(),
            target_id: Some("peer-a".into()),
            message: "unsupported protocol version".into(),
        },
        Message::Error {
            sender_id: "baton".into(),
            target_id: None,
            message: "no".into(),
        },
        Message::Request {
            sender_id: "peer-a".into(),
            target_id: "baton".into(),
            document_id: doc,
            data: vec![0x42, 1, 2],
        },
        Message::Sync {
            sender_id: "peer-a".into(),
            target_id: "baton".into(),
            document_id: doc,
            data: vec![0x43, 9],
        },
        Message::DocUnavailable {
            sender_id: "baton".into(),
            target_id: "peer-a".into(),
            document_id: doc,
        },
        Message::Ephemeral {
            sender_id: "peer-a".into(),
            target_id: "baton".into(),
            document_id: doc,
            data: vec![0xa0],
            count: 7,
            session_id: "s1".into(),
        },
        Message::Other {
            kind: "remote-heads-changed".into(),
            sender_id: Some("peer-a".into()),
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for message in every_message() {
        assert_eq!(
            Message::decode(&message.encode()),
            Ok(message.clone()),
            "{}",
            message.kind()
        );
    }
}

/// Encode a map by hand: any key order, extra keys, indefinite length (what other encoders do).
fn handmade_sync(doc: &DocumentId, indefinite: bool) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    if indefinite {
        e.begin_map().unwrap();
    } else {
        e.map(6).unwrap();
    }
    e.str("data").unwrap().bytes(&[0x42]).unwrap();
    e.str("extra")
        .unwrap()
        .array(2)
        .unwrap()
        .u8(1)
        .unwrap()
        .str("x")
        .unwrap();
    e.str("documentId").unwrap().str(&doc.to_string()).unwrap();
    e.str("targetId").unwrap().str("baton").unwrap();
    e.str("senderId").unwrap().str("peer-js").unwrap();
    e.str("type").unwrap().str("sync").unwrap();
    if indefinite {
        e.end().unwrap();
    }
    e.into_writer()
}

#[test]
fn frames_from_other_encoders_are_read() {
    let doc = DocumentId::random();
    for indefinite in [false, true] {
        let m = Message::decode(&handmade_sync(&doc, indefinite)).expect("valid");
        assert_eq!(
            m,
            Message::Sync {
                sender_id: "peer-js".into(),
                target_id: "baton".into(),
                document_id: doc,
                data: vec![0x42]
            }
        );
    }
}

#[test]
fn malformed_frames_are_errors() {
    let doc = DocumentId::random();
    let good = Message::Sync {
        sender_id: "a".into(),
        target_id: "b".into(),
        document_id: doc,
        data: vec![1],
    }
    .encode();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_id = handmade_sync(&doc, false);
    let at = wrong_id.windows(3).position(|w| w == b"syn").expect("type");
    wrong_id[at] = b'x'; // an unknown type is not an error ...
    assert!(matches!(
        Message::decode(&wrong_id),
        Ok(Message::Other { .. })
    ));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("not a map", vec![0x01]),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("trailing bytes", trailing),
        (
            "no type",
            Message::Other {
                kind: "x".into(),
                sender_id: None,
            }
            .encode()[..0]
                .to_vec(),
        ),
        ("missing data", {
            let mut e = minicbor::Encoder::new(Vec::new());
            e.map(4)
                .unwrap()
                .str("type")
                .unwrap()
                .str("sync")
                .unwrap()
                .str("senderId")
                .unwrap()
                .str("a")
                .unwrap();
            e.str("targetId")
                .unwrap()
                .str("b")
                .unwrap()
                .str("documentId")
                .unwrap()
                .str(&doc.to_string())
                .unwrap();
            e.into_writer()
        }),
        ("bad document id", {
            let mut e = minicbor::Encoder::new(Vec::new());
            e.map(2)
                .unwrap()
                .str("type")
                .unwrap()
                .str("doc-unavailable")
                .unwrap()
                .str("documentId")
                .unwrap()
                .str("../../etc")
                .unwrap();
            e.into_writer()
        }),
        ("data as text", {
            let mut e = minicbor::Encoder::new(Vec::new());
            e.map(1).unwrap().str("data").unwrap().str("abc").unwrap();
            e.into_writer()
        }),
        (
            "huge peer id",
            Message::Join {
                sender_id: "p".repeat(10_000),
                peer_metadata: PeerMetadata::default(),
                supported_protocol_versions: None,
            }
            .encode(),
        ),
    ];
    for (what, frame) in cases {
        assert!(Message::decode(&frame).is_err(), "{what}");
    }
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn decoding_damaged_frames_never_panics(index in 0..9usize, at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut frame = every_message()[index].encode();
        let i = at.index(frame.len());
        frame[i] = byte;
        let _ = Message::decode(&frame);
        let _ = Message::decode(&frame[..cut.index(frame.len())]);
    }
}

#[test]
fn the_handshake_accepts_protocol_one_and_nothing_else() {
    let server = "baton".to_string();
    let meta = PeerMetadata::default();
    let client = "peer-a".to_string();
    let now = 1_767_596_400_000;
    let Handshake::Joined { peer, reply, .. } =
        accept_join(&server, &meta, now, join(&client, &meta))
    else {
        panic!("refused")
    };
    assert_eq!(peer, client);
    // The server's clock travels in the reply and survives the wire.
    let reply = Message::decode(&reply.encode()).expect("decodes");
    assert_eq!(
        read_peer(&client, reply),
        Ok(ServerPeer {
            peer: server.clone(),
            metadata: meta.clone(),
            server_time: Some(now),
        })
    );

    let legacy = Message::Join {
        sender_id: client.clone(),
        peer_metadata: meta.clone(),
        supported_protocol_versions: None,
    };
    assert!(
        matches!(
            accept_join(&server, &meta, now, legacy),
            Handshake::Joined { .. }
        ),
        "no versions listed means version 1"
    );

    let future = Message::Join {
        sender_id: client.clone(),
        peer_metadata: meta.clone(),
        supported_protocol_versions: Some(vec!["2".into()]),
    };
    let Handshake::Refused { reply } = accept_join(&server, &meta, now, future) else {
        panic!("accepted")
    };
    assert_eq!(
        read_peer(&client, reply),
        Err(HandshakeError::Refused(
            "unsupported protocol version".into()
        ))
    );

    let sync_first = Message::DocUnavailable {
        sender_id: client.clone(),
        target_id: server.clone(),
        document_id: DocumentId::random(),
    };
    assert!(matches!(
        accept_join(&server, &meta, now, sync_first),
        Handshake::Refused { .. }
    ));
}

// --- Documents over a faulty network ---------------------------------------------------------

const SERVER: &str = "server";

/// A phone: a person, their copy of the task, and its sync state with the server.
struct Phone {
    person: Person,
    sync: DocSync,
}

impl Phone {
    fn act(&mut self, now: i64, body: EventBody) -> bool {
        let t = template("discharge");
        let person = &mut self.person;
        let (ok, _) = self.sync.update(|doc| {
            let mut task = TaskDoc::from_automerge(std::mem::take(doc)).expect("task");
            let ok = person.try_act(&mut task, &t, now, body).is_ok();
            *doc = task.into_automerge();
            ok
        });
        ok
    }

    fn auth(&self) -> AuthContext {
        AuthContext {
            user: self.person.author.user.clone(),
            device: self.person.author.device.clone(),
            roles: vec![self.person.author.role.clone()],
            units: vec!["4W".into()],
            system: false,
        }
    }
}

struct World {
    server: DocSync,
    phones: Vec<Phone>,
    /// In flight: (to phone index or None for the server, from phone index, bytes).
    wire: VecDeque<(Option<usize>, usize, Vec<u8>)>,
    refused: Vec<ValidationError>,
}

impl World {
    fn new(roles: &[&str]) -> World {
        let t = template("discharge");
        let mut creator = Person::new("dr.adams", "physician");
        let task = creator.create(&t, T0);
        let bytes = task.save();
        let server = DocSync::new(Automerge::load(&bytes).expect("load"));
        let phones = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let mut doc = Automerge::load(&bytes).expect("load");
                doc.set_actor(ActorId::random());
                let mut sync = DocSync::new(doc);
                sync.add_peer(SERVER.into());
                Phone {
                    person: Person::new(&format!("u{i}"), role),
                    sync,
                }
            })
            .collect();
        let mut world = World {
            server,
            phones,
            wire: VecDeque::new(),
            refused: Vec::new(),
        };
        for i in 0..world.phones.len() {
            world.server.add_peer(format!("phone-{i}"));
        }
        world
    }

    /// Everyone queues whatever sync messages they have.
    fn flush(&mut self) {
        for (i, phone) in self.phones.iter_mut().enumerate() {
            if let Some(bytes) = phone.sync.generate(&SERVER.to_string()) {
                self.wire.push_back((None, i, bytes));
            }
        }
        for (peer, bytes) in self.server.generate_all() {
            let i: usize = peer.trim_start_matches("phone-").parse().expect("phone");
            self.wire.push_back((Some(i), i, bytes));
        }
    }

    /// The server takes `run` from phone `from`, validating as the real server does.
    fn server_receives<D: AsRef<[u8]>>(
        &mut self,
        from: usize,
        run: &[D],
    ) -> Result<baton_core::sync::Received, ReceiveError<ValidationError>> {
        let auth = self.phones[from].auth();
        let registry = TemplateRegistry::shipped();
        self.server
            .receive_all(&format!("phone-{from}"), run, |applied| {
                validate_applied(
                    applied,
                    Known::default(),
                    &auth,
                    &registry,
                    T0 + 24 * HOUR,
                    &Limits::default(),
                )
                .map(|_| ())
            })
    }

    fn deliver(&mut self, to: Option<usize>, from: usize, bytes: &[u8]) {
        match to {
            None => {
                let result = self.server_receives(from, &[bytes]);
                match result {
                    Ok(_) => {}
                    Err(ReceiveError::Refused(e)) => self.refused.push(e),
                    Err(ReceiveError::Blocked) => {}
                    Err(e) => panic!("server could not apply a phone's message: {e}"),
                }
            }
            Some(i) => {
                self.phones[i]
                    .sync
                    .receive(&SERVER.to_string(), bytes, |_| Ok::<(), ()>(()))
                    .expect("phone applies");
            }
        }
    }

    /// Connections drop and come back: both ends start fresh sync states; then the network is
    /// reliable until everyone is quiet.
    fn reconnect_and_settle(&mut self) {
        self.wire.clear();
        for (i, phone) in self.phones.iter_mut().enumerate() {
            phone.sync.add_peer(SERVER.into());
            self.server.add_peer(format!("phone-{i}"));
        }
        self.settle();
    }

    /// A reliable network until everyone is quiet.
    fn settle(&mut self) {
        for _ in 0..200 {
            self.flush();
            if self.wire.is_empty() {
                return;
            }
            while let Some((to, from, bytes)) = self.wire.pop_front() {
                self.deliver(to, from, &bytes);
            }
        }
        panic!("sync did not settle");
    }

    fn events(doc: &Automerge) -> Vec<String> {
        let task = TaskDoc::from_automerge(doc.clone()).expect("task");
        let mut ids: Vec<String> = task
            .events()
            .expect("events")
            .events
            .into_iter()
            .map(|e| e.id.to_string())
            .collect();
        ids.sort();
        ids
    }
}

#[derive(Clone, Debug)]
enum Fault {
    Act { phone: usize, note: bool },
    Flush,
    Deliver,
    Drop,
    Duplicate,
    Swap,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => (0..3usize, any::<bool>()).prop_map(|(phone, note)| Fault::Act { phone, note }),
        3 => Just(Fault::Flush),
        4 => Just(Fault::Deliver),
        1 => Just(Fault::Drop),
        1 => Just(Fault::Duplicate),
        1 => Just(Fault::Swap),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn phones_and_server_converge_despite_lost_duplicated_and_reordered_messages(faults in prop::collection::vec(fault(), 1..60)) {
        let mut world = World::new(&["case_manager", "nurse", "pharmacist"]);
        let mut now = T0;
        for f in faults {
            match f {
                Fault::Act { phone, note } => {
                    now += MINUTE;
                    let body = if note { EventBody::Note { text: format!("at {now}") } } else { EventBody::Claimed {} };
                    world.phones[phone].act(now, body);
                }
                Fault::Flush => world.flush(),
                Fault::Deliver => if let Some((to, from, bytes)) = world.wire.pop_front() { world.deliver(to, from, &bytes) },
                Fault::Drop => { world.wire.pop_front(); }
                Fault::Duplicate => if let Some(m) = world.wire.front().cloned() { world.wire.push_back(m) },
                Fault::Swap => if world.wire.len() >= 2 { world.wire.swap(0, 1) },
            }
        }
        world.reconnect_and_settle();
        prop_assert!(world.refused.is_empty(), "honest phones are never refused: {:?}", world.refused);
        let server_events = World::events(world.server.doc());
        let mut heads = world.server.doc().get_heads();
        heads.sort();
        for (i, phone) in world.phones.iter().enumerate() {
            prop_assert_eq!(World::events(phone.sync.doc()), server_events.clone());
            let mut theirs = phone.sync.doc().get_heads();
            theirs.sort();
            prop_assert_eq!(&theirs, &heads);
            let peer = format!("phone-{i}");
            prop_assert!(world.server.in_sync_with(&peer));
        }
    }
}

#[test]
fn a_forged_change_is_refused_and_reaches_no_one() {
    let mut world = World::new(&["nurse", "nurse"]);
    // Phone 0 writes an event in phone 1's name, bypassing the typed API.
    let mut forged = world.phones[0].sync.doc().clone();
    let mut impostor = Person::new("u1", "nurse");
    impostor.author.device = "u1-phone".into();
    let mut task = TaskDoc::from_automerge(std::mem::take(&mut forged)).expect("task");
    impostor.act(
        &mut task,
        &template("discharge"),
        T0 + MINUTE,
        EventBody::Note {
            text: "not me".into(),
        },
    );
    let (_, _) = world.phones[0].sync.update(|doc| {
        let mut other = task.into_automerge();
        doc.merge(&mut other).expect("merge");
    });
    let before = world.server.doc().get_heads();
    let actor = world.server.doc().get_actor().clone();
    world.reconnect_and_settle();
    assert_eq!(world.refused.len(), 1, "refused once on this connection");
    assert!(matches!(
        world.refused[0],
        ValidationError::Impersonation { field: "user", .. }
    ));
    assert_eq!(world.server.doc().get_heads(), before, "nothing stored");
    assert_eq!(
        World::events(world.phones[1].sync.doc()).len(),
        1,
        "nothing relayed"
    );
    assert_eq!(
        world.server.doc().get_actor(),
        &actor,
        "the server writes as itself"
    );
    assert!(!world.server.is_poisoned());

    // The document taken back carries on: an honest phone's next event goes through.
    assert!(world.phones[1].act(
        T0 + 2 * MINUTE,
        EventBody::Note {
            text: "mine".into()
        }
    ));
    world.reconnect_and_settle();
    assert_eq!(
        world.refused.len(),
        2,
        "the forger's change is refused again"
    );
    assert_eq!(World::events(world.server.doc()).len(), 2);
    assert_eq!(World::events(world.phones[1].sync.doc()).len(), 2);
}

/// A peer whose change is accepted always hears the heads that include it, even when its next
/// message (sent before the server answered) already announced those heads: that answer is its
/// acknowledgment.
#[test]
fn accepted_changes_are_always_acknowledged() {
    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;
    use baton_core::sync::DocSync;

    let accept = |_: &Applied<'_>| Ok::<(), ()>(());
    // Fixed actors and times make the change hashes, and so the sync messages' bloom filters,
    // the same on every run: with random ones a false positive now and then lets a peer believe
    // the other already has a change, and the exchange takes another round than scripted here.
    let edit = |doc: &mut Automerge, actor: u8, value: i64| {
        doc.set_actor(automerge::ActorId::from([actor; 16]));
        doc.transact_with::<_, _, automerge::AutomergeError, _>(
            |_| automerge::transaction::CommitOptions::default().with_time(0),
            |tx| tx.put(automerge::ROOT, "n", value),
        )
        .unwrap();
    };
    let mut origin = Automerge::new();
    edit(&mut origin, 0, 0);
    let mut server = DocSync::new(origin.clone());
    let (a, b) = ("a".to_owned(), "b".to_owned());
    server.add_peer(a.clone());
    server.add_peer(b.clone());

    // Both phones start in sync with the server.
    let mut phones: Vec<(Automerge, sync::State)> = (0..2)
        .map(|_| (Automerge::new(), sync::State::new()))
        .collect();
    for (i, peer) in [&a, &b].into_iter().enumerate() {
        for _ in 0..6 {
            let (doc, state) = &mut phones[i];
            if let Some(m) = doc.generate_sync_message(state) {
                server.receive(peer, &m.encode(), accept).unwrap();
            }
            if let Some(bytes) = server.generate(peer) {
                let (doc, state) = &mut phones[i];
                doc.receive_sync_message(state, sync::Message::decode(&bytes).unwrap())
                    .unwrap();
            }
        }
    }

    // B changes the document; the server accepts it and has news for A.
    edit(&mut phones[1].0, 2, 1);
    let (doc, state) = &mut phones[1];
    let m = doc.generate_sync_message(state).unwrap();
    server.receive(&b, &m.encode(), accept).unwrap();
    let to_a = server.generate(&a).expect("A is told about B's change");

    // A changes it too and sends before reading the server's news; then reads it and answers.
    edit(&mut phones[0].0, 1, 2);
    let (doc, state) = &mut phones[0];
    let first = doc.generate_sync_message(state).unwrap().encode();
    doc.receive_sync_message(state, sync::Message::decode(&to_a).unwrap())
        .unwrap();
    let second = doc.generate_sync_message(state).unwrap().encode();
    server.receive(&a, &first, accept).unwrap();
    server.receive(&a, &second, accept).unwrap();

    // The server holds what A holds, and says so to A.
    let ack = server.generate(&a).expect("A's change is acknowledged");
    let (doc, state) = &mut phones[0];
    doc.receive_sync_message(state, sync::Message::decode(&ack).unwrap())
        .unwrap();
    let mut ours = doc.get_heads();
    ours.sort();
    let mut theirs = state.their_heads.clone().unwrap();
    theirs.sort();
    assert_eq!(ours, theirs);
    assert_eq!(server.doc().get_heads().len(), 2);
}

impl World {
    /// Phone `from`'s messages, received by the server as one run.
    fn deliver_run(&mut self, from: usize, run: &[Vec<u8>]) -> Result<usize, String> {
        self.server_receives(from, run)
            .map(|received| received.changes.len())
            .map_err(|e| e.to_string())
    }

    /// Phone `from` writes a note and sends what it has, without waiting for an answer.
    fn note_and_send(&mut self, from: usize, at: i64) -> Vec<u8> {
        assert!(self.phones[from].act(
            at,
            EventBody::Note {
                text: format!("at {at}")
            }
        ));
        self.phones[from]
            .sync
            .generate(&SERVER.to_string())
            .expect("a message with the new change")
    }
}

#[test]
fn a_run_of_messages_is_applied_and_acknowledged_as_one() {
    let mut world = World::new(&["nurse"]);
    world.reconnect_and_settle();
    let run: Vec<Vec<u8>> = (1..=3)
        .map(|i| world.note_and_send(0, T0 + i * MINUTE))
        .collect();
    assert_eq!(world.deliver_run(0, &run), Ok(3));
    assert_eq!(World::events(world.server.doc()).len(), 4);

    // One answer acknowledges all three.
    let ack = world
        .server
        .generate(&"phone-0".to_string())
        .expect("an ack");
    world.deliver(Some(0), 0, &ack);
    let mut ours = world.phones[0].sync.doc().get_heads();
    ours.sort();
    let mut server = world.server.doc().get_heads();
    server.sort();
    assert_eq!(ours, server);
    assert!(world.server.in_sync_with(&"phone-0".to_string()));
}

#[test]
fn one_bad_message_in_a_run_refuses_the_run() {
    let mut world = World::new(&["nurse"]);
    world.reconnect_and_settle();
    let before = world.server.doc().get_heads();
    world.note_and_send(0, T0 + MINUTE);
    // The phone's clock runs a day ahead of the server's: its stamp is refused.
    world.note_and_send(0, T0 + 72 * HOUR);
    // The run carries each change explicitly: the sync protocol's Bloom filter may, now and
    // then, let a generated message leave out a change it wrongly believes the server has.
    let changes = world.phones[0].sync.doc().get_changes(&before);
    let [good, bad] = changes.as_slice() else {
        panic!("two new changes: {}", changes.len());
    };
    let run = [
        carrying(vec![good.hash()], std::slice::from_ref(good)),
        carrying(vec![bad.hash()], std::slice::from_ref(bad)),
    ];
    let result = world.deliver_run(0, &run);
    assert!(
        result.as_ref().is_err_and(|e| e.contains("ahead")),
        "refused: {result:?}"
    );
    assert_eq!(
        world.server.doc().get_heads(),
        before,
        "nothing of the run kept"
    );
    assert_eq!(World::events(world.server.doc()).len(), 1);
    // The phone's sync starts over on the same connection: the server tells what it holds...
    let fresh = world
        .server
        .generate(&"phone-0".to_string())
        .expect("the sync starts over");
    let mut told = automerge::sync::Message::decode(&fresh)
        .expect("a sync message")
        .heads;
    told.sort();
    let mut held = before.clone();
    held.sort();
    assert_eq!(told, held);
    // ...but a phone that offers the refused changes again kept them: it hears no more of the
    // document on this connection, rather than the two asking each other for them forever.
    let again = world.deliver_run(0, &run);
    assert!(
        again.as_ref().is_err_and(|e| e.contains("refused earlier")),
        "{again:?}"
    );
    assert!(world.server.generate(&"phone-0".to_string()).is_none());
}

#[test]
fn a_phone_that_takes_a_refused_change_out_syncs_on() {
    let mut world = World::new(&["nurse"]);
    world.reconnect_and_settle();
    let before = world.server.doc().get_heads();
    // A stamp a day ahead of the server's clock is refused.
    let bad = world.note_and_send(0, T0 + 72 * HOUR);
    assert!(world.deliver_run(0, &[bad]).is_err());
    // The phone goes back to what the server holds (forgetting the refused stamp too) and
    // starts its sync over.
    let mut copy = world.server.doc().fork_at(&before).expect("fork");
    copy.set_actor(ActorId::random());
    world.phones[0].sync = DocSync::new(copy);
    world.phones[0].person.clock = baton_core::HlcClock::new();
    world.phones[0].sync.add_peer(SERVER.into());
    // Its next note goes through on the same connection, and the server acknowledges it.
    world.settle();
    let good = world.note_and_send(0, T0 + MINUTE);
    assert_eq!(world.deliver_run(0, &[good]), Ok(1));
    world.settle();
    assert_eq!(World::events(world.server.doc()).len(), 2);
    assert!(world.server.in_sync_with(&"phone-0".to_string()));
}

// --- Changes that are not causally ready, and bounded input -------------------------------------

fn nurse_auth() -> AuthContext {
    AuthContext {
        user: "rn.evans".into(),
        device: "rn.evans-phone".into(),
        roles: vec!["nurse".into()],
        units: vec!["4W".into()],
        system: false,
    }
}

fn validating(auth: &AuthContext) -> impl FnOnce(&Applied<'_>) -> Result<(), ValidationError> + '_ {
    move |applied| {
        validate_applied(
            applied,
            Known::default(),
            auth,
            &TemplateRegistry::shipped(),
            T0 + 24 * HOUR,
            &Limits::default(),
        )
        .map(|_| ())
    }
}

fn has_change(doc: &Automerge, hash: automerge::ChangeHash) -> bool {
    doc.get_change_meta_by_hash(&hash).is_some()
}

#[test]
fn a_change_whose_dependency_is_missing_is_held_and_never_applied_or_saved() {
    let (origin, mut phone) = task_and_replica();
    let mut nurse = Person::new("rn.evans", "nurse");
    let first = note(&mut nurse, &mut phone, T0 + MINUTE, "first");
    let second = note(&mut nurse, &mut phone, T0 + 2 * MINUTE, "second");
    let mut server = DocSync::new(origin);
    let peer = "phone".to_string();
    let auth = nurse_auth();

    let received = server
        .receive(
            &peer,
            &carrying(vec![second.hash()], std::slice::from_ref(&second)),
            validating(&auth),
        )
        .expect("an unready change is no refusal");
    assert!(received.changes.is_empty(), "nothing applied");
    assert_eq!(server.held(&peer), 1);
    assert!(!has_change(server.doc(), second.hash()));
    assert!(
        server.doc().get_missing_deps(&[]).is_empty(),
        "nothing queued in the document"
    );
    let saved = Automerge::load(&server.doc().save()).expect("load");
    assert!(!has_change(&saved, second.hash()) && saved.get_missing_deps(&[]).is_empty());

    // The server asks for what the held change depends on.
    let ask = server.generate(&peer).expect("an answer");
    let ask = automerge::sync::Message::decode(&ask).expect("decode");
    assert_eq!(ask.need, vec![first.hash()]);

    // It comes: both are judged together, and both are applied.
    let received = server
        .receive(
            &peer,
            &carrying(vec![second.hash()], std::slice::from_ref(&first)),
            validating(&auth),
        )
        .expect("accepted");
    let hashes: Vec<_> = received.changes.iter().map(|c| c.hash()).collect();
    assert_eq!(hashes, vec![first.hash(), second.hash()]);
    assert_eq!(server.held(&peer), 0);
    assert_eq!(server.doc().get_heads(), vec![second.hash()]);
}

#[test]
fn a_forged_change_held_for_its_dependency_is_refused_when_it_arrives() {
    let (origin, mut phone) = task_and_replica();
    // Written in another clinician's name on top of the nurse's own note.
    let (first, forged) = mine_then_forged(&mut phone);
    let mut server = DocSync::new(origin);
    let peer = "phone".to_string();
    let auth = nurse_auth();
    let before = server.doc().get_heads();

    server
        .receive(
            &peer,
            &carrying(vec![forged.hash()], std::slice::from_ref(&forged)),
            validating(&auth),
        )
        .expect("held");
    let refused = server.receive(
        &peer,
        &carrying(vec![forged.hash()], std::slice::from_ref(&first)),
        validating(&auth),
    );
    assert!(
        matches!(
            refused,
            Err(ReceiveError::Refused(ValidationError::Impersonation { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(server.doc().get_heads(), before, "neither change kept");
    assert_eq!(server.held(&peer), 0);
    assert!(!has_change(server.doc(), forged.hash()));
}

#[test]
fn a_stored_document_with_queued_changes_is_loaded_without_them() {
    let (origin, mut phone) = task_and_replica();
    let (first, forged) = mine_then_forged(&mut phone);
    // A snapshot as Automerge saves a document with a queued change: the change after it.
    let mut poisoned = origin.clone();
    poisoned.apply_changes([forged.clone()]).expect("queued");
    assert!(!poisoned.get_missing_deps(&[]).is_empty());
    let bytes = poisoned.save();
    let loaded = Automerge::load(&bytes).expect("load");
    assert!(
        !loaded.get_missing_deps(&[]).is_empty(),
        "the bytes carry it"
    );

    let mut server = DocSync::new(loaded);
    assert!(server.doc().get_missing_deps(&[]).is_empty());
    let peer = "phone".to_string();
    let auth = nurse_auth();
    let received = server
        .receive(
            &peer,
            &carrying(vec![first.hash()], std::slice::from_ref(&first)),
            validating(&auth),
        )
        .expect("the honest change alone is accepted");
    assert_eq!(received.changes.len(), 1);
    assert!(
        !has_change(server.doc(), forged.hash()),
        "the queued change never applied"
    );
    assert_eq!(server.doc().get_heads(), vec![first.hash()]);
}

#[test]
fn every_change_received_counts_against_the_limit() {
    let (origin, mut phone) = task_and_replica();
    let mut nurse = Person::new("rn.evans", "nurse");
    let withheld = note(&mut nurse, &mut phone, T0 + MINUTE, "withheld");
    let limit = 50;
    let chain: Vec<_> = (0..=limit)
        .map(|i| note(&mut nurse, &mut phone, T0 + MINUTE + i as i64, "more"))
        .collect();
    let limits = baton_core::sync::SyncLimits {
        max_changes: limit,
        ..Default::default()
    };
    let mut server = DocSync::with_limits(origin, limits);
    let peer = "phone".to_string();
    let auth = nurse_auth();
    let heads = vec![chain.last().expect("a chain").hash()];
    let result = server.receive(&peer, &carrying(heads, &chain), validating(&auth));
    assert!(
        matches!(result, Err(ReceiveError::TooManyChanges { count, .. }) if count == limit + 1),
        "{result:?}"
    );
    assert_eq!(server.held(&peer), 0);
    assert!(!has_change(server.doc(), withheld.hash()));
}

#[test]
fn changes_held_for_a_peer_are_bounded() {
    let (origin, mut phone) = task_and_replica();
    let mut nurse = Person::new("rn.evans", "nurse");
    let _withheld = note(&mut nurse, &mut phone, T0 + MINUTE, "withheld");
    let chain: Vec<_> = (0..20)
        .map(|i| note(&mut nurse, &mut phone, T0 + MINUTE + i, "more"))
        .collect();
    let limits = baton_core::sync::SyncLimits {
        max_held: 5,
        ..Default::default()
    };
    let mut server = DocSync::with_limits(origin, limits);
    let peer = "phone".to_string();
    let auth = nurse_auth();
    let heads = vec![chain.last().expect("a chain").hash()];
    server
        .receive(&peer, &carrying(heads, &chain), validating(&auth))
        .expect("held, not refused");
    assert_eq!(server.held(&peer), 5);
}

/// A phone's copy and sync state, driven with Automerge's own sync, as a stock client is.
struct RawPeer {
    doc: Automerge,
    state: automerge::sync::State,
}

#[test]
fn a_change_sent_without_its_dependency_after_a_bloom_miss_still_arrives() {
    use automerge::sync::SyncDoc;
    let (origin, mut phone) = task_and_replica();
    let mut server = DocSync::new(origin);
    let peer = "phone".to_string();
    let auth = nurse_auth();
    let mut raw = RawPeer {
        doc: phone.automerge().clone(),
        state: automerge::sync::State::new(),
    };
    // In sync first.
    for _ in 0..6 {
        if let Some(m) = raw.doc.generate_sync_message(&mut raw.state) {
            server
                .receive(&peer, &m.encode(), validating(&auth))
                .expect("in sync");
        }
        if let Some(bytes) = server.generate(&peer) {
            raw.doc
                .receive_sync_message(
                    &mut raw.state,
                    automerge::sync::Message::decode(&bytes).expect("decode"),
                )
                .expect("apply");
        }
    }
    let mut nurse = Person::new("rn.evans", "nurse");
    let first = note(&mut nurse, &mut phone, T0 + MINUTE, "first");
    let second = note(&mut nurse, &mut phone, T0 + 2 * MINUTE, "second");
    raw.doc
        .apply_changes([first.clone(), second.clone()])
        .expect("apply");

    // The phone believes the server has `first` (a bloom filter's false positive): it sends only
    // `second`, and never counts `first` as sent.
    let mut message = raw
        .doc
        .generate_sync_message(&mut raw.state)
        .expect("a message");
    message.changes = vec![second.raw_bytes().to_vec()].into();
    raw.state.sent_hashes.remove(&first.hash());
    server
        .receive(&peer, &message.encode(), validating(&auth))
        .expect("held");

    // Ordinary sync from here on brings both.
    for _ in 0..6 {
        if let Some(bytes) = server.generate(&peer) {
            raw.doc
                .receive_sync_message(
                    &mut raw.state,
                    automerge::sync::Message::decode(&bytes).expect("decode"),
                )
                .expect("apply");
        }
        if let Some(m) = raw.doc.generate_sync_message(&mut raw.state) {
            server
                .receive(&peer, &m.encode(), validating(&auth))
                .expect("accepted");
        }
    }
    assert!(has_change(server.doc(), first.hash()) && has_change(server.doc(), second.hash()));
    assert_eq!(server.held(&peer), 0);
}

#[test]
fn an_event_nested_too_deeply_is_refused_before_it_is_read() {
    let (origin, phone) = task_and_replica();
    let (changes, heads) = nested_event(phone, 5_000);
    let mut server = DocSync::new(origin);
    let before = server.doc().get_heads();
    let auth = nurse_auth();
    let result = server.receive(
        &"phone".to_string(),
        &carrying(heads, &changes),
        validating(&auth),
    );
    assert!(
        matches!(
            result,
            Err(ReceiveError::Refused(ValidationError::TooDeep { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(server.doc().get_heads(), before);
}

/// What a peer may send, for the property below: honest notes, forged ones, and the order and
/// grouping they arrive in.
#[derive(Clone, Debug)]
enum Sent {
    /// A note by the honest nurse, on top of everything she wrote so far.
    Honest,
    /// A note in another clinician's name, on top of everything so far.
    Forged,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever arrives in whatever order and grouping (dependencies late, missing, duplicated),
    /// the server's document holds exactly the changes validation accepted and never a queued
    /// one: no forged event ever; and from an honest phone, everything once it has all arrived.
    #[test]
    fn the_document_holds_only_accepted_changes_whatever_the_order(
        sent in prop::collection::vec(prop_oneof![3 => Just(Sent::Honest), 1 => Just(Sent::Forged)], 1..12),
        order in prop::collection::vec(0usize..64, 0..40),
        groups in prop::collection::vec(1usize..4, 1..20),
    ) {
        let (origin, mut phone) = task_and_replica();
        let mut nurse = Person::new("rn.evans", "nurse");
        let mut other = Person::new("rn.lopez", "nurse");
        other.author.device = "rn.evans-phone".into();
        let mut changes = Vec::new();
        for (i, s) in sent.iter().enumerate() {
            let at = T0 + (i as i64 + 1) * MINUTE;
            changes.push(match s {
                Sent::Honest => note(&mut nurse, &mut phone, at, "mine"),
                Sent::Forged => note(&mut other, &mut phone, at, "not mine"),
            });
        }
        // The arrival order: picks from the changes (repeats allowed), then everything once more
        // in the order written, as an honest resend would.
        let mut arrivals: Vec<automerge::Change> = order
            .iter()
            .map(|i| changes[i % changes.len()].clone())
            .collect();
        arrivals.extend(changes.iter().cloned());
        let origin_heads = origin.get_heads();
        let mut server = DocSync::new(origin);
        let peer = "phone".to_string();
        let auth = nurse_auth();
        let mut accepted = std::collections::BTreeSet::new();
        let mut next = 0;
        let mut group = groups.iter().cycle();
        while next < arrivals.len() {
            let n = (*group.next().expect("cycled")).min(arrivals.len() - next);
            let batch = &arrivals[next..next + n];
            next += n;
            let heads = vec![batch.last().expect("a change").hash()];
            match server.receive(&peer, &carrying(heads, batch), validating(&auth)) {
                Ok(received) => accepted.extend(received.changes.iter().map(|c| c.hash())),
                Err(ReceiveError::Blocked) => {}
                // A refused run starts the peer's sync over; offered again, it is ignored.
                Err(ReceiveError::Refused(_)) => {}
                Err(e) => prop_assert!(false, "unexpected: {e}"),
            }
            prop_assert!(server.doc().get_missing_deps(&[]).is_empty(), "nothing queued");
        }
        let stored: std::collections::BTreeSet<_> = server
            .doc()
            .get_changes(&origin_heads)
            .iter()
            .map(|c| c.hash())
            .collect();
        prop_assert_eq!(&stored, &accepted, "stored is exactly what was accepted");
        let task = TaskDoc::from_automerge(server.doc().clone()).expect("a task");
        let events = task.events().expect("events").events;
        prop_assert!(events.iter().all(|e| e.actor.user.as_str() != "rn.lopez"), "no forged event");
        if sent.iter().all(|s| matches!(s, Sent::Honest)) {
            prop_assert_eq!(stored.len(), changes.len(), "an honest phone's changes all arrive");
        }
    }
}

/// A peer a look found nothing to send is not asked again while nothing changes, and hears
/// every change that comes after: the server's own, another peer's, and none of a refused one.
#[test]
fn quiet_peers_still_hear_every_change() {
    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;
    use baton_core::sync::DocSync;

    let accept = |_: &Applied<'_>| Ok::<(), ()>(());
    let refuse = |_: &Applied<'_>| Err::<(), ()>(());
    let edit = |doc: &mut Automerge, key: &str, value: i64| {
        doc.transact::<_, _, automerge::AutomergeError>(|tx| tx.put(automerge::ROOT, key, value))
            .unwrap();
    };
    let mut origin = Automerge::new();
    edit(&mut origin, "start", 0);
    let mut server = DocSync::new(origin);
    let peers = ["a".to_owned(), "b".to_owned()];
    for peer in &peers {
        server.add_peer(peer.clone());
    }
    let mut phones: Vec<(Automerge, sync::State)> = (0..2)
        .map(|_| (Automerge::new(), sync::State::new()))
        .collect();
    // Rounds of every phone's message and the server's answers to everyone, until quiet.
    let settle = |server: &mut DocSync, phones: &mut Vec<(Automerge, sync::State)>| {
        for _ in 0..20 {
            let mut said = false;
            for (i, peer) in peers.iter().enumerate() {
                let (doc, state) = &mut phones[i];
                if !server.has_peer(peer) {
                    continue;
                }
                if let Some(m) = doc.generate_sync_message(state) {
                    server.receive(peer, &m.encode(), accept).unwrap();
                    said = true;
                }
            }
            for (peer, bytes) in server.generate_all() {
                let i = peers.iter().position(|p| *p == peer).unwrap();
                let (doc, state) = &mut phones[i];
                doc.receive_sync_message(state, sync::Message::decode(&bytes).unwrap())
                    .unwrap();
                said = true;
            }
            if !said {
                return;
            }
        }
        panic!("the peers did not settle");
    };
    let in_step = |server: &DocSync, phones: &[(Automerge, sync::State)]| {
        let mut want = server.doc().get_heads();
        want.sort();
        for (doc, _) in phones.iter().take(server.peers().count()) {
            let mut heads = doc.get_heads();
            heads.sort();
            assert_eq!(heads, want);
        }
    };

    settle(&mut server, &mut phones);
    in_step(&server, &phones);
    assert!(
        server.generate_all().is_empty(),
        "nothing to say when quiet"
    );

    // The server's own change reaches both.
    server.update(|doc| edit(doc, "server", 1));
    let news = server.generate_all();
    assert_eq!(news.len(), 2, "both are told");
    assert!(server.generate_all().is_empty(), "once, while in flight");
    for (peer, bytes) in news {
        let i = peers.iter().position(|p| *p == peer).unwrap();
        let (doc, state) = &mut phones[i];
        doc.receive_sync_message(state, sync::Message::decode(&bytes).unwrap())
            .unwrap();
    }
    settle(&mut server, &mut phones);
    in_step(&server, &phones);

    // A's change reaches B.
    edit(&mut phones[0].0, "a", 2);
    settle(&mut server, &mut phones);
    in_step(&server, &phones);

    // B's refused change is taken back out; A hears nothing of it, and B is told to sync again.
    let before = server.doc().get_heads();
    edit(&mut phones[1].0, "b", 3);
    let (doc, state) = &mut phones[1];
    let m = doc.generate_sync_message(state).unwrap();
    assert!(server.receive(&peers[1], &m.encode(), refuse).is_err());
    assert_eq!(server.doc().get_heads(), before);
    assert!(
        server.generate(&peers[0]).is_none(),
        "nothing new for A after a refusal"
    );

    // And A still hears the next change: the server speaks first, and the two go on until
    // neither has more to say (a Bloom filter's false positive can take a second round).
    server.update(|doc| edit(doc, "server", 4));
    let mut to_a = Some(
        server
            .generate(&peers[0])
            .expect("A hears the server's change"),
    );
    let (doc, state) = &mut phones[0];
    for _ in 0..10 {
        let Some(bytes) = to_a.take() else { break };
        doc.receive_sync_message(state, sync::Message::decode(&bytes).unwrap())
            .unwrap();
        if let Some(m) = doc.generate_sync_message(state) {
            server.receive(&peers[0], &m.encode(), accept).unwrap();
        }
        to_a = server.generate(&peers[0]);
    }
    assert_eq!(
        doc.get(automerge::ROOT, "server").unwrap().unwrap().0,
        automerge::Value::from(4)
    );

    // B's connection ends. Once A is quiet again, A loses its copy and asks anew on the same
    // connection: it gets all of it.
    server.remove_peer(&peers[1]);
    settle(&mut server, &mut phones);
    in_step(&server, &phones);
    assert!(server.generate_all().is_empty(), "quiet");
    phones[0] = (Automerge::new(), sync::State::new());
    settle(&mut server, &mut phones);
    in_step(&server, &phones);
    assert!(phones[0].0.get(automerge::ROOT, "a").unwrap().is_some());
}
