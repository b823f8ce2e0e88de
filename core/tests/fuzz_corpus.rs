//! The committed fuzz corpus (`core/fuzz/corpus/<target>/`), replayed through the fuzz targets'
//! own bodies in `baton_core::fuzz`: every input fuzzing kept is checked on every build, on
//! stable, without cargo-fuzz.

use std::path::{Path, PathBuf};

/// Run every corpus file of `target` through `body`; a failure names the file.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no corpus for `{target}` in {}",
        dir.display()
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| body(&bytes)).is_err() {
            panic!("`{target}` fails on {}", file.display());
        }
    }
}

#[test]
fn frame_corpus() {
    replay("frame", baton_core::fuzz::frame);
}

#[test]
fn sync_run_corpus() {
    replay("sync_run", baton_core::fuzz::sync_run);
}

#[test]
fn validate_corpus() {
    replay("validate", baton_core::fuzz::validate);
}

#[test]
fn template_corpus() {
    replay("template", baton_core::fuzz::template);
}

// --- seeds ------------------------------------------------------------------------------------

/// Write the hand-made seeds into the corpus (`seed-*` files; fuzzing adds the rest):
/// `cargo test -p baton-core --test fuzz_corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes files; run by hand when the fuzz targets' input formats change"]
fn write_seeds() {
    for (target, name, bytes) in seeds::all() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
    }
}

/// The seeds, as `(target, name, bytes)`. The byte programs follow the operation codes of
/// `baton_core::fuzz::sync_run` and `validate`.
mod seeds {
    use automerge::{ActorId, Change};
    use baton_core::event::EventBody;
    use baton_core::ids::EventId;
    use baton_core::sync::DocumentId;
    use baton_core::sync::message::{Message, PeerMetadata};
    use baton_core::{Author, HlcClock, TaskDoc, TemplateRegistry};

    type Seed = (&'static str, String, Vec<u8>);

    pub(super) fn all() -> Vec<Seed> {
        let mut seeds = Vec::new();
        seeds.extend(frames());
        seeds.extend(sync_runs());
        seeds.extend(validations());
        seeds.extend(templates());
        seeds
    }

    /// A change the nurse (`rn.evans`) writes on top of the fuzzed task: a note.
    fn nurse_note() -> Change {
        let templates = TemplateRegistry::shipped();
        let template = templates.latest(&"discharge".into()).expect("shipped");
        let mut task = TaskDoc::from_automerge(
            baton_core::fuzz::fuzzed_task()
                .fork()
                .with_actor(ActorId::from([7; 16])),
        )
        .expect("a task");
        let before = task.heads();
        let nurse = Author::new("rn.evans", "nurse", "rn.evans-phone");
        task.append_with_id(
            template,
            &nurse,
            &mut HlcClock::new(),
            1_767_596_400_000 + 120_000,
            EventId::new("seed-note"),
            EventBody::Note {
                text: "called family".into(),
            },
        )
        .expect("the nurse may write a note");
        let mut changes = task.automerge().get_changes(&before);
        changes.pop().expect("one change")
    }

    /// A change by the nurse on top of `deps` (the fuzzed task's heads when empty), by Automerge
    /// actor `actor`: a note whose event (or payload) holds `depth` maps nested in one another.
    fn nurse_change(
        actor: u8,
        deps: &[Change],
        id: &str,
        depth: usize,
        in_payload: bool,
    ) -> Change {
        use automerge::transaction::Transactable;
        use automerge::{ObjType, ROOT, ReadDoc};
        let mut doc = baton_core::fuzz::fuzzed_task()
            .fork()
            .with_actor(ActorId::from([actor; 16]));
        doc.apply_changes(deps.iter().cloned()).expect("deps apply");
        let before = doc.get_heads();
        let events = doc.get(ROOT, "events").expect("get").expect("events").1;
        let at = doc.length(&events);
        let wall = 1_767_596_400_000 + 60_000 * i64::try_from(at).expect("small");
        let hlc = baton_core::Hlc::new(wall, 0).to_string();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            let event = tx.insert_object(&events, at, ObjType::Map)?;
            tx.put(&event, "id", id)?;
            tx.put(&event, "kind", "note")?;
            let actor = tx.put_object(&event, "actor", ObjType::Map)?;
            tx.put(&actor, "user", "rn.evans")?;
            tx.put(&actor, "role", "nurse")?;
            tx.put(&event, "device", "rn.evans-phone")?;
            tx.put(&event, "device_time", wall)?;
            tx.put(&event, "hlc", hlc.as_str())?;
            let payload = tx.put_object(&event, "payload", ObjType::Map)?;
            tx.put(&payload, "text", "deep")?;
            let mut parent = if in_payload { payload } else { event };
            for _ in 0..depth {
                parent = tx.put_object(&parent, "nested", ObjType::Map)?;
            }
            Ok(())
        })
        .expect("written");
        doc.get_changes(&before).pop().expect("one change")
    }

    pub(super) fn known_crashes() -> Vec<Seed> {
        let chunk = |c: &Change| [vec![CHUNK, 1], with_len(c.raw_bytes())].concat();
        let mut crashes = Vec::new();
        for depth in [300usize, 1_000, 5_000] {
            let deep = nurse_change(9, &[], "deep", depth, true);
            crashes.push((
                "validate",
                format!("nested-{depth}-maps-in-payload"),
                [vec![NURSE, 60, 0, V_CHANGE], with_len(deep.raw_bytes())].concat(),
            ));
            let deep = nurse_change(9, &[], "deep", depth, false);
            crashes.push((
                "sync_run",
                format!("nested-{depth}-maps-in-event"),
                [chunk(&deep), vec![DELIVER, NURSE]].concat(),
            ));
        }
        // The pharmacist's connection sends the nurse's note Y without the note X it follows: Y
        // waits inside Automerge, unvalidated. The nurse then sends X; Y comes out with it and
        // is judged as the nurse's.
        let x = nurse_change(9, &[], "x", 0, true);
        let y = nurse_change(9, std::slice::from_ref(&x), "y", 0, true);
        crashes.push((
            "sync_run",
            "orphan-accepted-on-another-peers-authority".into(),
            [
                chunk(&y),
                vec![DELIVER, PHARMACIST],
                chunk(&x),
                vec![DELIVER, NURSE],
            ]
            .concat(),
        ));
        crashes
    }

    fn with_len(bytes: &[u8]) -> Vec<u8> {
        let n = u16::try_from(bytes.len()).expect("short");
        let mut out = n.to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn frames() -> Vec<Seed> {
        let doc = DocumentId::from_bytes([0x5e; 16]);
        let meta = PeerMetadata {
            storage_id: Some("3760df37-a4c6-4f66-9ecd-732039a9385d".into()),
            is_ephemeral: false,
        };
        let sync = automerge::sync::Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: Vec::new(),
            changes: vec![nurse_note().raw_bytes().to_vec()].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
        .encode();
        let messages = [
            (
                "join",
                Message::Join {
                    sender_id: "peer-a".into(),
                    peer_metadata: meta.clone(),
                    supported_protocol_versions: Some(vec!["1".into()]),
                },
            ),
            (
                "peer",
                Message::Peer {
                    sender_id: "baton".into(),
                    target_id: "peer-a".into(),
                    peer_metadata: PeerMetadata::default(),
                    selected_protocol_version: "1".into(),
                    server_time: Some(1_767_596_400_000),
                },
            ),
            (
                "error",
                Message::Error {
                    sender_id: "baton".into(),
                    target_id: Some("peer-a".into()),
                    message: "unsupported protocol version".into(),
                },
            ),
            (
                "request",
                Message::Request {
                    sender_id: "peer-a".into(),
                    target_id: "baton".into(),
                    document_id: doc,
                    data: sync.clone(),
                },
            ),
            (
                "sync",
                Message::Sync {
                    sender_id: "peer-a".into(),
                    target_id: "baton".into(),
                    document_id: doc,
                    data: sync,
                },
            ),
            (
                "doc-unavailable",
                Message::DocUnavailable {
                    sender_id: "baton".into(),
                    target_id: "peer-a".into(),
                    document_id: doc,
                },
            ),
            (
                "ephemeral",
                Message::Ephemeral {
                    sender_id: "peer-a".into(),
                    target_id: "baton".into(),
                    document_id: doc,
                    data: vec![0xa0],
                    count: 7,
                    session_id: "s1".into(),
                },
            ),
            (
                "other",
                Message::Other {
                    kind: "remote-heads-changed".into(),
                    sender_id: Some("peer-a".into()),
                },
            ),
        ];
        messages
            .into_iter()
            .map(|(name, m)| ("frame", name.to_owned(), m.encode()))
            .collect()
    }

    // sync_run operation codes (the first byte of each operation, modulo 11).
    const ACT: u8 = 0;
    const NEST: u8 = 2;
    const FORGE: u8 = 3;
    const SEND: u8 = 4;
    const RAW: u8 = 6;
    const CHUNK: u8 = 7;
    const DELIVER: u8 = 8;
    const PULL: u8 = 9;
    const RECONNECT: u8 = 10;
    // People.
    const PHYSICIAN: u8 = 0;
    const CASE_MANAGER: u8 = 1;
    const NURSE: u8 = 2;
    const PHARMACIST: u8 = 3;
    // Typed bodies.
    const NOTE: u8 = 0;
    const CLAIM: u8 = 1;
    const ACK: u8 = 2;
    const STEP_DONE: u8 = 4;

    fn note(by: u8, text: &str) -> Vec<u8> {
        let mut op = vec![ACT, by, 1, NOTE, u8::try_from(text.len()).expect("short")];
        op.extend_from_slice(text.as_bytes());
        op
    }

    fn send_all(from: u8) -> Vec<u8> {
        vec![SEND, from, 0, 0, 0]
    }

    fn sync_runs() -> Vec<Seed> {
        let mut programs: Vec<(String, Vec<u8>)> = vec![
            (
                "claim-and-acknowledge".into(),
                [
                    vec![ACT, CASE_MANAGER, 1, CLAIM],
                    vec![ACT, CASE_MANAGER, 1, ACK],
                    send_all(CASE_MANAGER),
                    vec![DELIVER, CASE_MANAGER],
                ]
                .concat(),
            ),
            (
                "out-of-causal-order".into(),
                [
                    note(NURSE, "one"),
                    note(NURSE, "two"),
                    note(NURSE, "three"),
                    // The first withheld, the rest reversed over three messages.
                    vec![SEND, NURSE, 0b001, 1, 2],
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "withheld-then-sent".into(),
                [
                    note(NURSE, "one"),
                    note(NURSE, "two"),
                    vec![SEND, NURSE, 0b001, 0, 0],
                    vec![DELIVER, NURSE],
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "relayed-by-another".into(),
                [
                    note(NURSE, "mine"),
                    send_all(NURSE),
                    vec![DELIVER, PHARMACIST],
                ]
                .concat(),
            ),
            (
                "step-with-fields".into(),
                [
                    vec![ACT, PHYSICIAN, 2, STEP_DONE, 0, 1],
                    send_all(PHYSICIAN),
                    vec![DELIVER, PHYSICIAN],
                ]
                .concat(),
            ),
            (
                "concurrent-work".into(),
                [
                    vec![ACT, CASE_MANAGER, 1, CLAIM],
                    send_all(CASE_MANAGER),
                    vec![DELIVER, CASE_MANAGER],
                    vec![PULL, NURSE, 1],
                    note(NURSE, "after the claim"),
                    note(PHYSICIAN, "offline"),
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                    send_all(PHYSICIAN),
                    vec![DELIVER, PHYSICIAN],
                ]
                .concat(),
            ),
            (
                "refused-then-reconnected".into(),
                [
                    vec![FORGE, NURSE, 0, 2],
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                    vec![PULL, NURSE, 0],
                    vec![RECONNECT, 1, NURSE],
                    note(NURSE, "honest again"),
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "nested-payload".into(),
                [
                    vec![NEST, NURSE, 20, 0, 1],
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "nested-event".into(),
                [
                    vec![NEST, NURSE, 20, 0, 0],
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "raw-message".into(),
                [
                    vec![RAW],
                    with_len(&[0x42, 0, 0, 0, 1, 2, 3]),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "raw-chunk".into(),
                [
                    vec![CHUNK, 1],
                    with_len(nurse_note().raw_bytes()),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
            (
                "mutated-change".into(),
                [
                    note(NURSE, "to be mangled"),
                    vec![CHUNK, 0, 0, 1, 40, 0, 0xff, 90, 0, 0x01],
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ),
        ];
        for kind in 0..10u8 {
            programs.push((
                format!("forgery-{kind}"),
                [
                    vec![FORGE, NURSE, 0, kind],
                    send_all(NURSE),
                    vec![DELIVER, NURSE],
                ]
                .concat(),
            ));
        }
        programs
            .into_iter()
            .map(|(name, bytes)| ("sync_run", name, bytes))
            .collect()
    }

    // validate operation codes (modulo 8).
    const V_CHANGE: u8 = 0;
    const V_JSON: u8 = 1;
    const V_SHAPED: u8 = 2;
    const V_TYPED: u8 = 3;
    const V_OFFLINE: u8 = 4;
    const V_FORGE: u8 = 5;
    const V_COMMIT: u8 = 6;
    const V_EDIT: u8 = 7;

    fn validations() -> Vec<Seed> {
        // Header: who validates (0..5, 5 the server), then the clock in minutes after the task
        // was opened (two bytes).
        let nurse_at_an_hour = vec![NURSE, 60, 0];
        let note = nurse_note();
        let json = br#"{"id":"j1","kind":"note","actor":{"user":"rn.evans","role":"nurse"},"device":"rn.evans-phone","device_time":1767596460000,"hlc":"001767596460000-000000","payload":{"text":"hi"}}"#;
        let programs: Vec<(&str, Vec<u8>)> = vec![
            (
                "change-bytes",
                [
                    nurse_at_an_hour.clone(),
                    vec![V_CHANGE],
                    with_len(note.raw_bytes()),
                ]
                .concat(),
            ),
            (
                "change-bytes-from-another",
                [
                    vec![PHARMACIST, 60, 0, V_CHANGE],
                    with_len(note.raw_bytes()),
                ]
                .concat(),
            ),
            (
                "json-event",
                [nurse_at_an_hour.clone(), vec![V_JSON], with_len(json)].concat(),
            ),
            (
                "shaped-event",
                [
                    nurse_at_an_hour.clone(),
                    vec![V_SHAPED, NURSE, 9, 2, 0, 0, 2, 0, 0, 2, 1, 0],
                ]
                .concat(),
            ),
            (
                "typed-then-judged",
                [
                    vec![CASE_MANAGER, 60, 0],
                    vec![V_TYPED, CASE_MANAGER, 30, CLAIM],
                    vec![V_TYPED, CASE_MANAGER, 20, ACK],
                ]
                .concat(),
            ),
            (
                "offline-work",
                [
                    vec![CASE_MANAGER, 60, 0],
                    vec![V_COMMIT],
                    vec![V_TYPED, CASE_MANAGER, 30, CLAIM],
                    vec![V_OFFLINE, NURSE, 40, NOTE, 3, b'o', b'f', b'f', 9],
                ]
                .concat(),
            ),
            (
                "forgery",
                [nurse_at_an_hour.clone(), vec![V_FORGE, NURSE, 0, 0]].concat(),
            ),
            (
                "raw-edit",
                [nurse_at_an_hour.clone(), vec![V_EDIT, 0, 1, 0]].concat(),
            ),
            (
                "server-validates",
                [
                    vec![5, 60, 0],
                    vec![V_TYPED, PHYSICIAN, 10, STEP_DONE, 0, 1],
                ]
                .concat(),
            ),
        ];
        programs
            .into_iter()
            .map(|(name, bytes)| ("validate", name.to_owned(), bytes))
            .collect()
    }

    fn templates() -> Vec<Seed> {
        let mut seeds = Vec::new();
        for (file, text) in baton_core::shipped::FILES {
            let name = file.trim_end_matches(".toml");
            seeds.push((
                "template",
                format!("{name}-toml"),
                [&[0u8][..], text.as_bytes()].concat(),
            ));
        }
        for template in TemplateRegistry::shipped().iter() {
            let json = serde_json::to_string(&**template).expect("json");
            seeds.push((
                "template",
                format!("{}-json", template.id),
                [&[1u8][..], json.as_bytes()].concat(),
            ));
        }
        seeds
    }
}

/// Write the inputs in `core/fuzz/crashes/` that are built rather than found (they need valid
/// change bytes no mutation would make):
/// `cargo test -p baton-core --test fuzz_corpus -- --ignored write_known_crashes`.
#[test]
#[ignore = "writes files; run by hand"]
fn write_known_crashes() {
    for (target, name, bytes) in seeds::known_crashes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/crashes")
            .join(target);
        std::fs::create_dir_all(&dir).expect("crashes directory");
        std::fs::write(dir.join(name), bytes).expect("input written");
    }
}
