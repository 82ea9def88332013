//! Top windows on the embedded store with a controllable clock: buckets roll out of
//! each window without waiting, rankings survive a restart, admin delete forgets.

use crate::support as common;

use std::sync::Arc;

use common::batches;

use viewcounter::clock::ManualClock;
use viewcounter::event::{ArticleId, Networks};
use viewcounter::store::{ArticleDelta, EmbeddedStore, Rankings};
use viewcounter::top::{TopEntry, TopQuery};

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// A round start time (a multiple of a day), so bucket edges are easy to reason about.
const T0: u64 = 20_000 * DAY;

struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Option<EmbeddedStore>,
    seq: u64,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at(T0));
        let store = EmbeddedStore::open_with_clock(dir.path(), clock.clone()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Harness {
            dir,
            clock,
            store: Some(store),
            seq: 0,
            rt,
        }
    }

    fn store(&self) -> &EmbeddedStore {
        self.store.as_ref().expect("store open")
    }

    fn reopen(&mut self) {
        drop(self.store.take());
        self.store = Some(EmbeddedStore::open_with_clock(self.dir.path(), self.clock.clone()).unwrap());
    }

    /// Applies views (article, n, section) flushed now.
    fn views(&mut self, rows: &[(&str, u64, &str)]) {
        self.apply(batches::views(rows));
    }

    fn shares(&mut self, article: &str, shares: &[(&str, u64)]) {
        self.apply(vec![batches::shares(article, shares)]);
    }

    fn apply(&mut self, articles: Vec<ArticleDelta>) {
        self.seq += 1;
        let batch = batches::batch(self.seq, self.clock.now_ms_pub(), articles);
        self.rt.block_on(self.store().apply(&batch)).unwrap();
    }

    fn top(&self, query: &str) -> Vec<(String, u64)> {
        let q = TopQuery::parse(query, &Networks::default()).unwrap();
        let got: Vec<TopEntry> = self.rt.block_on(self.store().top(&q)).unwrap();
        got.into_iter().map(|e| (e.article, e.count)).collect()
    }
}

trait NowPub {
    fn now_ms_pub(&self) -> u64;
}

impl NowPub for ManualClock {
    fn now_ms_pub(&self) -> u64 {
        use viewcounter::clock::Clock;
        self.now_ms()
    }
}

fn ranked(rows: &[(&str, u64)]) -> Vec<(String, u64)> {
    rows.iter().map(|(a, n)| (a.to_string(), *n)).collect()
}

#[test]
fn every_window_holds_exactly_its_buckets_as_time_moves() {
    let mut h = Harness::new();
    h.views(&[("old", 5, "news")]);
    h.clock.advance(20 * MIN);
    h.views(&[("mid", 3, "news")]);
    h.clock.advance(14 * MIN);
    h.views(&[("new", 1, "news")]);

    // 34 minutes after "old": outside 15m, inside 1h.
    assert_eq!(h.top("window=15m"), ranked(&[("mid", 3), ("new", 1)]));
    assert_eq!(h.top("window=1h"), ranked(&[("old", 5), ("mid", 3), ("new", 1)]));
    h.clock.advance(MIN);
    assert_eq!(h.top("window=15m"), ranked(&[("new", 1)]), "mid rolled out of 15m");

    h.clock.advance(HOUR);
    assert_eq!(h.top("window=1h"), ranked(&[]));
    assert_eq!(h.top("window=24h"), ranked(&[("old", 5), ("mid", 3), ("new", 1)]));

    h.clock.advance(DAY);
    assert_eq!(h.top("window=24h"), ranked(&[]));
    assert_eq!(h.top("window=7d").len(), 3);

    h.clock.advance(7 * DAY);
    assert_eq!(h.top("window=7d"), ranked(&[]));
    assert_eq!(h.top("window=30d").len(), 3);

    h.clock.advance(30 * DAY);
    assert_eq!(h.top("window=30d"), ranked(&[]));
    assert_eq!(h.top("window=all"), ranked(&[("old", 5), ("mid", 3), ("new", 1)]));
}

#[test]
fn ties_are_broken_by_article_id_and_limit_cuts() {
    let mut h = Harness::new();
    h.views(&[("b", 2, "news"), ("a", 2, "news"), ("c", 7, "news"), ("d", 1, "news")]);
    assert_eq!(h.top("window=15m&limit=3"), ranked(&[("c", 7), ("a", 2), ("b", 2)]));
}

#[test]
fn section_and_lang_filter_and_shares_rank_by_network() {
    let mut h = Harness::new();
    h.views(&[("x1", 9, "sport"), ("x2", 4, "analytics"), ("x3", 6, "analytics")]);
    h.shares("x2", &[("telegram", 3), ("facebook", 1)]);
    h.shares("x3", &[("facebook", 5)]);
    assert_eq!(h.top("section=analytics"), ranked(&[("x3", 6), ("x2", 4)]));
    assert_eq!(h.top("section=analytics&lang=en"), ranked(&[("x3", 6), ("x2", 4)]));
    assert_eq!(h.top("section=analytics&lang=ru"), ranked(&[]));
    assert_eq!(h.top("metric=shares"), ranked(&[("x3", 5), ("x2", 4)]));
    assert_eq!(h.top("metric=shares&network=telegram"), ranked(&[("x2", 3)]));
}

#[test]
fn windows_are_rebuilt_after_a_restart() {
    let mut h = Harness::new();
    h.views(&[("r", 4, "news")]);
    h.clock.advance(10 * MIN);
    h.views(&[("s", 2, "news")]);
    h.reopen();
    assert_eq!(h.top("window=15m"), ranked(&[("r", 4), ("s", 2)]));
    h.clock.advance(6 * MIN);
    h.reopen();
    assert_eq!(h.top("window=15m"), ranked(&[("s", 2)]));
    assert_eq!(h.top("window=all"), ranked(&[("r", 4), ("s", 2)]));
}

#[test]
fn a_deleted_article_leaves_every_window_and_new_views_start_from_zero() {
    let mut h = Harness::new();
    h.views(&[("gone", 8, "news"), ("kept", 1, "news")]);
    h.rt.block_on(h.store().delete(&ArticleId::parse("gone").unwrap()))
        .unwrap();
    assert_eq!(h.top("window=1h"), ranked(&[("kept", 1)]));
    assert_eq!(h.top("window=all"), ranked(&[("kept", 1)]));
    h.clock.advance(MIN);
    h.views(&[("gone", 2, "news")]);
    h.clock.advance(20 * MIN);
    assert_eq!(h.top("window=1h"), ranked(&[("gone", 2), ("kept", 1)]));
}
