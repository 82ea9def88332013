//! In-memory counts of every `/v1/top` window, kept up to date as batches are applied
//! and as buckets roll out (their rows are read back from the bucket source and
//! subtracted), so a ranking is one pass over one column: no scan of the store.
//!
//! Layout, for at most `--max-articles` articles (see BENCHMARKS.md for the measured
//! bytes per article): each article is interned once (`slots.rs`: its id's bytes in
//! one buffer, a `u32` slot in a hash table that holds only slots) and every
//! per-article datum is a vector indexed by slot: a 12-byte [`Record`] (last seen,
//! section and language as ids of a shared, counted table of names), and per window
//! plus all time a [`Column`] of views and shares totals (8 bytes each) with the
//! shares by network in a sparse map of the pairs that have some. Dense columns cost
//! 16 bytes per window for an article that had nothing in it, but a hash map entry
//! per active article costs more than that (key, value, control byte and the table's
//! slack), and a ranking scans a dense column in order, reading the filters' fields
//! from the records in the same order. A freed slot (eviction, admin delete) is
//! zeroed everywhere and reused before the vectors grow, so their length is the most
//! articles ever tracked at once: at most the cap.

mod column;
mod filters;
mod names;
mod slots;

use std::collections::HashSet;

pub use filters::Basis;

use column::{Column, NetworkId};
use names::{NameId, Names};
use slots::{Slot, Slots};

use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::store::{ArticleDelta, Batch, StoreError};
use crate::top::{top_n, Granularity, Metric, TopEntry, TopQuery, Window};

/// Where the rows of a past bucket can be read back (the store's bucket tables).
pub trait BucketSource {
    /// Every article's deltas in bucket `bucket` of granularity `g`.
    fn bucket_rows(&self, g: Granularity, bucket: u64) -> Result<Vec<ArticleDelta>, StoreError>;
}

/// What the windows hold of an article besides its counts.
#[derive(Debug, Clone, Copy, Default)]
struct Record {
    /// When a batch last held it (Unix seconds; 0: loaded or set by an admin).
    seen: u32,
    section: NameId,
    lang: NameId,
}

#[derive(Debug)]
struct Rolling {
    window: Window,
    /// The oldest bucket the window holds.
    first: u64,
    /// The newest bucket added (batches may arrive after the window last rolled).
    newest: u64,
    counts: Column,
}

/// Counts of every window plus the all-time totals and each article's section and
/// language, for at most `cap` articles (`--max-articles`): past it the least
/// recently seen leave (their counts stay in the store; one that comes back is
/// ranked by what it gets from then on).
#[derive(Debug)]
pub struct Windows {
    slots: Slots,
    records: Vec<Record>,
    all: Column,
    rolling: Vec<Rolling>,
    names: Names,
    /// Share networks by [`NetworkId`]: the names the deltas carried (a handful).
    networks: Vec<Box<str>>,
    cap: usize,
    /// A new epoch ([`column::new_epoch`]) each time an article's section or language
    /// changes or an article leaves: a ranking kept from before is then recomputed,
    /// not brought up to date from the columns' journals.
    meta_epoch: u64,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            slots: Slots::default(),
            records: Vec::new(),
            all: Column::default(),
            rolling: Vec::new(),
            names: Names::default(),
            networks: Vec::new(),
            cap: usize::MAX,
            meta_epoch: column::new_epoch(),
        }
    }
}

fn first_bucket(window: Window, now_ms: u64) -> Option<(Granularity, u64)> {
    let (g, n) = window.buckets()?;
    Some((g, (g.bucket(now_ms) + 1).saturating_sub(n)))
}

/// True for a delta that changes nothing the windows hold: visitor marks alone (a
/// drain sends an article's marks even when it has no count), or a title or url alone
/// (not held here). It must not make an article tracked.
fn is_idle(d: &ArticleDelta) -> bool {
    d.counts.views == 0
        && d.counts.shares.iter().all(|(_, n)| *n == 0)
        && d.meta.section.is_none()
        && d.meta.lang.is_none()
}

impl Windows {
    /// Builds every window at `now_ms` from the source's buckets, with the given
    /// all-time totals and metadata (metadata of an article with no counts is not
    /// kept). Both are taken one article at a time, so a store can stream them from
    /// its tables instead of building a map of every article first.
    pub fn load(
        source: &impl BucketSource,
        now_ms: u64,
        all: impl IntoIterator<Item = Result<(ArticleId, Counts), StoreError>>,
        meta: impl IntoIterator<Item = Result<(ArticleId, Meta), StoreError>>,
    ) -> Result<Windows, StoreError> {
        let mut w = Windows::default();
        for row in all {
            let (id, total) = row?;
            if !total.is_zero() {
                let s = w.slot_for(&id);
                w.add_to_all(s, &total);
            }
        }
        for g in [Granularity::Minute, Granularity::Hour] {
            let first: Vec<(Window, u64)> = Window::ALL
                .into_iter()
                .filter_map(|win| {
                    first_bucket(win, now_ms)
                        .filter(|(wg, _)| *wg == g)
                        .map(|(_, f)| (win, f))
                })
                .collect();
            let oldest = first.iter().map(|(_, f)| *f).min().unwrap_or(0);
            let from = w.rolling.len();
            for (window, first) in &first {
                w.rolling.push(Rolling {
                    window: *window,
                    first: *first,
                    newest: g.bucket(now_ms),
                    counts: Column::default(),
                });
            }
            w.grow_columns();
            for bucket in oldest..=g.bucket(now_ms) {
                let holding: Vec<usize> = (from..w.rolling.len())
                    .filter(|&r| bucket >= w.rolling[r].first)
                    .collect();
                for d in source.bucket_rows(g, bucket)? {
                    if !is_idle(&d) {
                        let s = w.slot_for(&d.article);
                        w.add_delta(s, &d, &holding, false);
                    }
                }
            }
        }
        for row in meta {
            let (id, m) = row?;
            if let Some(s) = w.slots.find(id.as_str()) {
                w.merge_meta(s, &m);
            }
        }
        Ok(w)
    }

    /// The slot of `article`, tracking it (as seen longest ago) if new.
    fn slot_for(&mut self, article: &ArticleId) -> Slot {
        self.interned(article).0
    }

    /// [`Windows::slot_for`], and whether the article is new.
    fn interned(&mut self, article: &ArticleId) -> (Slot, bool) {
        let (s, new) = self.slots.intern(article.as_str());
        if new && s as usize == self.records.len() {
            self.records.push(Record::default());
            self.grow_columns();
        }
        (s, new)
    }

    fn grow_columns(&mut self) {
        let len = self.slots.extent();
        self.all.grow(len);
        self.rolling.iter_mut().for_each(|r| r.counts.grow(len));
    }

    /// The id of a share network, added to the table if new.
    fn network(&mut self, name: &str) -> NetworkId {
        if let Some(i) = self.networks.iter().position(|n| &**n == name) {
            return i as NetworkId;
        }
        self.networks.push(name.into());
        NetworkId::try_from(self.networks.len() - 1).expect("fewer share networks than u16 ids")
    }

    fn find_network(&self, name: &str) -> Option<NetworkId> {
        self.networks.iter().position(|n| &**n == name).map(|i| i as NetworkId)
    }

    /// Adds a delta's counts to the rolling windows `holding`, and to all time if
    /// `to_all` (a batch; a bucket read at load is in the totals already).
    fn add_delta(&mut self, s: Slot, d: &ArticleDelta, holding: &[usize], to_all: bool) {
        let shares: Vec<(NetworkId, u64)> = d.counts.shares.iter().map(|(n, c)| (self.network(n), *c)).collect();
        let columns = std::iter::once(&mut self.all).filter(|_| to_all).chain(
            self.rolling
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| holding.contains(i))
                .map(|(_, r)| &mut r.counts),
        );
        for c in columns {
            c.add_views(s, d.counts.views);
            shares.iter().for_each(|(n, k)| c.add_shares(s, *n, *k));
        }
    }

    fn add_to_all(&mut self, s: Slot, t: &Counts) {
        self.all.add_views(s, t.views);
        for (name, n) in &t.shares {
            let net = self.network(name);
            self.all.add_shares(s, net, *n);
        }
    }

    fn sub_from_all(&mut self, s: Slot, t: &Counts) {
        self.all.sub_views(s, t.views);
        for (name, n) in &t.shares {
            if let Some(net) = self.find_network(name) {
                self.all.sub_shares(s, net, *n);
            }
        }
    }

    /// Sets the section and language a delta or the store gives (a field it leaves
    /// out is kept).
    fn merge_meta(&mut self, s: Slot, m: &Meta) {
        if let Some(section) = &m.section {
            self.set_name(s, |r| &mut r.section, Some(section));
        }
        if let Some(lang) = &m.lang {
            self.set_name(s, |r| &mut r.lang, Some(lang));
        }
    }

    fn set_name(&mut self, s: Slot, field: fn(&mut Record) -> &mut NameId, name: Option<&str>) {
        let old = *field(&mut self.records[s as usize]);
        if self.names.name(old) == name {
            return;
        }
        let new = name.map_or(0, |n| self.names.acquire(n));
        self.names.release(old);
        *field(&mut self.records[s as usize]) = new;
        self.meta_epoch = column::new_epoch();
    }

    /// Caps the articles tracked (`--max-articles`), evicting at once if over it.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        self.enforce_cap();
    }

    /// How many articles are tracked.
    pub fn tracked(&self) -> usize {
        self.slots.live()
    }

    /// Past the cap, evicts the least recently seen down to 1/64 below it, so the
    /// O(tracked) selection runs once per cap/64 new articles, not for each.
    fn enforce_cap(&mut self) {
        let live = self.slots.live();
        if live <= self.cap {
            return;
        }
        let evict = live - (self.cap - self.cap / 64);
        let mut times: Vec<u32> = self.slots.iter().map(|s| self.records[s as usize].seen).collect();
        let (_, threshold, _) = times.select_nth_unstable(evict - 1);
        let threshold = *threshold;
        drop(times);
        let below = self
            .slots
            .iter()
            .filter(|s| self.records[*s as usize].seen < threshold)
            .count();
        let mut ties = evict - below;
        let gone: Vec<Slot> = self
            .slots
            .iter()
            .filter(|s| {
                let seen = self.records[*s as usize].seen;
                seen < threshold
                    || (seen == threshold && ties > 0 && {
                        ties -= 1;
                        true
                    })
            })
            .collect();
        gone.into_iter().for_each(|s| self.free(s));
    }

    /// Forgets slot `s` everywhere and frees it for reuse.
    fn free(&mut self, s: Slot) {
        self.all.clear_slot(s);
        self.rolling.iter_mut().for_each(|r| r.counts.clear_slot(s));
        let r = std::mem::take(&mut self.records[s as usize]);
        self.names.release(r.section);
        self.names.release(r.lang);
        self.slots.free(s);
        self.meta_epoch = column::new_epoch();
    }

    fn touch(&mut self, s: Slot, at_s: u32) {
        let seen = &mut self.records[s as usize].seen;
        *seen = (*seen).max(at_s);
    }

    /// Subtracts the buckets that left each window by `now_ms`.
    pub fn roll(&mut self, source: &impl BucketSource, now_ms: u64) -> Result<(), StoreError> {
        for i in 0..self.rolling.len() {
            let r = &mut self.rolling[i];
            let Some((g, new_first)) = first_bucket(r.window, now_ms) else {
                continue;
            };
            if r.newest < new_first {
                // Everything held has left the window.
                r.counts.clear();
                r.first = r.first.max(new_first);
            }
            // Buckets past the retention have no rows left to subtract.
            r.first = r.first.max(g.bucket(now_ms).saturating_sub(g.retention()));
            while self.rolling[i].first < new_first {
                for d in source.bucket_rows(g, self.rolling[i].first)? {
                    self.sub_delta(i, &d);
                }
                self.rolling[i].first += 1;
            }
        }
        Ok(())
    }

    /// Takes a delta from rolling window `i` (nothing for an article not tracked).
    fn sub_delta(&mut self, i: usize, d: &ArticleDelta) {
        let Some(s) = self.slots.find(d.article.as_str()) else {
            return;
        };
        let nets: Vec<(NetworkId, u64)> = d
            .counts
            .shares
            .iter()
            .filter_map(|(n, c)| Some((self.find_network(n)?, *c)))
            .collect();
        let counts = &mut self.rolling[i].counts;
        counts.sub_views(s, d.counts.views);
        nets.into_iter().for_each(|(n, c)| counts.sub_shares(s, n, c));
    }

    /// The buckets the next `roll(.., now_ms)` reads back, so a source that must fetch
    /// them first (the Redis store) can do so in one round trip.
    pub fn leaving(&self, now_ms: u64) -> HashSet<(Granularity, u64)> {
        let mut out = HashSet::new();
        for r in &self.rolling {
            let Some((g, new_first)) = first_bucket(r.window, now_ms) else {
                continue;
            };
            if r.newest < new_first {
                continue;
            }
            let first = r.first.max(g.bucket(now_ms).saturating_sub(g.retention()));
            out.extend((first..new_first).map(|b| (g, b)));
        }
        out
    }

    /// Adds an applied batch to all time and to every window that still holds its
    /// bucket. A delta with no counts and no section or language (one carrying only
    /// visitor marks) changes nothing.
    pub fn apply(&mut self, batch: &Batch) {
        let at_s = u32::try_from(batch.flushed_at_ms / 1000).unwrap_or(u32::MAX);
        let mut holding = Vec::with_capacity(self.rolling.len());
        for (i, r) in self.rolling.iter_mut().enumerate() {
            let (g, _) = r.window.buckets().expect("rolling windows have buckets");
            let bucket = g.bucket(batch.flushed_at_ms);
            if bucket >= r.first {
                r.newest = r.newest.max(bucket);
                holding.push(i);
            }
        }
        for d in batch.articles.iter().filter(|d| !is_idle(d)) {
            let (s, new) = self.interned(&d.article);
            self.touch(s, at_s);
            self.add_delta(s, d, &holding, true);
            let epoch = self.meta_epoch;
            self.merge_meta(s, &d.meta);
            if new {
                // An article met for the first time was in no ranking: its section and
                // language change none, and it enters its lists as a count that rose
                // (journaled just above).
                self.meta_epoch = epoch;
            }
        }
        self.enforce_cap();
    }

    /// Replaces an article's section and language (admin set); title and url are not
    /// held here (they are read per article from the store).
    pub fn set_meta(&mut self, article: &ArticleId, meta: Meta) {
        let s = self.slot_for(article);
        self.set_name(s, |r| &mut r.section, meta.section.as_deref());
        self.set_name(s, |r| &mut r.lang, meta.lang.as_deref());
        self.enforce_cap();
    }

    /// Replaces an article's all-time totals (admin set).
    pub fn set_total(&mut self, article: &ArticleId, total: Counts) {
        let s = self.slot_for(article);
        self.all.clear_slot(s);
        self.add_to_all(s, &total);
        self.enforce_cap();
    }

    /// Applies an admin change made through any instance: `raise` is added to the
    /// article's all-time total and `lower` taken from it; `forget` (an admin delete,
    /// whose buckets were rewritten without the article) also drops it from the
    /// rolling windows and forgets its metadata, and stops tracking it if its total
    /// is then zero.
    pub fn admin_change(&mut self, article: &ArticleId, raise: &Counts, lower: &Counts, forget: bool) {
        let s = self.slot_for(article);
        self.add_to_all(s, raise);
        self.sub_from_all(s, lower);
        if forget {
            let zero = self.all.views()[s as usize] == 0 && self.all.shares()[s as usize] == 0;
            if zero {
                self.free(s);
            } else {
                self.rolling.iter_mut().for_each(|r| r.counts.clear_slot(s));
                self.set_name(s, |r| &mut r.section, None);
                self.set_name(s, |r| &mut r.lang, None);
            }
        }
        self.enforce_cap();
    }

    /// Forgets an article everywhere (admin delete).
    pub fn forget(&mut self, article: &ArticleId) {
        if let Some(s) = self.slots.find(article.as_str()) {
            self.free(s);
        }
    }

    /// The counts of `window`.
    fn column(&self, window: Window) -> &Column {
        match window {
            Window::All => &self.all,
            w => {
                &self
                    .rolling
                    .iter()
                    .find(|r| r.window == w)
                    .expect("every rolling window is loaded")
                    .counts
            }
        }
    }

    /// Slot `s`'s row of a ranking, with `count`.
    fn entry(&self, s: Slot, count: u64) -> TopEntry {
        let r = &self.records[s as usize];
        TopEntry {
            article: self.slots.id(s).to_string(),
            count,
            section: self.names.name(r.section).map(String::from),
            lang: self.names.name(r.lang).map(String::from),
            title: None,
            url: None,
        }
    }

    /// The ranking of `q` (call `roll` first).
    pub fn top(&self, q: &TopQuery) -> Vec<TopEntry> {
        let counts = self.column(q.window);
        // A filter naming a section or language no article has matches nothing.
        let wanted = |name: &Option<String>| match name {
            None => Some(None),
            Some(n) => self.names.find(n).map(Some),
        };
        let (Some(section), Some(lang)) = (wanted(&q.section), wanted(&q.lang)) else {
            return Vec::new();
        };
        let records = &self.records;
        let keep = |s: Slot| {
            let r = &records[s as usize];
            section.is_none_or(|id| r.section == id) && lang.is_none_or(|id| r.lang == id)
        };
        let id = |s: Slot| self.slots.id_bytes(s);
        let dense = |column: &[u64]| {
            top_n(
                column.iter().enumerate().map(|(s, c)| (s as Slot, *c)),
                q.limit,
                keep,
                id,
            )
        };
        let best = match &q.metric {
            Metric::Views => dense(counts.views()),
            Metric::Shares(None) => dense(counts.shares()),
            Metric::Shares(Some(network)) => match self.find_network(network) {
                Some(n) => top_n(counts.shares_on(n), q.limit, keep, id),
                None => Vec::new(),
            },
        };
        best.into_iter().map(|(s, count)| self.entry(s, count)).collect()
    }
}

#[cfg(test)]
mod tests;
