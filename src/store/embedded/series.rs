//! The embedded store's series and filter values: each batch adds its deltas to one
//! hour row and one day row per article, in the batch's own transaction, and prunes
//! the rows past their retention there too (no background job); the sections and
//! languages seen are kept as keys of one small table for `/v1/meta`.

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{err, upsert};
use crate::event::Meta;
use crate::store::series::{MetaValues, Point, Series, SeriesWindow, Step};
use crate::store::{Batch, StoreError};

type SeriesTable = TableDefinition<'static, (u64, &'static str), (u64, u64)>;

/// (hour, article) -> (views, shares).
pub const HOURS: SeriesTable = TableDefinition::new("series_hours");
/// (day, article) -> (views, shares).
pub const DAYS: SeriesTable = TableDefinition::new("series_days");
/// (`section` | `lang`, value) -> (): the values the filters offer.
pub const META_VALUES: TableDefinition<(&str, &str), ()> = TableDefinition::new("meta_values");

fn table(step: Step) -> SeriesTable {
    match step {
        Step::Hour => HOURS,
        Step::Day => DAYS,
    }
}

/// Adds `batch` to its hour and day rows, then prunes rows older than the retention
/// at `now_ms`. Rows are keyed by time first, so pruning is one range removal.
pub fn write(txn: &WriteTransaction, batch: &Batch, now_ms: u64) -> Result<(), StoreError> {
    for step in Step::ALL {
        let mut t = txn.open_table(table(step)).map_err(err)?;
        let bucket = step.bucket(batch.flushed_at_ms);
        let oldest = step.oldest_kept(now_ms);
        if bucket >= oldest {
            for d in &batch.articles {
                let p = Point::of(d);
                if p.is_zero() {
                    continue;
                }
                upsert(&mut t, (bucket, d.article.as_str()), |old| {
                    let (v, s) = old.unwrap_or((0, 0));
                    (v + p.views, s + p.shares)
                })?;
            }
        }
        t.retain_in(..(oldest, ""), |_, _| false).map_err(err)?;
    }
    Ok(())
}

/// Records the sections and languages of the batch's articles as stored (after the
/// merge of their metadata: a value the first writer's refused is not listed).
/// The table is opened once, and only when an article has metadata: most batches carry
/// none (an article's metadata goes to the store when it changes, not every flush).
pub fn note_meta(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    let mut with_meta = batch.articles.iter().filter(|d| has_values(&d.meta)).peekable();
    if with_meta.peek().is_none() {
        return Ok(());
    }
    let mut t = txn.open_table(META_VALUES).map_err(err)?;
    with_meta.try_for_each(|d| insert_values(&mut t, &d.meta))
}

/// Records the section and language of `meta`, where it has them.
pub fn note_values(txn: &WriteTransaction, meta: &Meta) -> Result<(), StoreError> {
    let mut t = txn.open_table(META_VALUES).map_err(err)?;
    insert_values(&mut t, meta)
}

fn has_values(meta: &Meta) -> bool {
    meta.section.is_some() || meta.lang.is_some()
}

fn insert_values(t: &mut Table<'_, (&'static str, &'static str), ()>, meta: &Meta) -> Result<(), StoreError> {
    for (kind, value) in [("section", &meta.section), ("lang", &meta.lang)] {
        if let Some(v) = value.as_deref() {
            t.insert((kind, v), ()).map_err(err)?;
        }
    }
    Ok(())
}

/// Removes every series row of `article` still kept at `now_ms` (admin delete).
pub fn forget(txn: &WriteTransaction, article: &str, now_ms: u64) -> Result<(), StoreError> {
    for step in Step::ALL {
        let mut t = txn.open_table(table(step)).map_err(err)?;
        // One bucket past now: a batch flushed by a clock slightly ahead.
        for bucket in step.oldest_kept(now_ms)..=step.bucket(now_ms) + 1 {
            t.remove((bucket, article)).map_err(err)?;
        }
    }
    Ok(())
}

/// The series of `article` in `window` at `now_ms`, zero-filled.
pub fn read(txn: &ReadTransaction, article: &str, window: SeriesWindow, now_ms: u64) -> Result<Series, StoreError> {
    let (step, _) = window.shape();
    let t = txn.open_table(table(step)).map_err(err)?;
    let buckets = window.buckets(now_ms);
    let first = *buckets.start();
    let oldest = step.oldest_kept(now_ms);
    let mut points = Vec::with_capacity(buckets.clone().count());
    for bucket in buckets {
        let p = match t.get((bucket, article)).map_err(err)? {
            Some(g) if bucket >= oldest => {
                let (views, shares) = g.value();
                Point { views, shares }
            }
            _ => Point::default(),
        };
        points.push(p);
    }
    Ok(Series { step, first, points })
}

/// The sections and languages seen, each sorted.
pub fn meta_values(txn: &ReadTransaction) -> Result<MetaValues, StoreError> {
    let t = txn.open_table(META_VALUES).map_err(err)?;
    let mut out = MetaValues::default();
    for row in t.iter().map_err(err)? {
        let (k, _) = row.map_err(err)?;
        let (kind, value) = k.value();
        match kind {
            "section" => out.sections.push(value.to_string()),
            "lang" => out.langs.push(value.to_string()),
            _ => {}
        }
    }
    // Keys are sorted by (kind, value): each list already is.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;
    use redb::ReadableDatabase;

    use crate::event::ArticleId;
    use crate::store::{ArticleDelta, BatchId};

    const HOUR: u64 = 3_600_000;

    fn one_view(at_ms: u64) -> Batch {
        Batch {
            id: BatchId {
                instance: "t".into(),
                epoch_ms: 0,
                seq: at_ms,
                chunk: 0,
            },
            flushed_at_ms: at_ms,
            articles: vec![ArticleDelta {
                article: ArticleId::parse("a").unwrap(),
                counts: Counts::of_views(1),
                meta: Meta::default(),
                visitors: Vec::new(),
            }],
        }
    }

    fn rows(db: &redb::Database, step: Step) -> Vec<u64> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(table(step)).unwrap();
        t.iter().unwrap().map(|r| r.unwrap().0.value().0).collect()
    }

    #[test]
    fn a_flush_prunes_the_rows_past_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let write_at = |at: u64| {
            let txn = db.begin_write().unwrap();
            write(&txn, &one_view(at), at).unwrap();
            txn.commit().unwrap();
        };
        let t0 = 500_000 * HOUR;
        write_at(t0);
        write_at(t0 + 7 * 24 * HOUR);
        assert_eq!(
            rows(&db, Step::Hour),
            [500_000, 500_000 + 168],
            "still kept on the 7th day"
        );
        write_at(t0 + 7 * 24 * HOUR + HOUR);
        assert_eq!(rows(&db, Step::Hour), [500_000 + 168, 500_000 + 169]);
        assert_eq!(rows(&db, Step::Day).len(), 2, "days are kept 400 days");
        write_at(t0 + 401 * 24 * HOUR);
        let d0 = Step::Day.bucket(t0);
        assert_eq!(rows(&db, Step::Day), [d0 + 7, d0 + 401], "day {d0} is 401 days old");
    }
}
