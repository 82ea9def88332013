//! The local journal: where a batch becomes durable. At every flush tick the flusher
//! appends what it drained (one sequential write, one fsync) to `journal.log` in
//! `--data-dir`, before or while the store is asked; the next start applies what the
//! journal holds (batch ids make a batch the store already has a no-op), and the file
//! is truncated whenever every batch in it has been acknowledged.
//!
//! A record is `len: u32 LE | crc32: u32 LE | JSON [Batch, ...]`. A record cut short by
//! a crash (or a failed write) fails its length or checksum: reading stops there and
//! the file is cut back to its last whole record, so later appends stay readable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::Batch;

/// The file name inside `--data-dir`.
pub const FILE_NAME: &str = "journal.log";
const HEADER: usize = 8;
/// A record longer than this is taken for garbage (a drain of 2M articles is ~200 MB).
const MAX_RECORD: usize = 1 << 30;

/// A journal operation failed; the flusher keeps the batches in memory and retries.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or syncing the file failed (a full disk, an I/O error).
    #[error("journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A batch could not be encoded.
    #[error("journal: encoding a batch: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What [`Journal::open`] found in the file.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every batch of every whole record, oldest first.
    pub batches: Vec<Batch>,
    /// Bytes after the last whole record (a write cut short), dropped from the file.
    pub torn_bytes: u64,
}

/// The append-only journal file. Purposefully not `Clone`: one writer, the flusher.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    /// `None` after a failed write: the next append reopens the file first.
    file: Option<File>,
    /// Length of the file up to its last whole record.
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, reads its whole records, and cuts off a
    /// torn tail.
    pub fn open(dir: &Path) -> Result<(Journal, Recovered), JournalError> {
        let path = dir.join(FILE_NAME);
        let io_err = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut file = open_file(&path).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let (batches, good) = decode_all(&bytes);
        let torn_bytes = (bytes.len() - good) as u64;
        if torn_bytes > 0 {
            file.set_len(good as u64).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        let journal = Journal {
            path: path.clone(),
            file: Some(file),
            len: good as u64,
        };
        Ok((journal, Recovered { batches, torn_bytes }))
    }

    /// Bytes held (whole records only).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the journal holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `batches` as one record and syncs it to disk. On failure the file is
    /// cut back to its last whole record (or reopened and cut by the next call).
    pub fn append(&mut self, batches: &[Arc<Batch>]) -> Result<(), JournalError> {
        if batches.is_empty() {
            return Ok(());
        }
        let record = encode(batches)?;
        let result = self.write_record(&record);
        match &result {
            Ok(()) => self.len += record.len() as u64,
            Err(_) => self.cut_back(),
        }
        result
    }

    fn write_record(&mut self, record: &[u8]) -> Result<(), JournalError> {
        let file = self.file()?;
        let written = file.write_all(record).and_then(|()| file.sync_data());
        written.map_err(|source| self.io_error(source))
    }

    /// Empties the journal once every batch in it was acknowledged. Not synced: if a
    /// crash undoes it, the next start replays batches the store has, which are no-ops.
    pub fn truncate(&mut self) -> Result<(), JournalError> {
        let file = self.file()?;
        match file.set_len(0) {
            Ok(()) => {
                self.len = 0;
                Ok(())
            }
            Err(source) => {
                self.file = None;
                Err(self.io_error(source))
            }
        }
    }

    fn file(&mut self) -> Result<&mut File, JournalError> {
        if self.file.is_none() {
            let file = open_file(&self.path).map_err(|e| self.io_error(e))?;
            // Whatever a failed write left after the last whole record goes.
            file.set_len(self.len).map_err(|e| self.io_error(e))?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn cut_back(&mut self) {
        let cut = self.file.as_ref().map(|f| f.set_len(self.len));
        if !matches!(cut, Some(Ok(()))) {
            // Reopened (and cut) by the next append.
            self.file = None;
        }
    }

    fn io_error(&self, source: io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    // The file's name must survive a crash too: sync the directory once per open.
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

fn encode(batches: &[Arc<Batch>]) -> Result<Vec<u8>, JournalError> {
    let mut record = vec![0u8; HEADER];
    serde_json::to_writer(&mut record, batches)?;
    let payload = &record[HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(record)
}

/// The batches of every whole record and the length of the bytes they span.
fn decode_all(bytes: &[u8]) -> (Vec<Batch>, usize) {
    let mut batches = Vec::new();
    let mut at = 0;
    while let Some((record, next)) = decode_one(&bytes[at..]) {
        batches.extend(record);
        at += next;
    }
    (batches, at)
}

fn decode_one(bytes: &[u8]) -> Option<(Vec<Batch>, usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let batches = serde_json::from_slice(payload).ok()?;
    Some((batches, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;
    use crate::event::{ArticleId, Meta};
    use crate::store::{ArticleDelta, BatchId};

    fn batch(seq: u64, views: u64) -> Arc<Batch> {
        Arc::new(Batch {
            id: BatchId {
                instance: "test".into(),
                epoch_ms: 1,
                seq,
                chunk: 0,
            },
            flushed_at_ms: 1_000,
            articles: vec![ArticleDelta {
                article: ArticleId::parse("a-1").unwrap(),
                counts: Counts::of_views(views),
                meta: Meta::default(),
                visitors: Vec::new(),
            }],
        })
    }

    fn reopen(dir: &Path) -> Recovered {
        Journal::open(dir).unwrap().1
    }

    #[test]
    fn a_delta_keeps_the_record_shape_older_versions_wrote() {
        let old = r#"{"article":"a-1","views":3,"shares":[["telegram",2]],"meta":{}}"#;
        let d: ArticleDelta = serde_json::from_str(old).unwrap();
        assert_eq!(d.counts, Counts::new(3, [("telegram", 2)]));
        let again = serde_json::to_value(&d).unwrap();
        assert_eq!(
            (&again["views"], &again["shares"]),
            (&serde_json::json!(3), &serde_json::json!([["telegram", 2]]))
        );
    }

    #[test]
    fn appended_batches_are_read_back_in_order_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, found) = Journal::open(dir.path()).unwrap();
        assert!(found.batches.is_empty());
        j.append(&[batch(1, 3), batch(2, 4)]).unwrap();
        j.append(&[batch(3, 5)]).unwrap();
        drop(j);
        let seqs: Vec<u64> = reopen(dir.path()).batches.iter().map(|b| b.id.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_later_appends_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[batch(1, 3)]).unwrap();
        let whole = j.len();
        drop(j);
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'[']).unwrap();
        drop(f);

        let (mut j, found) = Journal::open(dir.path()).unwrap();
        assert_eq!(found.batches.len(), 1);
        assert_eq!(found.torn_bytes, 9);
        assert_eq!(j.len(), whole);
        j.append(&[batch(2, 1)]).unwrap();
        drop(j);
        assert_eq!(reopen(dir.path()).batches.len(), 2);
    }

    #[test]
    fn a_record_with_a_bad_checksum_ends_the_readable_part() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[batch(1, 3)]).unwrap();
        j.append(&[batch(2, 3)]).unwrap();
        drop(j);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_eq!(reopen(dir.path()).batches.len(), 1);
    }

    #[test]
    fn a_truncated_journal_is_empty_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.append(&[batch(1, 3)]).unwrap();
        j.truncate().unwrap();
        assert!(j.is_empty());
        j.append(&[batch(2, 3)]).unwrap();
        drop(j);
        let seqs: Vec<u64> = reopen(dir.path()).batches.iter().map(|b| b.id.seq).collect();
        assert_eq!(seqs, [2]);
    }
}
