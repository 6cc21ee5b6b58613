//! The rollback guard: a high-water mark beside the database, in two files.
//!
//! `annal.hwm` is store-wide: the count of committed records and the last
//! stored checkpoint. It is written after every commit (so a process crash
//! leaves it current) and fsynced on every checkpoint, every
//! `HWM_FSYNC_COMMITS_MAX` commits and on close. Layout: two 128-byte slots;
//! a write goes to the slot the previous write did not use, so a torn write
//! leaves the other slot valid. Slot: magic (8), generation (8),
//! records_total (8), checkpoint ledger id (8), checkpoint size (8),
//! checkpoint root (32), flags (8; bit 0: written by a backup), zero
//! padding, blake3 of bytes 0..96 (32).
//!
//! `annal.marks` is per ledger: an append-only log of (ledger key, size,
//! hash of record size − 1) for the ledgers that changed, written as one
//! fsynced *group* when the store-wide mark is fsynced (checkpoint, periodic,
//! close) or once `MARK_DIRTY_LEDGERS_MAX` ledgers changed. A head hash pins
//! the ledger's whole prefix through the hash chain, so it is as strong as a
//! root. Layout: a 64-byte header (magic `annalmrk`, version 1, 16 zero
//! bytes, blake3 of bytes 0..32), then 288-byte entries: group (u64, from 1,
//! +1 per group), index in group (u32), entries in group (u32), size (u64),
//! record hash (32), key length (u16), key (198, zero padded), blake3 of
//! `annal.mark\0` ‖ bytes 0..256 (32). All little-endian. Only the last
//! group can be torn (the next one is written after its fsync returned), so
//! damage inside the last group drops that group, and damage followed by an
//! entry of another group is corruption. Past `MARK_LOG_ENTRIES_MIN` entries
//! and twice the ledgers marked, the log is rewritten with one entry per
//! ledger (temporary file, fsync, rename, fsync of the directory).
//!
//! Both are written only after the redb commit they describe returned, so a
//! crash leaves them behind redb, never ahead. A database behind them is an
//! old copy, or another history.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use annal_chain::limits::{LEDGER_NAME_BYTES_MAX, TENANT_ID_BYTES_MAX};

use crate::limits::{HWM_FSYNC_COMMITS_MAX, MARK_DIRTY_LEDGERS_MAX, MARK_LOG_ENTRIES_MIN};

const MAGIC: &[u8; 8] = b"annalhwm";
const SLOT_BYTES: usize = 128;
const BODY_BYTES: usize = 96;
const FLAG_BACKUP: u64 = 1;

/// What the store had acknowledged when the mark was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    pub generation: u64,
    pub records_total: u64,
    /// (ledger id, size, root) of the last stored checkpoint.
    pub checkpoint: Option<(u64, u64, [u8; 32])>,
    /// Written by `backup`: the directory is a backup, which `restore` copies
    /// into an empty directory. Opening it in place is refused, so a backup
    /// copied over a newer data directory (marks and all) is not served.
    pub from_backup: bool,
}

impl Mark {
    fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut b = [0u8; SLOT_BYTES];
        b[0..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.records_total.to_le_bytes());
        let (id, size, root) = self.checkpoint.unwrap_or((0, 0, [0; 32]));
        b[24..32].copy_from_slice(&id.to_le_bytes());
        b[32..40].copy_from_slice(&size.to_le_bytes());
        b[40..72].copy_from_slice(&root);
        let flags = if self.from_backup { FLAG_BACKUP } else { 0 };
        b[72..80].copy_from_slice(&flags.to_le_bytes());
        let sum = blake3::hash(&b[..BODY_BYTES]);
        b[BODY_BYTES..].copy_from_slice(sum.as_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Mark> {
        if b.len() != SLOT_BYTES
            || &b[0..8] != MAGIC
            || blake3::hash(&b[..BODY_BYTES]).as_bytes() != &b[BODY_BYTES..]
        {
            return None;
        }
        let u = |r: core::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().expect("8 bytes"));
        let id = u(24..32);
        Some(Mark {
            generation: u(8..16),
            records_total: u(16..24),
            checkpoint: (id != 0).then(|| (id, u(32..40), b[40..72].try_into().expect("32 bytes"))),
            from_backup: u(72..80) & FLAG_BACKUP != 0,
        })
    }
}

/// The open high-water mark: the store-wide slots and the ledger marks.
#[derive(Debug)]
pub(crate) struct Hwm {
    path: PathBuf,
    file: File,
    mark: Mark,
    unsynced_commits: u64,
    ledgers: LedgerMarks,
}

pub(crate) const FILE_NAME: &str = "annal.hwm";
pub(crate) const LOG_FILE_NAME: &str = "annal.marks";

/// Reads the mark at `path`: `Ok(None)` if there is no file.
pub(crate) fn read(path: &Path) -> std::io::Result<Option<Option<Mark>>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(f) => f.take(4 * SLOT_BYTES as u64).read_to_end(&mut bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let a = bytes.get(..SLOT_BYTES).and_then(Mark::decode);
    let b = bytes.get(SLOT_BYTES..2 * SLOT_BYTES).and_then(Mark::decode);
    Ok(Some(match (a, b) {
        (Some(a), Some(b)) => Some(if a.generation >= b.generation { a } else { b }),
        (a, b) => a.or(b),
    }))
}

impl Hwm {
    /// Opens (creating if needed) the store-wide file, starting from `mark`.
    pub(crate) fn open(path: &Path, mark: Mark, ledgers: LedgerMarks) -> std::io::Result<Hwm> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut hwm = Hwm { path: path.to_owned(), file, mark, unsynced_commits: 0, ledgers };
        if hwm.file.metadata()?.len() < 2 * SLOT_BYTES as u64 {
            // A fresh file gets both slots, so a later torn write always leaves one.
            hwm.write_slot(mark.generation)?;
            hwm.write_slot(mark.generation + 1)?;
            hwm.mark.generation += 1;
            hwm.file.sync_all()?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(hwm)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn write_slot(&mut self, generation: u64) -> std::io::Result<()> {
        let mark = Mark { generation, ..self.mark };
        let offset = (generation % 2) * SLOT_BYTES as u64;
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(&mark.encode())
    }

    /// Notes a ledger's committed head (`size` records, the last with
    /// `hash`); it reaches the disk at the next sync.
    pub(crate) fn note(&mut self, id: u64, key: &str, size: u64, hash: [u8; 32]) {
        self.ledgers.note(id, key, size, hash);
    }

    /// Records a committed state; syncs when `force`, when enough commits
    /// have gone by unsynced, or when enough ledgers changed.
    pub(crate) fn advance(
        &mut self,
        records_total: u64,
        checkpoint: Option<(u64, u64, [u8; 32])>,
        force: bool,
    ) -> std::io::Result<()> {
        debug_assert!(records_total >= self.mark.records_total, "the mark never moves back");
        self.mark.records_total = records_total;
        if checkpoint.is_some() {
            self.mark.checkpoint = checkpoint;
        }
        self.mark.generation += 1;
        self.write_slot(self.mark.generation)?;
        self.unsynced_commits += 1;
        if force
            || self.unsynced_commits >= HWM_FSYNC_COMMITS_MAX
            || self.ledgers.dirty.len() >= MARK_DIRTY_LEDGERS_MAX
        {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes the changed ledger marks as one group and fsyncs both files.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.ledgers.write_dirty()?;
        if self.unsynced_commits > 0 {
            self.file.sync_data()?;
            self.unsynced_commits = 0;
        }
        Ok(())
    }
}

/// Writes a fresh store-wide mark file (backup, restore).
pub(crate) fn write_mark(path: &Path, mark: Mark) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let mut bytes = [0u8; 2 * SLOT_BYTES];
    for generation in [mark.generation, mark.generation + 1] {
        // Slot `generation % 2` holds that generation, as `Hwm` writes it.
        let at = (generation % 2) as usize * SLOT_BYTES;
        bytes[at..at + SLOT_BYTES].copy_from_slice(&Mark { generation, ..mark }.encode());
    }
    file.write_all(&bytes)?;
    file.sync_all()
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

const LOG_MAGIC: &[u8; 8] = b"annalmrk";
const LOG_VERSION: u64 = 1;
const LOG_HEADER_BYTES: usize = 64;
const ENTRY_BYTES: usize = 288;
const ENTRY_BODY_BYTES: usize = 256;
const KEY_AT: usize = 58;
const KEY_BYTES_MAX: usize = ENTRY_BODY_BYTES - KEY_AT;
const _: () = assert!(TENANT_ID_BYTES_MAX + 1 + LEDGER_NAME_BYTES_MAX <= KEY_BYTES_MAX);
const _: () = assert!(MARK_DIRTY_LEDGERS_MAX + crate::limits::BATCH_WRITES_MAX <= u32::MAX as usize);

/// One ledger's mark: `size` records, the last of which hashes to `hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LedgerMark {
    /// `tenant/ledger`.
    pub key: String,
    pub size: u64,
    pub hash: [u8; 32],
}

/// Where a read mark log ends, so the store can append after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogEnd {
    bytes: u64,
    entries: u64,
    group: u64,
    /// A torn last group was dropped: the file must be rewritten before
    /// anything is appended after it.
    torn: bool,
}

/// A mark log as read: the last mark of every ledger in it, by key order of
/// first appearance, and where it ends.
#[derive(Debug)]
pub(crate) struct LogRead {
    pub marks: Vec<LedgerMark>,
    end: LogEnd,
}

/// Why a mark log could not be read.
#[derive(Debug)]
pub(crate) enum LogError {
    Io(std::io::Error),
    /// Not a mark log, or an entry before the last group is damaged.
    Corrupt(String),
}

fn header() -> [u8; LOG_HEADER_BYTES] {
    let mut b = [0u8; LOG_HEADER_BYTES];
    b[0..8].copy_from_slice(LOG_MAGIC);
    b[8..16].copy_from_slice(&LOG_VERSION.to_le_bytes());
    let sum = blake3::hash(&b[..32]);
    b[32..].copy_from_slice(sum.as_bytes());
    b
}

fn entry_sum(body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"annal.mark\0");
    h.update(body);
    *h.finalize().as_bytes()
}

#[derive(Debug)]
struct Entry {
    group: u64,
    index: u32,
    count: u32,
    mark: LedgerMark,
}

fn encode_entry(out: &mut Vec<u8>, group: u64, index: u32, count: u32, mark: &LedgerMark) {
    let start = out.len();
    out.resize(start + ENTRY_BYTES, 0);
    let b = &mut out[start..];
    b[0..8].copy_from_slice(&group.to_le_bytes());
    b[8..12].copy_from_slice(&index.to_le_bytes());
    b[12..16].copy_from_slice(&count.to_le_bytes());
    b[16..24].copy_from_slice(&mark.size.to_le_bytes());
    b[24..56].copy_from_slice(&mark.hash);
    let key = mark.key.as_bytes();
    assert!(!key.is_empty() && key.len() <= KEY_BYTES_MAX, "ledger keys are bounded by the name limits");
    b[56..58].copy_from_slice(&(key.len() as u16).to_le_bytes());
    b[KEY_AT..KEY_AT + key.len()].copy_from_slice(key);
    let sum = entry_sum(&b[..ENTRY_BODY_BYTES]);
    b[ENTRY_BODY_BYTES..].copy_from_slice(&sum);
}

fn decode_entry(b: &[u8; ENTRY_BYTES]) -> Option<Entry> {
    if entry_sum(&b[..ENTRY_BODY_BYTES]) != b[ENTRY_BODY_BYTES..] {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let key_len = usize::from(u16::from_le_bytes([b[56], b[57]]));
    if key_len == 0
        || key_len > KEY_BYTES_MAX
        || b[KEY_AT + key_len..ENTRY_BODY_BYTES].iter().any(|&x| x != 0)
    {
        return None;
    }
    let key = std::str::from_utf8(&b[KEY_AT..KEY_AT + key_len]).ok()?.to_owned();
    let (group, index, count, size) = (u64_at(0), u32_at(8), u32_at(12), u64_at(16));
    if group == 0 || count == 0 || index >= count || size == 0 {
        return None;
    }
    Some(Entry {
        group,
        index,
        count,
        mark: LedgerMark { key, size, hash: b[24..56].try_into().expect("32") },
    })
}

/// Reads the mark log at `path`: `Ok(None)` if there is no file. Reads it
/// in entry-sized steps; its length is bounded by the compaction rule.
pub(crate) fn read_log(path: &Path) -> Result<Option<LogRead>, LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::Io(e)),
    };
    let mut r = BufReader::with_capacity(64 * ENTRY_BYTES, file);
    let mut head = [0u8; LOG_HEADER_BYTES];
    if r.read_exact(&mut head).is_err() || head != header() {
        return Err(LogError::Corrupt("the header is not an annal mark log's".into()));
    }
    let mut order: Vec<String> = Vec::new();
    let mut last: HashMap<String, (u64, [u8; 32])> = HashMap::new();
    let mut group: Vec<Entry> = Vec::new();
    let (mut complete, mut entries) = (0u64, 0u64);
    // Set at the first entry that does not continue the log: from there on
    // only entries of the group it interrupted may follow.
    let mut damaged_at: Option<u64> = None;
    let mut buf = [0u8; ENTRY_BYTES];
    let mut position = 0u64;
    loop {
        match read_full(&mut r, &mut buf).map_err(LogError::Io)? {
            0 => break,
            n if n < ENTRY_BYTES => {
                // A partial last entry: part of the last group's write.
                damaged_at.get_or_insert(position);
                break;
            }
            _ => {}
        }
        let entry = decode_entry(&buf);
        match (damaged_at, entry) {
            (None, Some(e))
                if e.group == complete + 1
                    && e.index as usize == group.len()
                    && group.first().is_none_or(|f| f.count == e.count) =>
            {
                let done = e.index + 1 == e.count;
                group.push(e);
                if done {
                    for e in group.drain(..) {
                        match last.get_mut(&e.mark.key) {
                            Some(m) => *m = (e.mark.size, e.mark.hash),
                            None => {
                                order.push(e.mark.key.clone());
                                last.insert(e.mark.key, (e.mark.size, e.mark.hash));
                            }
                        }
                    }
                    complete += 1;
                    entries = position + 1;
                }
            }
            (None, _) => damaged_at = Some(position),
            (Some(at), Some(e)) if e.group != complete + 1 => {
                return Err(LogError::Corrupt(format!(
                    "entry {at} is damaged but entries of a later group follow it"
                )));
            }
            (Some(_), _) => {}
        }
        position += 1;
    }
    let torn = damaged_at.is_some() || !group.is_empty();
    let marks = order
        .into_iter()
        .map(|key| {
            let (size, hash) = last[&key];
            LedgerMark { key, size, hash }
        })
        .collect();
    let end = LogEnd {
        bytes: LOG_HEADER_BYTES as u64 + entries * ENTRY_BYTES as u64,
        entries,
        group: complete,
        torn,
    };
    Ok(Some(LogRead { marks, end }))
}

/// Reads until `buf` is full or the end: the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes a mark log holding `marks` as one group into `path` atomically:
/// a temporary file, fsynced, renamed over `path`, and the directory fsynced.
pub(crate) fn write_log<'m>(
    path: &Path,
    marks: impl ExactSizeIterator<Item = &'m LedgerMark>,
) -> std::io::Result<LogEnd> {
    let count = u32::try_from(marks.len()).map_err(|_| std::io::Error::other("too many ledger marks"))?;
    let tmp = path.with_extension("marks-tmp");
    let mut out = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    out.write_all(&header())?;
    let mut buf = Vec::with_capacity(64 * ENTRY_BYTES);
    for (index, mark) in (0u32..).zip(marks) {
        encode_entry(&mut buf, 1, index, count, mark);
        if buf.len() >= 64 * ENTRY_BYTES {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    let entries = u64::from(count);
    Ok(LogEnd {
        bytes: LOG_HEADER_BYTES as u64 + entries * ENTRY_BYTES as u64,
        entries,
        group: u64::from(count > 0),
        torn: false,
    })
}

/// Every ledger's mark as the store knows it, and those changed since the
/// last group was written. Memory: one key and 40 bytes per ledger marked.
#[derive(Debug)]
pub(crate) struct LedgerMarks {
    path: PathBuf,
    file: File,
    end: LogEnd,
    /// By ledger id: the mark, and whether it changed since the last group.
    marks: HashMap<u64, (LedgerMark, bool)>,
    dirty: Vec<u64>,
}

impl LedgerMarks {
    /// Opens the log at `path` for appending after `end` (what `read_log`
    /// found), holding `marks` (verified against the database); without an
    /// `end`, or after a torn group, or past the compaction bound, the log
    /// is first rewritten from `marks`.
    pub(crate) fn open(
        path: &Path,
        marks: HashMap<u64, LedgerMark>,
        end: Option<&LogRead>,
    ) -> std::io::Result<LedgerMarks> {
        let marks: HashMap<u64, (LedgerMark, bool)> =
            marks.into_iter().map(|(id, m)| (id, (m, false))).collect();
        let end = match end.map(|r| r.end) {
            Some(end) if !end.torn && !past_bound(end.entries, marks.len()) => end,
            _ => write_log(path, in_key_order(&marks).into_iter())?,
        };
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(LedgerMarks { path: path.to_owned(), file, end, marks, dirty: Vec::new() })
    }

    fn note(&mut self, id: u64, key: &str, size: u64, hash: [u8; 32]) {
        match self.marks.get_mut(&id) {
            Some((m, dirty)) => {
                if m.size == size && m.hash == hash {
                    return;
                }
                debug_assert!(size >= m.size, "a ledger never shrinks");
                (m.size, m.hash) = (size, hash);
                if !*dirty {
                    *dirty = true;
                    self.dirty.push(id);
                }
            }
            None => {
                self.marks.insert(id, (LedgerMark { key: key.to_owned(), size, hash }, true));
                self.dirty.push(id);
            }
        }
    }

    /// Appends the changed marks as one group and fsyncs it; rewrites the
    /// log once it is past its bound.
    fn write_dirty(&mut self) -> std::io::Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(self.dirty.len()).expect("bounded by MARK_DIRTY_LEDGERS_MAX");
        let group = self.end.group + 1;
        let mut buf = Vec::with_capacity(self.dirty.len() * ENTRY_BYTES);
        for (index, id) in (0u32..).zip(&self.dirty) {
            let (mark, dirty) = self.marks.get_mut(id).expect("dirty ids are marked");
            encode_entry(&mut buf, group, index, count, mark);
            *dirty = false;
        }
        self.dirty.clear();
        self.file.seek(SeekFrom::Start(self.end.bytes))?;
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.end.bytes += buf.len() as u64;
        self.end.entries += u64::from(count);
        self.end.group = group;
        if past_bound(self.end.entries, self.marks.len()) {
            self.end = write_log(&self.path, in_key_order(&self.marks).into_iter())?;
            self.file = OpenOptions::new().write(true).open(&self.path)?;
        }
        Ok(())
    }
}

/// The marks in key order, so a rewritten log does not depend on hash-map order.
fn in_key_order(marks: &HashMap<u64, (LedgerMark, bool)>) -> Vec<&LedgerMark> {
    let mut v: Vec<&LedgerMark> = marks.values().map(|(m, _)| m).collect();
    v.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    v
}

/// A log holding more than `MARK_LOG_ENTRIES_MIN` entries and twice the
/// ledgers it marks is rewritten: its size stays proportional to the
/// ledgers, and each rewrite follows at least as many appended entries as
/// it writes.
fn past_bound(entries: u64, ledgers: usize) -> bool {
    entries > MARK_LOG_ENTRIES_MIN.max(2 * ledgers as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_marks(dir: &Path) -> LedgerMarks {
        LedgerMarks::open(&dir.join(LOG_FILE_NAME), HashMap::new(), None).unwrap()
    }

    #[test]
    fn torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(read(&path).unwrap(), None);
        let mut h = Hwm::open(&path, Mark::default(), empty_marks(dir.path())).unwrap();
        h.advance(5, None, true).unwrap();
        h.advance(9, Some((1, 4, [3; 32])), true).unwrap();
        let m = read(&path).unwrap().unwrap().unwrap();
        assert_eq!((m.records_total, m.checkpoint), (9, Some((1, 4, [3; 32]))));
        // Tear the newest slot: the previous one is used.
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = (m.generation % 2) as usize * SLOT_BYTES;
        bytes[newest + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let m2 = read(&path).unwrap().unwrap().unwrap();
        assert_eq!(m2.records_total, 5);
        // Both torn: unreadable.
        let other = SLOT_BYTES - newest;
        bytes[other + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap(), Some(None));
    }

    #[test]
    fn a_written_mark_reads_back_with_its_backup_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for from_backup in [true, false] {
            let mark = Mark { generation: 0, records_total: 7, checkpoint: None, from_backup };
            write_mark(&path, mark).unwrap();
            let got = read(&path).unwrap().unwrap().unwrap();
            assert_eq!((got.records_total, got.from_backup), (7, from_backup));
            // Both slots are valid: tearing either leaves the other.
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[3] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read(&path).unwrap().unwrap().map(|m| m.from_backup), Some(from_backup));
        }
    }

    fn mark(key: &str, size: u64) -> LedgerMark {
        LedgerMark { key: key.into(), size, hash: [size as u8; 32] }
    }

    /// A log with groups: {a:1, b:1}, {a:2}, {c:5, b:3}.
    fn three_groups(dir: &Path) -> PathBuf {
        let path = dir.join(LOG_FILE_NAME);
        let mut m = empty_marks(dir);
        for group in [&[(1, "a", 1), (2, "b", 1)][..], &[(1, "a", 2)], &[(3, "c", 5), (2, "b", 3)]] {
            for &(id, key, size) in group {
                m.note(id, key, size, [size as u8; 32]);
            }
            m.write_dirty().unwrap();
        }
        path
    }

    fn marks_of(path: &Path) -> Result<Vec<LedgerMark>, String> {
        match read_log(path) {
            Ok(Some(r)) => Ok(r.marks),
            Ok(None) => Err("no file".into()),
            Err(LogError::Corrupt(why)) => Err(why),
            Err(LogError::Io(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn the_mark_log_keeps_each_ledgers_last_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_groups(dir.path());
        assert_eq!(marks_of(&path).unwrap(), vec![mark("a", 2), mark("b", 3), mark("c", 5)]);
        let r = read_log(&path).unwrap().unwrap();
        assert_eq!((r.end.entries, r.end.group, r.end.torn), (5, 3, false));
    }

    /// Damage in the last group drops that group; damage followed by an
    /// entry of a later group is corruption.
    #[test]
    fn a_torn_last_group_is_dropped_and_earlier_damage_refused() {
        let at = |entry: usize| LOG_HEADER_BYTES + entry * ENTRY_BYTES;
        let before_last = vec![mark("a", 2), mark("b", 1)];
        type Tear = fn(&mut Vec<u8>, &dyn Fn(usize) -> usize);
        type Case<'a> = (&'a str, Tear, Result<Vec<LedgerMark>, &'a str>);
        let cases: Vec<Case> = vec![
            ("last entry cut short", |b, at| b.truncate(at(4) + 100), Ok(before_last.clone())),
            ("last entry flipped", |b, at| b[at(4) + 30] ^= 1, Ok(before_last.clone())),
            (
                "first entry of the last group zeroed",
                |b, at| b[at(3)..at(4)].fill(0),
                Ok(before_last.clone()),
            ),
            ("last group cut after its first entry", |b, at| b.truncate(at(4)), Ok(before_last.clone())),
            (
                "trailing zeros after the last group",
                |b, _| b.extend_from_slice(&[0; 600]),
                Ok(vec![mark("a", 2), mark("b", 3), mark("c", 5)]),
            ),
            ("an entry of the first group flipped", |b, at| b[at(1) + 60] ^= 1, Err("entry 1 is damaged")),
            (
                "the only entry of the second group flipped",
                |b, at| b[at(2) + 9] ^= 1,
                Err("entry 2 is damaged"),
            ),
            ("header flipped", |b, _| b[9] ^= 1, Err("header")),
        ];
        for (what, tear, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = three_groups(dir.path());
            let mut bytes = std::fs::read(&path).unwrap();
            tear(&mut bytes, &at);
            std::fs::write(&path, &bytes).unwrap();
            match (marks_of(&path), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{what}"),
                (Err(why), Err(want)) => assert!(why.contains(want), "{what}: {why}"),
                (got, want) => panic!("{what}: got {got:?}, expected {want:?}"),
            }
        }
    }

    /// After a torn group the log is rewritten before anything is appended,
    /// and a log past its bound is compacted to one entry per ledger.
    #[test]
    fn the_log_is_rewritten_after_a_tear_and_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_groups(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, &bytes).unwrap();
        let read = read_log(&path).unwrap().unwrap();
        assert!(read.end.torn);
        let verified: HashMap<u64, LedgerMark> = (1u64..).zip(read.marks.iter().cloned()).collect();
        let mut m = LedgerMarks::open(&path, verified, Some(&read)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (LOG_HEADER_BYTES + 2 * ENTRY_BYTES) as u64);
        m.note(9, "d", 1, [1; 32]);
        m.write_dirty().unwrap();
        assert_eq!(marks_of(&path).unwrap(), vec![mark("a", 2), mark("b", 1), mark("d", 1)]);
        // Groups that each rewrite every ledger's mark: once the log holds
        // more than twice the ledgers (and the minimum), it is compacted to
        // one entry per ledger.
        let n = MARK_LOG_ENTRIES_MIN / 2 + 100;
        for round in 2..5u64 {
            for id in 0..n {
                m.note(100 + id, &format!("t/l{id}"), round, [round as u8; 32]);
            }
            m.write_dirty().unwrap();
        }
        let entries =
            (std::fs::metadata(&path).unwrap().len() - LOG_HEADER_BYTES as u64) / ENTRY_BYTES as u64;
        assert_eq!(entries, n + 3, "one entry per ledger after the compaction");
        let marks = marks_of(&path).unwrap();
        assert_eq!(marks.len() as u64, n + 3);
        assert!(marks.iter().filter(|m| m.key.starts_with("t/")).all(|m| m.size == 4));
    }
}
