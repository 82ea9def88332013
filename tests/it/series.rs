//! Series and filter values called on each store directly (no HTTP), with a manual
//! clock: hour and day boundaries (UTC), zero-filled gaps, retention, and `/v1/meta`'s
//! sections and languages. The same cases run on the embedded store and on a real
//! redis-server.

use crate::support as common;

use std::sync::Arc;

use common::batches::{batch, shares, views};
use common::RedisServer;
use viewcounter::clock::ManualClock;
use viewcounter::event::ArticleId;
use viewcounter::store::redis::keys::{Keys, Partition};
use viewcounter::store::series::{Point, SeriesWindow, Step};
use viewcounter::store::{EmbeddedStore, RedisStore, Store};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;

/// A recent midnight, UTC (so Redis TTLs computed from it are close to real ones).
fn midnight() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    now / DAY * DAY
}

/// A store on each backend, both on one manual clock.
struct Stores {
    clock: Arc<ManualClock>,
    embedded: Store,
    redis: Store,
    server: RedisServer,
    _dir: tempfile::TempDir,
}

impl Stores {
    fn at(ms: u64) -> Stores {
        let clock = Arc::new(ManualClock::at(ms));
        let dir = tempfile::tempdir().unwrap();
        let server = RedisServer::start_with_fsync("everysec");
        Stores {
            embedded: Store::Embedded(EmbeddedStore::open_with_clock(dir.path(), clock.clone()).unwrap()),
            redis: Store::Redis(RedisStore::open_with_clock(&server.url(), "vc", clock.clone()).unwrap()),
            clock,
            server,
            _dir: dir,
        }
    }

    fn both(&self) -> [(&'static str, &Store); 2] {
        [("embedded", &self.embedded), ("redis", &self.redis)]
    }

    /// Applies the same batch to both stores.
    async fn apply(&self, b: viewcounter::store::Batch) {
        for (name, store) in self.both() {
            store.apply(&b).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    fn set(&self, ms: u64) {
        let now = self.clock.now();
        assert!(ms >= now, "the clock only moves forward");
        self.clock.advance(ms - now);
    }
}

trait Now {
    fn now(&self) -> u64;
}
impl Now for ManualClock {
    fn now(&self) -> u64 {
        viewcounter::clock::Clock::now_ms(self)
    }
}

fn id(a: &str) -> ArticleId {
    ArticleId::parse(a).unwrap()
}

fn p(views: u64, shares: u64) -> Point {
    Point { views, shares }
}

#[tokio::test]
async fn events_either_side_of_an_hour_boundary_land_in_two_points_with_zeros_between() {
    let t0 = midnight() + 10 * HOUR;
    let s = Stores::at(t0);
    s.apply(batch(1, t0 - 1, views(&[("a", 2, "politics")]))).await; // 09:59:59.999
    s.apply(batch(2, t0, views(&[("a", 3, "politics")]))).await; // 10:00:00.000
    s.apply(batch(3, t0 + 1, vec![shares("a", &[("telegram", 1), ("x", 2)])]))
        .await;
    s.set(t0 + 4 * HOUR + 5 * 60_000);
    s.apply(batch(4, t0 + 4 * HOUR, views(&[("a", 7, "politics")]))).await;

    for (name, store) in s.both() {
        let series = store.series(&id("a"), SeriesWindow::H48).await.unwrap();
        assert_eq!(series.step, Step::Hour, "{name}");
        assert_eq!(series.points.len(), 48, "{name}");
        assert_eq!(
            series.first,
            Step::Hour.bucket(t0 + 4 * HOUR) - 47,
            "{name}: the last point is the current hour"
        );
        let tail = &series.points[42..];
        assert_eq!(tail, [p(2, 0), p(3, 3), p(0, 0), p(0, 0), p(0, 0), p(7, 0)], "{name}");
        assert!(series.points[..42].iter().all(|p| *p == Point::default()), "{name}");
        let bodies = series.bodies();
        assert!(bodies[43].t.ends_with("T10:00:00Z"), "{name}: {}", bodies[43].t);
    }
}

#[tokio::test]
async fn a_utc_day_boundary_splits_the_daily_points() {
    let t0 = midnight();
    let s = Stores::at(t0 + HOUR);
    s.apply(batch(1, t0 - 1_000, views(&[("a", 4, "politics")]))).await; // 23:59:59
    s.apply(batch(2, t0, views(&[("a", 1, "politics")]))).await; // 00:00:00
    s.apply(batch(3, t0 + HOUR - 1, views(&[("b", 9, "sport")]))).await;

    for (name, store) in s.both() {
        let series = store.series(&id("a"), SeriesWindow::D30).await.unwrap();
        assert_eq!((series.step, series.points.len()), (Step::Day, 30), "{name}");
        assert_eq!(series.first, Step::Day.bucket(t0) - 29, "{name}");
        assert_eq!(&series.points[28..], [p(4, 0), p(1, 0)], "{name}");
        assert!(series.bodies()[29].t.ends_with("T00:00:00Z"), "{name}");
        let never = store.series(&id("never-seen"), SeriesWindow::D90).await.unwrap();
        assert_eq!(never.points, vec![Point::default(); 90], "{name}: zeros, not an error");
    }
}

#[tokio::test]
async fn hourly_points_are_kept_seven_days_and_daily_points_400() {
    let t0 = midnight() + 12 * HOUR;
    let s = Stores::at(t0);
    s.apply(batch(1, t0, views(&[("a", 5, "politics")]))).await;
    let partition = Partition::of("a");
    let keys = Keys::new("vc");
    let ttl = |step: Step| -> u64 {
        let key = keys.series(partition, step, step.bucket(t0));
        s.server.cli(&["TTL", &key]).unwrap().parse().unwrap()
    };
    // Redis: the bucket's TTL ends its retention, counted from the end of its step.
    let hour_ttl = ttl(Step::Hour);
    assert!((7 * 24 * 3600..=7 * 24 * 3600 + 3600).contains(&hour_ttl), "{hour_ttl}");
    let day_ttl = ttl(Step::Day);
    assert!((400 * 86_400..=401 * 86_400).contains(&day_ttl), "{day_ttl}");

    // Seven days and one hour later the hour has left the 7d window and the store;
    // the day is still in the 30d window.
    s.set(t0 + 7 * DAY + HOUR);
    s.apply(batch(2, t0 + 7 * DAY + HOUR, views(&[("b", 1, "sport")])))
        .await;
    for (name, store) in s.both() {
        let week = store.series(&id("a"), SeriesWindow::D7).await.unwrap();
        assert!(week.points.iter().all(|p| p.views == 0), "{name}");
        let month = store.series(&id("a"), SeriesWindow::D30).await.unwrap();
        assert_eq!(month.points[29 - 7], p(5, 0), "{name}");
    }

    // A batch that arrives after its hour's retention (a spill file replayed late)
    // counts in its day only; Redis writes no key that would live forever.
    let late = t0 + 7 * DAY + 2 * HOUR;
    s.set(late);
    s.apply(batch(3, late - 8 * DAY, views(&[("c", 2, "sport")]))).await;
    let late_hour = keys.series(Partition::of("c"), Step::Hour, Step::Hour.bucket(late - 8 * DAY));
    assert_eq!(s.server.cli(&["EXISTS", &late_hour]).unwrap(), "0");
    for (name, store) in s.both() {
        let month = store.series(&id("c"), SeriesWindow::D30).await.unwrap();
        assert_eq!(month.points.iter().map(|p| p.views).sum::<u64>(), 2, "{name}");
    }
}

#[tokio::test]
async fn an_admin_delete_forgets_the_series() {
    let t0 = midnight() + 3 * HOUR;
    let s = Stores::at(t0);
    s.apply(batch(1, t0, views(&[("a", 5, "politics"), ("b", 1, "politics")])))
        .await;
    for (name, store) in s.both() {
        store.delete(&id("a")).await.unwrap();
        for w in SeriesWindow::ALL {
            let series = store.series(&id("a"), w).await.unwrap();
            assert!(series.points.iter().all(|p| p.is_zero()), "{name} {w:?}");
        }
        let b = store.series(&id("b"), SeriesWindow::H24).await.unwrap();
        assert_eq!(b.points[23], p(1, 0), "{name}");
    }
}

#[tokio::test]
async fn meta_lists_each_section_and_language_seen_once_sorted() {
    let t0 = midnight();
    let s = Stores::at(t0);
    s.apply(batch(
        1,
        t0,
        views(&[("a", 1, "sport"), ("b", 1, "politics"), ("zz", 1, "sport")]),
    ))
    .await;
    let mut ru = views(&[("c", 1, "culture")]);
    ru[0].meta.lang = Some("ru".into());
    s.apply(batch(2, t0, ru)).await;
    s.apply(batch(3, t0, vec![shares("d", &[("x", 1)])])).await;
    for (name, store) in s.both() {
        let m = store.meta_values().await.unwrap();
        assert_eq!(m.sections, ["culture", "politics", "sport"], "{name}");
        assert_eq!(m.langs, ["en", "ru"], "{name}");
    }
}

#[tokio::test]
async fn meta_lists_what_is_stored_not_what_a_second_writer_sent() {
    let t0 = midnight();
    let s = Stores::at(t0);
    s.apply(batch(1, t0, views(&[("a", 1, "politics")]))).await;
    // An unsigned second writer cannot move the article, nor add its section to the filters.
    s.apply(batch(2, t0, views(&[("a", 1, "casino")]))).await;
    for (name, store) in s.both() {
        assert_eq!(store.meta_values().await.unwrap().sections, ["politics"], "{name}");
        // The admin API replaces the section: the filters offer it.
        let meta = viewcounter::event::Meta {
            section: Some("economy".into()),
            ..Default::default()
        };
        store.set_meta(&id("a"), &meta).await.unwrap();
        assert_eq!(
            store.meta_values().await.unwrap().sections,
            ["economy", "politics"],
            "{name}"
        );
    }
}
