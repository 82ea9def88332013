use std::collections::HashMap;

use super::*;
use crate::event::Networks;
use crate::store::BatchId;

const NOW: u64 = 1_790_000_000_000;
const MINUTE: u64 = 60_000;

/// Buckets by (granularity, number), as a store's bucket tables hold them.
#[derive(Default)]
struct Buckets(HashMap<(Granularity, u64), Vec<ArticleDelta>>);

impl BucketSource for Buckets {
    fn bucket_rows(&self, g: Granularity, bucket: u64) -> Result<Vec<ArticleDelta>, StoreError> {
        Ok(self.0.get(&(g, bucket)).cloned().unwrap_or_default())
    }
}

impl Buckets {
    /// Records `batch` in its minute and hour buckets, as a store does when applying it.
    fn record(&mut self, batch: &Batch) {
        for g in [Granularity::Minute, Granularity::Hour] {
            let rows = self.0.entry((g, g.bucket(batch.flushed_at_ms))).or_default();
            rows.extend(batch.articles.iter().cloned());
        }
    }
}

fn delta(article: &str, views: u64, shares: &[(&str, u64)]) -> ArticleDelta {
    ArticleDelta {
        article: ArticleId::parse(article).unwrap(),
        counts: Counts::new(views, shares.iter().copied()),
        meta: Meta::default(),
        visitors: Vec::new(),
    }
}

fn with_meta(mut d: ArticleDelta, section: &str, lang: &str) -> ArticleDelta {
    d.meta.section = Some(section.into());
    d.meta.lang = Some(lang.into());
    d
}

fn batch(at_ms: u64, articles: Vec<ArticleDelta>) -> Batch {
    Batch {
        id: BatchId {
            instance: "test".into(),
            epoch_ms: 1,
            seq: at_ms,
            chunk: 0,
        },
        flushed_at_ms: at_ms,
        articles,
    }
}

fn empty_at(now: u64) -> Windows {
    Windows::load(&Buckets::default(), now, None, None).unwrap()
}

fn top(w: &Windows, query: &str) -> Vec<(String, u64)> {
    let q = TopQuery::parse(query, &Networks::default()).unwrap();
    w.top(&q).into_iter().map(|e| (e.article, e.count)).collect()
}

fn ranked(rows: &[(&str, u64)]) -> Vec<(String, u64)> {
    rows.iter().map(|(a, c)| (a.to_string(), *c)).collect()
}

fn id(s: &str) -> ArticleId {
    ArticleId::parse(s).unwrap()
}

#[test]
fn a_batch_counts_in_every_window_and_leaves_each_as_its_buckets_roll_out() {
    let mut buckets = Buckets::default();
    let mut w = empty_at(NOW);
    let b = batch(NOW, vec![delta("a", 3, &[("x", 2)]), delta("b", 1, &[])]);
    buckets.record(&b);
    w.apply(&b);
    for window in ["15m", "1h", "24h", "7d", "30d", "all"] {
        assert_eq!(
            top(&w, &format!("window={window}")),
            ranked(&[("a", 3), ("b", 1)]),
            "{window}"
        );
    }
    w.roll(&buckets, NOW + 20 * MINUTE).unwrap();
    assert_eq!(top(&w, "window=15m"), ranked(&[]), "gone from 15m after 20 minutes");
    assert_eq!(top(&w, "window=1h&metric=shares"), ranked(&[("a", 2)]));
    w.roll(&buckets, NOW + 2 * 60 * MINUTE).unwrap();
    assert_eq!(top(&w, "window=1h"), ranked(&[]));
    assert_eq!(top(&w, "window=24h"), ranked(&[("a", 3), ("b", 1)]));
    assert_eq!(top(&w, "window=all&metric=shares&network=x"), ranked(&[("a", 2)]));
}

#[test]
fn a_later_batch_adds_to_what_a_window_holds_and_subtracting_keeps_the_rest() {
    let mut buckets = Buckets::default();
    let mut w = empty_at(NOW);
    let first = batch(NOW, vec![delta("a", 5, &[("x", 1), ("vk", 4)])]);
    let second = batch(NOW + 10 * MINUTE, vec![delta("a", 2, &[("vk", 1)])]);
    for b in [&first, &second] {
        buckets.record(b);
        w.apply(b);
    }
    assert_eq!(top(&w, "window=15m"), ranked(&[("a", 7)]));
    w.roll(&buckets, NOW + 16 * MINUTE).unwrap();
    assert_eq!(top(&w, "window=15m"), ranked(&[("a", 2)]));
    assert_eq!(top(&w, "window=15m&metric=shares"), ranked(&[("a", 1)]));
    assert_eq!(top(&w, "window=15m&metric=shares&network=x"), ranked(&[]));
    assert_eq!(top(&w, "window=1h&metric=shares&network=vk"), ranked(&[("a", 5)]));
}

#[test]
fn the_loaded_windows_hold_the_buckets_of_their_span() {
    let mut buckets = Buckets::default();
    let old = batch(NOW - 30 * MINUTE, vec![delta("a", 4, &[])]);
    let new = batch(NOW - MINUTE, vec![delta("b", 1, &[])]);
    buckets.record(&old);
    buckets.record(&new);
    let all = vec![(id("a"), Counts::of_views(10)), (id("b"), Counts::of_views(1))];
    let meta = vec![(id("a"), with_meta(delta("a", 0, &[]), "news", "en").meta)];
    let w = Windows::load(&buckets, NOW, all.into_iter().map(Ok), meta.into_iter().map(Ok)).unwrap();
    assert_eq!(top(&w, "window=15m"), ranked(&[("b", 1)]));
    assert_eq!(top(&w, "window=1h"), ranked(&[("a", 4), ("b", 1)]));
    assert_eq!(top(&w, "window=all"), ranked(&[("a", 10), ("b", 1)]));
    assert_eq!(top(&w, "window=all&section=news"), ranked(&[("a", 10)]));
    assert_eq!(w.tracked(), 2);
}

#[test]
fn filters_by_section_and_language_keep_only_matching_articles() {
    let mut w = empty_at(NOW);
    w.apply(&batch(
        NOW,
        vec![
            with_meta(delta("a", 5, &[]), "news", "en"),
            with_meta(delta("b", 4, &[]), "news", "de"),
            with_meta(delta("c", 3, &[]), "sport", "en"),
            delta("d", 9, &[]),
        ],
    ));
    assert_eq!(top(&w, "section=news"), ranked(&[("a", 5), ("b", 4)]));
    assert_eq!(top(&w, "lang=en"), ranked(&[("a", 5), ("c", 3)]));
    assert_eq!(top(&w, "section=news&lang=de"), ranked(&[("b", 4)]));
    assert_eq!(top(&w, "section=culture"), ranked(&[]));
    let q = TopQuery::parse("limit=1&section=sport", &Networks::default()).unwrap();
    let e = &w.top(&q)[0];
    assert_eq!((e.section.as_deref(), e.lang.as_deref()), (Some("sport"), Some("en")));
}

#[test]
fn a_delta_with_only_visitor_marks_does_not_track_its_article() {
    let mut w = empty_at(NOW);
    let mut idle = delta("a", 0, &[]);
    idle.meta.title = Some("a title is not held here".into());
    w.apply(&batch(NOW, vec![idle]));
    assert_eq!(w.tracked(), 0);
    assert_eq!(top(&w, "window=all"), ranked(&[]));
}

#[test]
fn past_the_cap_the_least_recently_seen_leave_first() {
    let mut w = empty_at(NOW);
    w.set_cap(64);
    for i in 0..64u64 {
        w.apply(&batch(NOW + i * 1000, vec![delta(&format!("a{i:02}"), 1, &[])]));
    }
    // a00 is seen again, so a01 is now the least recently seen.
    w.apply(&batch(NOW + 64_000, vec![delta("a00", 1, &[])]));
    w.apply(&batch(NOW + 65_000, vec![delta("new", 1, &[])]));
    assert_eq!(w.tracked(), 63, "down to the cap less 1/64");
    let ranked = top(&w, "window=all&limit=100");
    let ids: Vec<&str> = ranked.iter().map(|(a, _)| a.as_str()).collect();
    assert!(ids.contains(&"a00") && ids.contains(&"new") && !ids.contains(&"a01") && !ids.contains(&"a02"));
}

#[test]
fn an_evicted_articles_slot_is_reused_and_holds_nothing_of_it() {
    let mut w = empty_at(NOW);
    w.set_cap(2);
    w.apply(&batch(NOW, vec![with_meta(delta("old", 7, &[("x", 3)]), "news", "en")]));
    w.apply(&batch(NOW + 1000, vec![delta("mid", 1, &[])]));
    w.apply(&batch(NOW + 2000, vec![delta("new", 2, &[])]));
    assert_eq!(w.tracked(), 2);
    assert_eq!(w.slots.extent(), 3);
    w.apply(&batch(NOW + 3000, vec![delta("newer", 1, &[])]));
    assert_eq!(w.slots.extent(), 3, "a freed slot was reused");
    assert_eq!(top(&w, "window=all&metric=shares"), ranked(&[]));
    assert_eq!(top(&w, "section=news"), ranked(&[]));
    assert_eq!(w.names.find("news"), None, "a section nobody uses is freed");
}

#[test]
fn admin_set_and_delete_change_the_rankings() {
    let mut w = empty_at(NOW);
    w.apply(&batch(
        NOW,
        vec![with_meta(delta("a", 5, &[("x", 1)]), "news", "en"), delta("b", 3, &[])],
    ));
    w.set_total(&id("b"), Counts::of_views(50));
    assert_eq!(top(&w, "window=all"), ranked(&[("b", 50), ("a", 5)]));
    assert_eq!(
        top(&w, "window=15m"),
        ranked(&[("a", 5), ("b", 3)]),
        "a set changes only all time"
    );
    w.set_meta(
        &id("b"),
        Meta {
            section: Some("news".into()),
            ..Meta::default()
        },
    );
    assert_eq!(top(&w, "window=all&section=news"), ranked(&[("b", 50), ("a", 5)]));
    w.forget(&id("a"));
    assert_eq!(top(&w, "window=15m"), ranked(&[("b", 3)]));
    assert_eq!(top(&w, "window=all&metric=shares"), ranked(&[]));
    assert_eq!(w.tracked(), 1);
}

#[test]
fn an_admin_change_raises_and_lowers_totals_and_a_forget_to_zero_untracks() {
    let mut w = empty_at(NOW);
    w.apply(&batch(NOW, vec![delta("a", 5, &[("x", 2)])]));
    let raise = Counts::of_views(10);
    let lower = Counts::new(0, [("x", 1)]);
    w.admin_change(&id("a"), &raise, &lower, false);
    assert_eq!(top(&w, "window=all"), ranked(&[("a", 15)]));
    assert_eq!(top(&w, "window=all&metric=shares&network=x"), ranked(&[("a", 1)]));
    let all = Counts::new(15, [("x", 1)]);
    w.admin_change(&id("a"), &Counts::default(), &all, true);
    assert_eq!((w.tracked(), top(&w, "window=15m")), (0, ranked(&[])));
}

#[test]
fn a_delta_of_visitor_marks_alone_is_not_tracked() {
    let mut w = Windows::default();
    let mut marks_only = delta("marks-only", 0, &[]);
    marks_only.visitors = vec![(20_000, 7)];
    let mut viewed = delta("viewed", 1, &[]);
    viewed.visitors = vec![(20_000, 7)];
    w.apply(&batch(1_000, vec![marks_only, viewed]));
    assert_eq!(w.tracked(), 1);
}
