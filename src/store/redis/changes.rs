//! The admin streams as the top windows read them: each admin change recorded in its
//! partition's stream (`<prefix>:{pN}:admin`, written by admin.rs's scripts) is the
//! difference it made to each counter, read past the last id an instance has seen.

use super::buckets::add_counter;
use super::keys::{Partition, PARTITIONS};
use super::RedisStore;
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::store::StoreError;

/// Entries one refresh reads of a stream.
const READ_BATCH: usize = 1_000;

/// "Nothing read yet": the id before every stream entry.
pub const START: &str = "0-0";

/// One change as the streams record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The article changed.
    pub article: ArticleId,
    /// Admin delete: the article also leaves the rolling windows.
    pub forget: bool,
    /// Added to the all-time totals.
    pub raise: Counts,
    /// Taken from the all-time totals.
    pub lower: Counts,
    /// Admin `PUT` of metadata: the section and language now stored (fields `section`
    /// and `lang`, empty for none), which replace what the windows hold.
    pub meta: Option<Meta>,
}

impl Change {
    /// Parses a stream entry's fields (`article`, `forget`, then `<counter> <delta>`);
    /// `None` for an entry this version does not understand.
    fn parse(fields: &[String]) -> Option<Change> {
        let mut change = Change {
            article: ArticleId::parse("x").ok()?,
            forget: false,
            raise: Counts::default(),
            lower: Counts::default(),
            meta: None,
        };
        let mut article = None;
        for pair in fields.chunks(2) {
            let [name, value] = pair else { return None };
            match name.as_str() {
                "article" => article = Some(ArticleId::parse(value).ok()?),
                "forget" => change.forget = value == "1",
                "section" | "lang" => {
                    let meta = change.meta.get_or_insert_with(Meta::default);
                    let field = if name == "section" {
                        &mut meta.section
                    } else {
                        &mut meta.lang
                    };
                    *field = (!value.is_empty()).then(|| value.as_str().into());
                }
                counter => {
                    let delta: i64 = value.parse().ok()?;
                    let into = if delta >= 0 {
                        &mut change.raise
                    } else {
                        &mut change.lower
                    };
                    if !add_counter(into, counter, delta.unsigned_abs()) {
                        return None;
                    }
                }
            }
        }
        change.article = article?;
        Some(change)
    }
}

/// Entries read from the admin streams: per partition read, its new last id and the
/// changes (None for an entry this version cannot read).
pub type Read = Vec<(Partition, Vec<(String, Option<Change>)>)>;

impl RedisStore {
    /// Reads the admin streams of `partitions` past `last_read` (indexed by partition).
    pub(super) async fn read_changes(
        &self,
        last_read: &[String],
        partitions: &[Partition],
    ) -> Result<Read, StoreError> {
        let reads: Vec<redis::Cmd> = partitions
            .iter()
            .map(|p| {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(self.keys.admin(*p))
                    .arg(format!("({}", last_read[p.index() as usize]))
                    .arg("+")
                    .arg("COUNT")
                    .arg(READ_BATCH);
                cmd
            })
            .collect();
        let replies: Vec<Vec<(String, Vec<String>)>> = self.each_refresh_read(&reads).await?;
        Ok(partitions
            .iter()
            .zip(replies)
            .map(|(p, entries)| {
                let parsed = entries.into_iter().map(|(id, f)| (id, Change::parse(&f))).collect();
                (*p, parsed)
            })
            .collect())
    }
}

/// Every partition, for a refresh.
pub fn all_partitions() -> Vec<Partition> {
    (0..PARTITIONS).map(Partition::from_index).collect()
}

/// The last id of an admin stream as `XREVRANGE <stream> + - COUNT 1` answers it.
pub fn last_id(reply: redis::Value) -> Result<String, StoreError> {
    let entries: Vec<(String, Vec<String>)> = redis::from_redis_value(reply).map_err(StoreError::from)?;
    Ok(entries
        .into_iter()
        .next()
        .map_or_else(|| START.to_string(), |(id, _)| id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_change_splits_into_what_it_raised_and_lowered() {
        let c = Change::parse(&fields(&[
            "article", "a-1", "forget", "0", "views", "5", "share:x", "-2",
        ]))
        .unwrap();
        assert_eq!(c.article.as_str(), "a-1");
        assert!(!c.forget);
        assert_eq!((c.raise.views, c.raise.shares.clone()), (5, vec![]));
        assert_eq!((c.lower.views, c.lower.shares.clone()), (0, vec![("x".into(), 2)]));
    }

    #[test]
    fn a_metadata_change_carries_the_stored_section_and_language() {
        let c = Change::parse(&fields(&[
            "article", "a-1", "forget", "0", "section", "politics", "lang", "",
        ]))
        .unwrap();
        let meta = c.meta.expect("a metadata change");
        assert_eq!((meta.section.as_deref(), meta.lang), (Some("politics"), None));
        assert!(c.raise.is_zero() && c.lower.is_zero());
        let counts_only = Change::parse(&fields(&["article", "a-1", "forget", "0", "views", "1"])).unwrap();
        assert!(counts_only.meta.is_none());
    }

    #[test]
    fn entries_this_version_cannot_read_are_refused() {
        assert!(Change::parse(&fields(&["forget", "1"])).is_none(), "no article");
        assert!(Change::parse(&fields(&["article", "a", "views", "many"])).is_none());
        assert!(Change::parse(&fields(&["article", "a", "likes", "1"])).is_none());
        assert!(Change::parse(&fields(&["article", "a", "forget"])).is_none());
    }
}
