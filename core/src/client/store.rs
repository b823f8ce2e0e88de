//! The device's local store: every document and a little metadata in one encrypted file.
//!
//! ```text
//! file   = MAGIC (8 bytes) · VERSION (u32 LE) · check · record*
//! record = length (u32 LE, of what follows) · nonce (24 random bytes) · ciphertext
//! ```
//!
//! Each record is one entry (a document chunk or a metadata value), sealed with
//! XChaCha20-Poly1305 under the 32-byte key the app keeps in the Keychain/Keystore; the header
//! is the associated data of every record. The first record (`check`) holds a known value, so a wrong key is told apart from a damaged
//! file even when the store holds nothing else.
//!
//! Writes append one record and `fsync` before returning. A record cut short by a crash (the
//! file ends inside it) is dropped when the store is opened; a complete record that fails
//! authentication is an error naming the file. When the file has grown well beyond what it
//! holds, it is rewritten (temporary file, `fsync`, rename) with one record per document and
//! per metadata key.
//!
//! A document is kept as the concatenation of the chunks written for it: a saved document
//! followed by incremental changes, which [`automerge::Automerge::load`] reads as one.

use crate::sync::DocumentId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Identifies a Baton store file.
const MAGIC: [u8; 8] = *b"BATONSTR";
/// The format this code writes and reads.
const VERSION: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The plaintext of the `check` record.
const CHECK: &[u8] = b"baton local store";
/// The largest record accepted (a sealed document of 256 MiB is far beyond any task).
const MAX_RECORD: usize = 256 << 20;
/// Files smaller than this are never compacted.
const COMPACT_MIN: u64 = 1 << 20;

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a Baton store", path = path.display())]
    NotAStore { path: PathBuf },
    #[error("{path} was written in store format {found}; this version reads format {VERSION}", path = path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("{path} cannot be read with this key (a wrong key, or another device's file)", path = path.display())]
    WrongKey { path: PathBuf },
    #[error("{path} is damaged: the record at byte {offset} {problem}", path = path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: &'static str,
    },
    #[error("{path} is open in another client", path = path.display())]
    Locked { path: PathBuf },
    #[error("a record of {0} bytes is larger than the store accepts")]
    TooLarge(usize),
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// One record's content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// The known value that proves the key.
    Check,
    /// Everything held of a document, replacing what was held before.
    Snapshot(DocumentId, Vec<u8>),
    /// More of a document: appended to what is held.
    Changes(DocumentId, Vec<u8>),
    /// The document is no longer held.
    Remove(DocumentId),
    /// A metadata value; `None` removes the key.
    Meta(String, Option<Vec<u8>>),
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Entry::Check => {
                out.push(0);
                out.extend_from_slice(CHECK);
            }
            Entry::Snapshot(id, bytes) | Entry::Changes(id, bytes) => {
                out.push(if matches!(self, Entry::Snapshot(..)) {
                    1
                } else {
                    2
                });
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(bytes);
            }
            Entry::Remove(id) => {
                out.push(3);
                out.extend_from_slice(id.as_bytes());
            }
            Entry::Meta(key, value) => {
                out.push(if value.is_some() { 4 } else { 5 });
                // Keys are short names chosen by the client; longer ones are cut, never wrapped.
                let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
                out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                out.extend_from_slice(key);
                if let Some(value) = value {
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let (&kind, rest) = bytes.split_first()?;
        let doc = |rest: &[u8]| -> Option<(DocumentId, Vec<u8>)> {
            let id: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            Some((DocumentId::from_bytes(id), rest[16..].to_vec()))
        };
        let meta = |rest: &[u8]| -> Option<(String, Vec<u8>)> {
            let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
            let key = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
            Some((key.to_owned(), rest[2 + len..].to_vec()))
        };
        Some(match kind {
            0 if rest == CHECK => Entry::Check,
            1 => doc(rest).map(|(id, b)| Entry::Snapshot(id, b))?,
            2 => doc(rest).map(|(id, b)| Entry::Changes(id, b))?,
            3 => doc(rest)
                .filter(|(_, b)| b.is_empty())
                .map(|(id, _)| Entry::Remove(id))?,
            4 => meta(rest).map(|(k, v)| Entry::Meta(k, Some(v)))?,
            5 => meta(rest)
                .filter(|(_, v)| v.is_empty())
                .map(|(k, _)| Entry::Meta(k, None))?,
            _ => return None,
        })
    }
}

/// The local store. See the [module documentation](self) for the file format.
pub struct Store {
    path: PathBuf,
    cipher: XChaCha20Poly1305,
    /// The open, locked file; `None` after [`Store::wipe`] until something is written again.
    file: Option<File>,
    /// The file's length: where the next record goes.
    len: u64,
    docs: BTreeMap<DocumentId, Vec<Vec<u8>>>,
    meta: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("docs", &self.docs.len())
            .field("meta", &self.meta.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open the store at `path` with `key`, creating it if there is no file.
    pub fn open(path: impl Into<PathBuf>, key: &[u8; 32]) -> Result<Store, StoreError> {
        let mut store = Store {
            path: path.into(),
            cipher: XChaCha20Poly1305::new(key.into()),
            file: None,
            len: 0,
            docs: BTreeMap::new(),
            meta: BTreeMap::new(),
        };
        let file = match OpenOptions::new().read(true).write(true).open(&store.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                store.rewrite()?;
                return Ok(store);
            }
            Err(e) => return Err(store.io(e)),
        };
        lock(&file, &store.path)?;
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes).map_err(|e| store.io(e))?;
        match store.replay(&bytes)? {
            // Cut short while it was being created: nothing was ever stored in it.
            None => store.rewrite()?,
            Some(good) => {
                if good < bytes.len() {
                    // A record cut short by a crash: drop it so the next one lands cleanly.
                    file.set_len(good as u64).map_err(|e| store.io(e))?;
                    file.sync_all().map_err(|e| store.io(e))?;
                }
                store.len = good as u64;
                store.file = Some(file);
            }
        }
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes (0 after a wipe).
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The documents held.
    pub fn doc_ids(&self) -> impl Iterator<Item = DocumentId> + '_ {
        self.docs.keys().copied()
    }

    /// Everything held of a document, loadable with [`automerge::Automerge::load`].
    pub fn doc(&self, id: &DocumentId) -> Option<Vec<u8>> {
        self.docs.get(id).map(|chunks| chunks.concat())
    }

    /// How many chunks a document is held in (1 after a snapshot or a compaction).
    pub fn chunks(&self, id: &DocumentId) -> usize {
        self.docs.get(id).map_or(0, Vec::len)
    }

    /// Replace what is held of a document with `bytes` (an Automerge save).
    pub fn put_doc(&mut self, id: DocumentId, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(Entry::Snapshot(id, bytes.to_vec()))
    }

    /// Add `bytes` (incremental Automerge changes) to what is held of a document.
    pub fn append_doc(&mut self, id: DocumentId, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.write(Entry::Changes(id, bytes.to_vec()))
    }

    /// Forget a document.
    pub fn remove_doc(&mut self, id: DocumentId) -> Result<(), StoreError> {
        if !self.docs.contains_key(&id) {
            return Ok(());
        }
        self.write(Entry::Remove(id))
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&[u8]> {
        self.meta.get(key).map(Vec::as_slice)
    }

    /// Set a metadata value (keys are short names, at most 65,535 bytes).
    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if self.meta(key) == Some(value) {
            return Ok(());
        }
        self.write(Entry::Meta(key.to_owned(), Some(value.to_vec())))
    }

    /// Remove a metadata value.
    pub fn remove_meta(&mut self, key: &str) -> Result<(), StoreError> {
        if !self.meta.contains_key(key) {
            return Ok(());
        }
        self.write(Entry::Meta(key.to_owned(), None))
    }

    /// Rewrite the file with one record per document and metadata key.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        self.rewrite()
    }

    /// Delete everything: the file is truncated, synced and removed, and the store left empty.
    /// Writing to the store afterwards starts a new file.
    pub fn wipe(&mut self) -> Result<(), StoreError> {
        self.docs.clear();
        self.meta.clear();
        self.len = 0;
        if let Some(file) = self.file.take() {
            file.set_len(0).map_err(|e| self.io(e))?;
            file.sync_all().map_err(|e| self.io(e))?;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(e)),
        }
        self.sync_dir()
    }

    /// Read the file's records into memory. Returns the length of the well-formed prefix, or
    /// `None` if the file ends before its `check` record does.
    fn replay(&mut self, bytes: &[u8]) -> Result<Option<usize>, StoreError> {
        let header = header();
        let have = &bytes[..bytes.len().min(HEADER_LEN)];
        if have[..have.len().min(MAGIC.len())] != MAGIC[..have.len().min(MAGIC.len())] {
            return Err(StoreError::NotAStore {
                path: self.path.clone(),
            });
        }
        if bytes.len() < HEADER_LEN {
            return Ok(None);
        }
        if bytes[..HEADER_LEN] != header {
            let found = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            return Err(StoreError::Version {
                path: self.path.clone(),
                found,
            });
        }
        let mut at = HEADER_LEN;
        let mut first = true;
        while let Some(sealed) = record_at(bytes, at) {
            let sealed = sealed.map_err(|problem| self.corrupt(at, problem))?;
            let plain = self.open_record(sealed);
            let entry = match plain.as_deref().map(Entry::decode) {
                Some(Some(entry)) => entry,
                Some(None) => return Err(self.corrupt(at, "is not a store entry")),
                None if first => {
                    return Err(StoreError::WrongKey {
                        path: self.path.clone(),
                    });
                }
                None => return Err(self.corrupt(at, "failed authentication")),
            };
            if first != (entry == Entry::Check) {
                return Err(self.corrupt(at, "is out of place"));
            }
            first = false;
            self.apply(entry);
            at += 4 + sealed.len();
        }
        Ok((!first).then_some(at))
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Check => {}
            Entry::Snapshot(id, bytes) => {
                self.docs.insert(id, vec![bytes]);
            }
            Entry::Changes(id, bytes) => self.docs.entry(id).or_default().push(bytes),
            Entry::Remove(id) => {
                self.docs.remove(&id);
            }
            Entry::Meta(key, Some(value)) => {
                self.meta.insert(key, value);
            }
            Entry::Meta(key, None) => {
                self.meta.remove(&key);
            }
        }
    }

    /// Append one record and sync it, then apply it in memory.
    fn write(&mut self, entry: Entry) -> Result<(), StoreError> {
        if self.file.is_none() {
            self.rewrite()?;
        }
        let record = self.seal(&entry.encode())?;
        let path = self.path.clone();
        let file = self.file.as_mut().expect("a file was just written");
        let written = file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| file.write_all(&record))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Leave no half record for the next append to land behind.
            let _ = file.set_len(self.len);
            return Err(StoreError::Io { path, source: e });
        }
        self.len += record.len() as u64;
        self.apply(entry);
        if self.len > COMPACT_MIN && self.len > 2 * self.live_len() {
            self.rewrite()?;
        }
        Ok(())
    }

    /// About how large the file would be if it were compacted now.
    fn live_len(&self) -> u64 {
        let overhead = (4 + NONCE_LEN + TAG_LEN + 1) as u64;
        let docs: u64 = self
            .docs
            .values()
            .map(|chunks| overhead + 16 + chunks.iter().map(|c| c.len() as u64).sum::<u64>())
            .sum();
        let meta: u64 = self
            .meta
            .iter()
            .map(|(k, v)| overhead + 2 + (k.len() + v.len()) as u64)
            .sum();
        (HEADER_LEN as u64) + overhead + CHECK.len() as u64 + docs + meta
    }

    /// Write the whole store to a temporary file, sync it and rename it over the store.
    fn rewrite(&mut self) -> Result<(), StoreError> {
        let mut bytes = header().to_vec();
        bytes.extend(self.seal(&Entry::Check.encode())?);
        for (id, chunks) in &self.docs {
            bytes.extend(self.seal(&Entry::Snapshot(*id, chunks.concat()).encode())?);
        }
        for (key, value) in &self.meta {
            bytes.extend(self.seal(&Entry::Meta(key.clone(), Some(value.clone())).encode())?);
        }
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let written = (|| {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok::<_, io::Error>(file)
        })();
        let file = written.map_err(|e| StoreError::Io {
            path: temp.clone(),
            source: e,
        })?;
        lock(&file, &temp)?;
        fs::rename(&temp, &self.path).map_err(|e| self.io(e))?;
        self.sync_dir()?;
        for chunks in self.docs.values_mut() {
            if chunks.len() > 1 {
                *chunks = vec![chunks.concat()];
            }
        }
        self.file = Some(file);
        self.len = bytes.len() as u64;
        Ok(())
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &header(),
                },
            )
            .map_err(|_| StoreError::TooLarge(plain.len()))?;
        let len = NONCE_LEN + sealed.len();
        if len > MAX_RECORD {
            return Err(StoreError::TooLarge(plain.len()));
        }
        let mut record = Vec::with_capacity(4 + len);
        record.extend_from_slice(&(len as u32).to_le_bytes());
        record.extend_from_slice(&nonce);
        record.extend_from_slice(&sealed);
        Ok(record)
    }

    /// The plaintext of a sealed record (nonce · ciphertext), if it authenticates.
    fn open_record(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &header(),
                },
            )
            .ok()
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        // Directories can be opened and synced on Unix only; elsewhere the rename is what the
        // platform offers.
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::Io {
                    path: dir.to_path_buf(),
                    source: e,
                })?;
        }
        Ok(())
    }

    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, offset: usize, problem: &'static str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            offset: offset as u64,
            problem,
        }
    }
}

fn header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(&MAGIC);
    header[MAGIC.len()..].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// The sealed record (nonce · ciphertext) at `at`; `None` at the end of the file or where the
/// file ends inside a record (a write cut short by a crash).
fn record_at(bytes: &[u8], at: usize) -> Option<Result<&[u8], &'static str>> {
    let prefix: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_RECORD {
        return Some(Err("has an impossible length"));
    }
    if len < NONCE_LEN + TAG_LEN {
        return Some(Err("is too short to be sealed"));
    }
    bytes.get(at + 4..at + 4 + len).map(Ok)
}

fn lock(file: &File, path: &Path) -> Result<(), StoreError> {
    file.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => StoreError::Locked {
            path: path.to_path_buf(),
        },
        fs::TryLockError::Error(source) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn temp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.store");
        (dir, path)
    }

    #[test]
    fn round_trips_documents_and_metadata() {
        let (_dir, path) = temp();
        let (a, b) = (DocumentId::random(), DocumentId::random());
        {
            let mut store = Store::open(&path, &KEY).unwrap();
            store.put_doc(a, b"saved").unwrap();
            store.append_doc(a, b"+one").unwrap();
            store.append_doc(b, b"only changes").unwrap();
            store.set_meta("token", b"secret").unwrap();
            store.set_meta("gone", b"soon").unwrap();
            store.remove_meta("gone").unwrap();
        }
        let store = Store::open(&path, &KEY).unwrap();
        assert_eq!(store.doc(&a).unwrap(), b"saved+one");
        assert_eq!(store.doc(&b).unwrap(), b"only changes");
        assert_eq!(store.meta("token"), Some(&b"secret"[..]));
        assert_eq!(store.meta("gone"), None);
        // Nothing is written in the clear.
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
        assert!(!raw.windows(5).any(|w| w == b"saved"));
    }

    #[test]
    fn a_wrong_key_is_an_error_naming_the_file() {
        let (_dir, path) = temp();
        Store::open(&path, &KEY).unwrap();
        let err = Store::open(&path, &[8; 32]).unwrap_err();
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("baton.store"), "{err}");
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let (_dir, path) = temp();
        let id = DocumentId::random();
        {
            let mut store = Store::open(&path, &KEY).unwrap();
            store.append_doc(id, &[1; 100]).unwrap();
        }
        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 20;
        raw[last] ^= 0xff;
        fs::write(&path, &raw).unwrap();
        let err = Store::open(&path, &KEY).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("baton.store"), "{err}");

        fs::write(&path, b"not a store at all").unwrap();
        let err = Store::open(&path, &KEY).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    }

    #[test]
    fn a_truncated_tail_is_dropped_and_writing_goes_on() {
        let (_dir, path) = temp();
        let (a, b) = (DocumentId::random(), DocumentId::random());
        {
            let mut store = Store::open(&path, &KEY).unwrap();
            store.append_doc(a, b"kept").unwrap();
            store.append_doc(b, &[9; 64]).unwrap();
        }
        let len = fs::metadata(&path).unwrap().len();
        for cut in [1, 30, 60] {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(len - cut).unwrap();
            drop(file);
            let store = Store::open(&path, &KEY).unwrap();
            assert_eq!(store.doc(&a).unwrap(), b"kept");
            assert_eq!(store.doc(&b), None, "the cut record is gone");
            drop(store);
            // Put the full record back for the next cut.
            let mut store = Store::open(&path, &KEY).unwrap();
            store.append_doc(b, &[9; 64]).unwrap();
            assert_eq!(store.file_len(), len);
        }
        let mut store = Store::open(&path, &KEY).unwrap();
        store.append_doc(a, b" and more").unwrap();
        drop(store);
        let store = Store::open(&path, &KEY).unwrap();
        assert_eq!(store.doc(&a).unwrap(), b"kept and more");
        assert_eq!(store.doc(&b).unwrap(), [9; 64]);
    }

    #[test]
    fn a_file_cut_short_while_being_created_starts_over() {
        let (_dir, path) = temp();
        fs::write(&path, &MAGIC[..5]).unwrap();
        let mut store = Store::open(&path, &KEY).unwrap();
        store.set_meta("k", b"v").unwrap();
        drop(store);
        assert_eq!(Store::open(&path, &KEY).unwrap().meta("k"), Some(&b"v"[..]));
    }

    #[test]
    fn compaction_keeps_everything_and_shrinks_the_file() {
        let (_dir, path) = temp();
        let ids: Vec<DocumentId> = (0..4).map(|_| DocumentId::random()).collect();
        let mut store = Store::open(&path, &KEY).unwrap();
        for round in 0..50u8 {
            for id in &ids {
                store.append_doc(*id, &[round; 10]).unwrap();
            }
            store.set_meta("round", &[round]).unwrap();
        }
        let before = store.file_len();
        store.compact().unwrap();
        assert!(
            store.file_len() < before / 2,
            "{} → {}",
            before,
            store.file_len()
        );
        assert_eq!(store.chunks(&ids[0]), 1);
        drop(store);
        let store = Store::open(&path, &KEY).unwrap();
        for id in &ids {
            let expected: Vec<u8> = (0..50u8).flat_map(|r| [r; 10]).collect();
            assert_eq!(store.doc(id).unwrap(), expected);
        }
        assert_eq!(store.meta("round"), Some(&[49u8][..]));
        assert!(!path.with_extension("store.tmp").exists());
    }

    #[test]
    fn a_growing_file_compacts_itself() {
        let (_dir, path) = temp();
        let id = DocumentId::random();
        let mut store = Store::open(&path, &KEY).unwrap();
        let big = vec![3u8; 64 << 10];
        for _ in 0..40 {
            store.put_doc(id, &big).unwrap();
        }
        assert!(store.file_len() <= COMPACT_MIN + 2 * big.len() as u64);
        drop(store);
        assert_eq!(Store::open(&path, &KEY).unwrap().doc(&id).unwrap(), big);
    }

    #[test]
    fn a_store_is_open_in_one_place_only() {
        let (_dir, path) = temp();
        let _store = Store::open(&path, &KEY).unwrap();
        let err = Store::open(&path, &KEY).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }

    #[test]
    fn wipe_leaves_nothing() {
        let (_dir, path) = temp();
        let id = DocumentId::random();
        let mut store = Store::open(&path, &KEY).unwrap();
        store.append_doc(id, b"phi").unwrap();
        store.set_meta("token", b"t").unwrap();
        store.wipe().unwrap();
        assert!(!path.exists());
        assert_eq!(store.doc_ids().count(), 0);
        assert_eq!(store.meta("token"), None);
        drop(store);
        let mut store = Store::open(&path, &KEY).unwrap();
        assert_eq!(store.doc(&id), None);
        // A wiped store can be used again, from an empty file.
        store.wipe().unwrap();
        store.set_meta("k", b"v").unwrap();
        drop(store);
        assert_eq!(Store::open(&path, &KEY).unwrap().meta("k"), Some(&b"v"[..]));
    }
}
