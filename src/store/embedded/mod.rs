//! The embedded backend: one redb file in `--data-dir`, so the service runs on a
//! laptop with no set-up. Each batch is one ACID transaction that also records the
//! batch id, which makes a replayed batch a no-op.

mod buckets;
mod series;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::ranking::{Change, Ranking};
use super::series::{MetaValues, Series, SeriesWindow};
use super::windows::Windows;
use super::{Applied, ArticleRead, Batch, Rankings, StoreError};
use crate::clock::{Clock, SystemClock};
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::visitors::Sketch;

/// (article, counter) -> total. The counter is `views` or `share:<network>`.
const COUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("counts");
/// article -> (section, lang).
const META: TableDefinition<&str, (Option<&str>, Option<&str>)> = TableDefinition::new("meta");
/// article -> (title, url): apart from `META`, which the top windows load whole.
const PAGES: TableDefinition<&str, (Option<&str>, Option<&str>)> = TableDefinition::new("pages");
/// day -> the visitor salt of that UTC day.
const SALTS: TableDefinition<u32, [u8; 16]> = TableDefinition::new("visitor_salts");
/// article -> visitors, summed over days.
const VISITORS: TableDefinition<&str, u64> = TableDefinition::new("visitors");
/// (day, article) -> the day's sketch of the article's visitors (JSON of a
/// cardinality-estimator HyperLogLog), kept two days.
const SKETCHES: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("visitor_sketches");
/// batch id -> when it was applied (Unix ms): the exactly-once record.
const APPLIED: TableDefinition<&str, u64> = TableDefinition::new("applied_batches");

/// How long a batch id is remembered; a batch cannot wait longer than this to be retried.
const DEDUPE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const VIEWS: &str = "views";
const SHARE_PREFIX: &str = "share:";

/// The file name inside `--data-dir`.
pub const FILE_NAME: &str = "viewcounter.redb";

/// The open database, or none after an error: redb refuses every call after an I/O
/// error ("Previous I/O error occurred"), so the file is closed and opened afresh by
/// the next call (the flusher's retries are the back-off) and recovers by itself once
/// the disk has room again.
struct Handle {
    path: PathBuf,
    // std RwLock: never held across an await, only while cloning or opening.
    db: RwLock<Option<Arc<Database>>>,
}

impl Handle {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(db) = self.db.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        // Fails (DatabaseAlreadyOpen) while a call still holds the old handle: the next
        // call tries again.
        let db = Arc::new(Database::create(&self.path).map_err(|e| open_error(&self.path, e))?);
        tracing::info!(file = %self.path.display(), "embedded database reopened");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Drops the handle after a failed call, so the next one reopens the file.
    fn close(&self) {
        self.db.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A handle to the redb database and the in-memory window tallies; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    handle: Arc<Handle>,
    /// The `/v1/top` windows, loaded in the background at open.
    ranking: Arc<Ranking>,
    clock: Arc<dyn Clock>,
}

/// A database file larger than this has its rankings loaded in the background (the
/// service serves meanwhile); a smaller one loads them in `open`, in well under a second.
const LOAD_IN_BACKGROUND_ABOVE: u64 = 16 << 20;
/// How long `/v1/top` waits for the windows still loading before it answers 503.
const TOP_WAITS_FOR_LOAD: Duration = Duration::from_secs(2);

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Embedded(e.into())
}

/// Updates a row in place when it exists (one walk down the tree, where a `get` and an
/// `insert` walk it twice: a flush does this for every article in up to five tables),
/// else inserts `update(None)`.
fn upsert<K, T>(
    table: &mut Table<'_, K, T>,
    key: K::SelfType<'_>,
    update: impl Fn(Option<T>) -> T,
) -> Result<(), StoreError>
where
    K: redb::Key + 'static,
    T: for<'a> redb::Value<SelfType<'a> = T> + 'static,
{
    if let Some(mut row) = table.get_mut(&key).map_err(err)? {
        let new = update(Some(row.value()));
        return row.insert(new).map_err(err);
    }
    table.insert(key, update(None)).map_err(err)?;
    Ok(())
}

/// A stored value this version cannot read.
fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        store: "embedded store",
        what: what.to_string(),
    }
}

/// A file or folder that could not be created or opened.
fn open_error(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file in `dir`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// The clock the top windows and series follow.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Like [`EmbeddedStore::open`], with the clock the top windows follow.
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| open_error(dir, redb::StorageError::from(e)))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        let txn = db.begin_write().map_err(err)?;
        {
            txn.open_table(COUNTS).map_err(err)?;
            txn.open_table(META).map_err(err)?;
            txn.open_table(PAGES).map_err(err)?;
            txn.open_table(SALTS).map_err(err)?;
            txn.open_table(VISITORS).map_err(err)?;
            txn.open_table(SKETCHES).map_err(err)?;
            txn.open_table(APPLIED).map_err(err)?;
            txn.open_table(buckets::MINUTES).map_err(err)?;
            txn.open_table(buckets::HOURS).map_err(err)?;
            txn.open_table(series::HOURS).map_err(err)?;
            txn.open_table(series::DAYS).map_err(err)?;
            txn.open_table(series::META_VALUES).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        let small = std::fs::metadata(&path).map_or(true, |m| m.len() <= LOAD_IN_BACKGROUND_ABOVE);
        let ranking = Arc::<Ranking>::default();
        if small {
            // Milliseconds: a small store is fully ready when open returns.
            let windows = load_windows(&db, &ranking, clock.now_ms())?;
            ranking.finish(windows);
        }
        let handle = Handle {
            path,
            db: RwLock::new(Some(Arc::new(db))),
        };
        let store = EmbeddedStore {
            handle: Arc::new(handle),
            ranking,
            clock,
        };
        if !small {
            store.spawn_load();
        }
        Ok(store)
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.handle.get()
    }

    /// Loads the windows on a thread of their own; retries until it succeeds.
    fn spawn_load(&self) {
        let (handle, ranking, clock) = (self.handle.clone(), self.ranking.clone(), self.clock.clone());
        let spawned = std::thread::Builder::new()
            .name("rankings-load".into())
            .spawn(move || loop {
                let started = std::time::Instant::now();
                let loaded = handle
                    .get()
                    .and_then(|db| load_windows(&db, &ranking, clock.now_ms()).map(|w| (db, w)));
                match loaded {
                    Ok((db, windows)) => {
                        let tracked = windows.tracked();
                        // The database is released before the windows show as ready, so
                        // a store dropped after that can be opened again at once.
                        drop(db);
                        ranking.finish(windows);
                        tracing::info!(
                            tracked,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "rankings loaded"
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "loading the rankings failed; retrying in 1 s");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rankings loader");
        }
    }

    /// Caps the articles tracked for rankings (`--max-articles`).
    pub fn set_max_articles(&self, n: usize) {
        self.ranking.set_cap(n);
    }

    /// True once the rankings are loaded.
    pub fn rankings_ready(&self) -> bool {
        self.ranking.is_ready()
    }

    /// Articles tracked in the rankings.
    pub fn tracked_articles(&self) -> usize {
        self.ranking.tracked()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EmbeddedStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&store);
            if result.is_err() {
                store.handle.close();
            }
            result
        })
        .await?
    }

    /// One write transaction; `change` is recorded in the rankings as it commits.
    async fn write(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send + 'static,
        change: Change,
    ) -> Result<(), StoreError> {
        self.blocking(move |s| {
            let txn = s.db()?.begin_write().map_err(err)?;
            f(&txn)?;
            let _gate = s.ranking.gate();
            txn.commit().map_err(err)?;
            s.ranking.record(change);
            Ok(())
        })
        .await
    }

    /// Applies `batch` in one transaction, unless its id was applied before.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        let mut batch = batch.clone();
        self.blocking(move |s| {
            let now = s.clock.now_ms();
            // Roll the windows before this transaction prunes the buckets they leave.
            let reader = buckets::Reader(s.db()?.begin_read().map_err(err)?);
            s.ranking
                .when_ready(Duration::ZERO, |w| w.roll(&reader, now))
                .transpose()?;
            drop(reader);
            let txn = s.db()?.begin_write().map_err(err)?;
            let id = batch.id.to_string();
            {
                let mut applied = txn.open_table(APPLIED).map_err(err)?;
                if applied.get(id.as_str()).map_err(err)?.is_some() {
                    return Ok(Applied::Duplicate);
                }
                applied.insert(id.as_str(), now).map_err(err)?;
                let horizon = now.saturating_sub(DEDUPE_TTL.as_millis() as u64);
                applied.retain(|_, at| at >= horizon).map_err(err)?;
            }
            add_deltas(&txn, &mut batch)?;
            buckets::write(&txn, &batch, now)?;
            series::write(&txn, &batch, now)?;
            series::note_meta(&txn, &batch)?;
            let _gate = s.ranking.gate();
            txn.commit().map_err(err)?;
            s.ranking.record(Change::Batch(batch));
            Ok(Applied::Applied)
        })
        .await
    }

    /// Stored totals of each article, in the order asked.
    pub async fn counts(&self, articles: &[ArticleId]) -> Result<Vec<Counts>, StoreError> {
        let articles = articles.to_vec();
        self.blocking(move |s| {
            let txn = s.db()?.begin_read().map_err(err)?;
            let table = txn.open_table(COUNTS).map_err(err)?;
            articles.iter().map(|a| read_counts(&table, a.as_str())).collect()
        })
        .await
    }

    /// Each article's totals and the deltas of `unacked` batches not in them yet, with
    /// its metadata and visitors, read in one transaction with the applied-batch table,
    /// so a batch committed during the read is counted once.
    pub async fn article_reads(
        &self,
        articles: &[ArticleId],
        unacked: &[Arc<Batch>],
    ) -> Result<Vec<ArticleRead>, StoreError> {
        // Only the batches holding one of the articles: after a big drain the queue holds
        // a hundred batches, and a lookup in the applied table each cost every read.
        let unacked: Vec<Arc<Batch>> = unacked
            .iter()
            .filter(|b| articles.iter().any(|a| b.get(a.as_str()).is_some()))
            .cloned()
            .collect();
        let articles = articles.to_vec();
        self.blocking(move |s| {
            let txn = s.db()?.begin_read().map_err(err)?;
            let counts = txn.open_table(COUNTS).map_err(err)?;
            let applied = txn.open_table(APPLIED).map_err(err)?;
            let (meta, pages) = (txn.open_table(META).map_err(err)?, txn.open_table(PAGES).map_err(err)?);
            let visitors = txn.open_table(VISITORS).map_err(err)?;
            let mut landed = Vec::with_capacity(unacked.len());
            for b in unacked {
                if applied.get(b.id.to_string().as_str()).map_err(err)?.is_some() {
                    landed.push(b);
                }
            }
            articles
                .iter()
                .map(|a| {
                    Ok(ArticleRead {
                        stored: read_counts(&counts, a.as_str())?,
                        landed: landed
                            .iter()
                            .filter(|b| b.get(a.as_str()).is_some())
                            .map(|b| b.id.clone())
                            .collect(),
                        meta: read_meta(&meta, &pages, a.as_str())?,
                        visitors: visitors.get(a.as_str()).map_err(err)?.map_or(0, |g| g.value()),
                    })
                })
                .collect()
        })
        .await
    }

    /// Replaces an article's totals.
    pub async fn set(&self, article: &ArticleId, counts: &Counts) -> Result<(), StoreError> {
        let (article, counts) = (article.clone(), counts.clone());
        let change = Change::SetTotal(article.clone(), counts.clone());
        self.write(
            move |txn| {
                let mut table = txn.open_table(COUNTS).map_err(err)?;
                remove_counts(&mut table, article.as_str())?;
                if counts.views > 0 {
                    table.insert((article.as_str(), VIEWS), counts.views).map_err(err)?;
                }
                for (network, n) in &counts.shares {
                    let name = format!("{SHARE_PREFIX}{network}");
                    table.insert((article.as_str(), name.as_str()), *n).map_err(err)?;
                }
                Ok(())
            },
            change,
        )
        .await
    }

    /// Forgets an article's totals and metadata.
    pub async fn delete(&self, article: &ArticleId) -> Result<(), StoreError> {
        let article = article.clone();
        let (change, now) = (Change::Forget(article.clone()), self.clock.now_ms());
        self.write(
            move |txn| {
                remove_counts(&mut txn.open_table(COUNTS).map_err(err)?, article.as_str())?;
                txn.open_table(META)
                    .map_err(err)?
                    .remove(article.as_str())
                    .map_err(err)?;
                txn.open_table(PAGES)
                    .map_err(err)?
                    .remove(article.as_str())
                    .map_err(err)?;
                txn.open_table(VISITORS)
                    .map_err(err)?
                    .remove(article.as_str())
                    .map_err(err)?;
                buckets::forget(txn, article.as_str(), now)?;
                series::forget(txn, article.as_str(), now)
            },
            change,
        )
        .await
    }

    /// The series of `article` in `window` at the store's clock, zero-filled.
    pub async fn series(&self, article: &ArticleId, window: SeriesWindow) -> Result<Series, StoreError> {
        let article = article.clone();
        self.blocking(move |s| {
            let txn = s.db()?.begin_read().map_err(err)?;
            series::read(&txn, article.as_str(), window, s.clock.now_ms())
        })
        .await
    }

    /// The visitor salt of `day` (`candidate` stored when there is none); salts older
    /// than two days are deleted.
    pub async fn salt(
        &self,
        day: crate::visitors::Day,
        candidate: crate::visitors::Salt,
    ) -> Result<crate::visitors::Salt, StoreError> {
        self.blocking(move |s| {
            let txn = s.db()?.begin_write().map_err(err)?;
            let salt = {
                let mut salts = txn.open_table(SALTS).map_err(err)?;
                let stored = salts.get(day).map_err(err)?.map(|g| g.value());
                let salt = match stored {
                    Some(salt) => salt,
                    None => {
                        salts.insert(day, candidate).map_err(err)?;
                        candidate
                    }
                };
                let oldest = day.saturating_sub(crate::visitors::KEEP_DAYS);
                salts.retain(|d, _| d >= oldest).map_err(err)?;
                txn.open_table(SKETCHES)
                    .map_err(err)?
                    .retain(|(d, _), _| d >= oldest)
                    .map_err(err)?;
                salt
            };
            txn.commit().map_err(err)?;
            Ok(salt)
        })
        .await
    }

    /// The sections and languages of the articles seen, each sorted.
    pub async fn meta_values(&self) -> Result<MetaValues, StoreError> {
        self.blocking(|s| series::meta_values(&s.db()?.begin_read().map_err(err)?))
            .await
    }

    /// The stored metadata of each article, in the order asked.
    pub async fn metas(&self, articles: &[ArticleId]) -> Result<Vec<Meta>, StoreError> {
        let articles = articles.to_vec();
        self.blocking(move |s| {
            let txn = s.db()?.begin_read().map_err(err)?;
            let (meta, pages) = (txn.open_table(META).map_err(err)?, txn.open_table(PAGES).map_err(err)?);
            articles.iter().map(|a| read_meta(&meta, &pages, a.as_str())).collect()
        })
        .await
    }

    /// Each article's visitors (summed over days), in the order asked.
    pub async fn visitors(&self, articles: &[ArticleId]) -> Result<Vec<u64>, StoreError> {
        let articles = articles.to_vec();
        self.blocking(move |s| {
            let txn = s.db()?.begin_read().map_err(err)?;
            let table = txn.open_table(VISITORS).map_err(err)?;
            articles
                .iter()
                .map(|a| Ok(table.get(a.as_str()).map_err(err)?.map_or(0, |g| g.value())))
                .collect()
        })
        .await
    }

    /// Replaces the metadata fields `meta` has (admin `PUT`).
    pub async fn set_meta(&self, article: &ArticleId, meta: &Meta) -> Result<(), StoreError> {
        let (article, meta) = (article.clone(), meta.clone());
        self.blocking(move |s| {
            let txn = s.db()?.begin_write().map_err(err)?;
            let merged = merge_meta(&txn, article.as_str(), &meta, true)?;
            series::note_values(&txn, &merged)?;
            let _gate = s.ranking.gate();
            txn.commit().map_err(err)?;
            s.ranking.record(Change::SetMeta(article, merged));
            Ok(())
        })
        .await
    }
}

impl Rankings for EmbeddedStore {
    /// Runs `rank` on the windows at the store's clock: buckets that left a window
    /// are subtracted first, then `rank` passes over the window's tallies.
    async fn rank<T: Send + 'static>(
        &self,
        rank: impl FnOnce(&Windows) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        self.blocking(move |s| {
            let reader = buckets::Reader(s.db()?.begin_read().map_err(err)?);
            let now = s.clock.now_ms();
            s.ranking
                .when_ready(TOP_WAITS_FOR_LOAD, |w| {
                    w.roll(&reader, now)?;
                    Ok(rank(w))
                })
                .unwrap_or(Err(StoreError::NotReady("the rankings are still loading")))
        })
        .await
    }
}

fn load_windows(db: &Database, ranking: &Ranking, now_ms: u64) -> Result<Windows, StoreError> {
    let txn = {
        let _gate = ranking.gate();
        let txn = db.begin_read().map_err(err)?;
        ranking.snapshot_opened();
        txn
    };
    let counts = txn.open_table(COUNTS).map_err(err)?;
    let meta_table = txn.open_table(META).map_err(err)?;
    let meta = meta_table.iter().map_err(err)?.filter_map(|row| {
        let (k, v) = match row {
            Ok(row) => row,
            Err(e) => return Some(Err(err(e))),
        };
        let (section, lang) = v.value();
        let id = ArticleId::parse(k.value()).ok()?;
        let m = Meta {
            section: section.map(Into::into),
            lang: lang.map(Into::into),
            ..Meta::default()
        };
        Some(Ok((id, m)))
    });
    // Bound before returning: the totals iterator borrows `counts`.
    let windows = Windows::load(&buckets::Reader(txn), now_ms, buckets::totals(&counts)?, meta);
    windows
}

/// Adds the batch's deltas and merges its metadata; each delta's metadata becomes
/// what is stored after the merge, so the windows show the stored section and language.
fn add_deltas(txn: &WriteTransaction, batch: &mut Batch) -> Result<(), StoreError> {
    let mut counts = txn.open_table(COUNTS).map_err(err)?;
    let mut add = |article: &str, counter: &str, n: u64| {
        upsert(&mut counts, (article, counter), |old| {
            old.unwrap_or(0).saturating_add(n)
        })
    };
    for d in &batch.articles {
        let article = d.article.as_str();
        if d.counts.views > 0 {
            add(article, VIEWS, d.counts.views)?;
        }
        for (network, n) in &d.counts.shares {
            add(article, &format!("{SHARE_PREFIX}{network}"), *n)?;
        }
    }
    add_visitors(txn, batch)?;
    for d in batch.articles.iter_mut().filter(|d| !d.meta.is_empty()) {
        d.meta = merge_meta(txn, d.article.as_str(), &d.meta, d.meta.signed)?;
    }
    Ok(())
}

/// Adds each article's visitor marks to its sketch of their day and what the sketch's
/// estimate grew by to the article's visitors.
fn add_visitors(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    let mut sketches = txn.open_table(SKETCHES).map_err(err)?;
    let mut totals = txn.open_table(VISITORS).map_err(err)?;
    for d in batch.articles.iter().filter(|d| !d.visitors.is_empty()) {
        let article = d.article.as_str();
        let mut grew = 0u64;
        for day_marks in d.visitors.chunk_by(|a, b| a.0 == b.0) {
            let day = day_marks[0].0;
            let mut sketch: Sketch = match sketches.get((day, article)).map_err(err)? {
                Some(g) => serde_json::from_slice(g.value()).map_err(corrupt)?,
                None => Sketch::new(),
            };
            let before = sketch.estimate();
            day_marks.iter().for_each(|(_, hash)| sketch.insert_hash(*hash));
            grew += sketch.estimate().saturating_sub(before) as u64;
            let bytes = serde_json::to_vec(&sketch).map_err(corrupt)?;
            sketches.insert((day, article), bytes.as_slice()).map_err(err)?;
        }
        if grew > 0 {
            upsert(&mut totals, article, |old| old.unwrap_or(0) + grew)?;
        }
    }
    Ok(())
}

/// Merges `incoming` into an article's stored metadata: every field it has when
/// `replace` (signed events, the admin API), else only fields not stored yet (the
/// first value stands). Answers the stored metadata after the merge.
fn merge_meta(txn: &WriteTransaction, article: &str, incoming: &Meta, replace: bool) -> Result<Meta, StoreError> {
    let mut meta = txn.open_table(META).map_err(err)?;
    let mut pages = txn.open_table(PAGES).map_err(err)?;
    let mut stored = read_meta(&meta, &pages, article)?;
    if stored.merge(incoming, replace) {
        meta.insert(article, (stored.section.as_deref(), stored.lang.as_deref()))
            .map_err(err)?;
        if stored.title.is_some() || stored.url.is_some() {
            pages
                .insert(article, (stored.title.as_deref(), stored.url.as_deref()))
                .map_err(err)?;
        }
    }
    Ok(stored)
}

/// The value of the `META` and `PAGES` tables: two optional texts.
type TwoTexts = (Option<&'static str>, Option<&'static str>);

fn read_meta(
    meta: &impl ReadableTable<&'static str, TwoTexts>,
    pages: &impl ReadableTable<&'static str, TwoTexts>,
    article: &str,
) -> Result<Meta, StoreError> {
    let mut out = Meta::default();
    if let Some(g) = meta.get(article).map_err(err)? {
        let (s, l) = g.value();
        out.section = s.map(Into::into);
        out.lang = l.map(Into::into);
    }
    if let Some(g) = pages.get(article).map_err(err)? {
        let (t, u) = g.value();
        out.title = t.map(Into::into);
        out.url = u.map(Into::into);
    }
    Ok(out)
}

fn read_counts(
    table: &impl ReadableTable<(&'static str, &'static str), u64>,
    article: &str,
) -> Result<Counts, StoreError> {
    let mut out = Counts::default();
    for row in table.range((article, "")..).map_err(err)? {
        let (k, v) = row.map_err(err)?;
        let (a, counter) = k.value();
        if a != article {
            break;
        }
        if counter == VIEWS {
            out.views = v.value();
        } else if let Some(network) = counter.strip_prefix(SHARE_PREFIX) {
            out.add_share(network, v.value());
        }
    }
    Ok(out)
}

fn remove_counts(table: &mut redb::Table<(&'static str, &'static str), u64>, article: &str) -> Result<(), StoreError> {
    // Counter names are ASCII ("views", "share:<network>"), all below \x7f.
    table
        .retain_in((article, "")..(article, "\u{7f}"), |_, _| false)
        .map_err(err)
}
