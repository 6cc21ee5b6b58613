//! The rollback guard: a small high-water-mark file beside the database.
//!
//! It holds the store-wide count of committed records and the last stored
//! checkpoint. It is written after every commit (so a process crash leaves it
//! current) and fsynced on every checkpoint, every `HWM_FSYNC_COMMITS_MAX`
//! commits and on close (so a power loss leaves it no later than redb, which
//! already holds those commits durably). A database behind it is an old copy.
//!
//! Layout: two 128-byte slots; a write goes to the slot the previous write
//! did not use, so a torn write leaves the other slot valid. Slot: magic (8),
//! generation (8), records_total (8), checkpoint ledger id (8), checkpoint
//! size (8), checkpoint root (32), zero padding, blake3 of bytes 0..96 (32).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"annalhwm";
const SLOT_BYTES: usize = 128;
const BODY_BYTES: usize = 96;

/// What the store had acknowledged when the mark was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    pub generation: u64,
    pub records_total: u64,
    /// (ledger id, size, root) of the last stored checkpoint.
    pub checkpoint: Option<(u64, u64, [u8; 32])>,
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
        })
    }
}

/// The open high-water-mark file.
#[derive(Debug)]
pub(crate) struct Hwm {
    path: PathBuf,
    file: File,
    mark: Mark,
    unsynced_commits: u64,
}

pub(crate) const FILE_NAME: &str = "annal.hwm";

/// Reads the mark at `path`: `Ok(None)` if there is no file.
pub(crate) fn read(path: &Path) -> std::io::Result<Option<Option<Mark>>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
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
    /// Opens (creating if needed) the file, starting from `mark`.
    pub(crate) fn open(path: &Path, mark: Mark) -> std::io::Result<Hwm> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut hwm = Hwm { path: path.to_owned(), file, mark, unsynced_commits: 0 };
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

    /// Records a committed state; fsyncs when `force` or when enough commits
    /// have gone by unsynced.
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
        if force || self.unsynced_commits >= crate::limits::HWM_FSYNC_COMMITS_MAX {
            self.sync()?;
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced_commits > 0 {
            self.file.sync_data()?;
            self.unsynced_commits = 0;
        }
        Ok(())
    }
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(read(&path).unwrap(), None);
        let mut h = Hwm::open(&path, Mark::default()).unwrap();
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
}
