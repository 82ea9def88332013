//! Spill files: at shutdown, batches the store did not acknowledge are written to
//! `--data-dir` (temp file, fsync, rename, fsync the directory); the next start
//! replays them before serving. A file that does not parse is set aside, not lost.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::store::Batch;

const PREFIX: &str = "spill-";
const SUFFIX: &str = ".json";
/// 2: every chunk of a drain has its own batch `seq` (in 1, chunks shared one), which
/// the Redis store's exactly-once record relies on; a file of format 1 is set aside.
const FORMAT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct SpillFile {
    version: u32,
    batches: Vec<Batch>,
}

/// Writes `batches` durably to a new spill file named after `label`.
pub fn write(dir: &Path, label: &str, batches: &[Batch]) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{PREFIX}{label}{SUFFIX}"));
    let tmp = dir.join(format!("{PREFIX}{label}.tmp"));
    let body = serde_json::to_vec(&SpillFile {
        version: FORMAT_VERSION,
        batches: batches.to_vec(),
    })?;
    let mut f = File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Every readable spill file in `dir` with its batches, oldest name first. Files that
/// do not parse are renamed to `*.corrupt` with a log line and a metric.
pub fn load_all(dir: &Path, metrics: &Metrics) -> Vec<(PathBuf, Vec<Batch>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match read(&path) {
            Ok(batches) => {
                metrics.spill_files.with_label_values(&["replayed"]).inc();
                tracing::info!(file = %path.display(), batches = batches.len(), "replaying spill file");
                out.push((path, batches));
            }
            Err(e) => set_aside(&path, &e, metrics),
        }
    }
    out
}

fn read(path: &Path) -> Result<Vec<Batch>, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let file: SpillFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!("unknown spill format version {}", file.version));
    }
    Ok(file.batches)
}

fn set_aside(path: &Path, error: &str, metrics: &Metrics) {
    let aside = path.with_extension("corrupt");
    match fs::rename(path, &aside) {
        Ok(()) => {
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error, "spill file unreadable; set aside")
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "spill file unreadable and could not be set aside")
        }
    }
    metrics.spill_files.with_label_values(&["set_aside"]).inc();
}

/// Deletes a spill file whose batches the store acknowledged.
pub fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(file = %path.display(), "spill file replayed and removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not remove a replayed spill file"),
    }
}
