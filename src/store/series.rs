//! Views and shares over time (`GET /v1/articles/{article}/series`): the windows a
//! series may ask for, their steps (UTC hours and days), the retention of each step,
//! and the zero-filled points a store answers with. Both backends add a batch's deltas
//! to one hour bucket and one day bucket as part of the batch's own write.

use serde::Serialize;

use crate::store::ArticleDelta;

/// The step of a series: one point per UTC hour or per UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Step {
    /// Both steps, in the order a flush writes them.
    pub const ALL: [Step; 2] = [Step::Hour, Step::Day];

    /// Step length in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            Step::Hour => 3_600_000,
            Step::Day => 86_400_000,
        }
    }

    /// The bucket (hours or days since the epoch, UTC) holding Unix time `ms`.
    pub fn bucket(self, ms: u64) -> u64 {
        ms / self.millis()
    }

    /// How many buckets are kept, the current one not included: hourly points for
    /// 7 days, daily points for 400 days. The longest window of each step fits.
    pub fn retention(self) -> u64 {
        match self {
            Step::Hour => 7 * 24,
            Step::Day => 400,
        }
    }

    /// The oldest bucket kept at `now_ms`; older ones are pruned (embedded) or have
    /// expired (Redis).
    pub fn oldest_kept(self, now_ms: u64) -> u64 {
        self.bucket(now_ms).saturating_sub(self.retention())
    }

    /// Seconds from `now_ms` until `bucket` is no longer kept (0: already gone). Redis
    /// sets this as the bucket key's TTL.
    pub fn ttl_secs(self, bucket: u64, now_ms: u64) -> u64 {
        let gone_at_ms = (bucket + 1 + self.retention()) * self.millis();
        gone_at_ms.saturating_sub(now_ms).div_ceil(1000)
    }

    /// The `step` field of the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Hour => "1h",
            Step::Day => "1d",
        }
    }
}

/// A window of `/series`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesWindow {
    /// 24 hourly points.
    H24,
    /// 48 hourly points (the default).
    H48,
    /// 168 hourly points.
    D7,
    /// 30 daily points.
    D30,
    /// 90 daily points.
    D90,
}

impl SeriesWindow {
    /// Every window.
    pub const ALL: [SeriesWindow; 5] = [
        SeriesWindow::H24,
        SeriesWindow::H48,
        SeriesWindow::D7,
        SeriesWindow::D30,
        SeriesWindow::D90,
    ];

    /// Parses `24h`, `48h`, `7d`, `30d` or `90d`.
    pub fn parse(s: &str) -> Option<SeriesWindow> {
        SeriesWindow::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// The query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesWindow::H24 => "24h",
            SeriesWindow::H48 => "48h",
            SeriesWindow::D7 => "7d",
            SeriesWindow::D30 => "30d",
            SeriesWindow::D90 => "90d",
        }
    }

    /// The step and the number of points.
    pub fn shape(self) -> (Step, u64) {
        match self {
            SeriesWindow::H24 => (Step::Hour, 24),
            SeriesWindow::H48 => (Step::Hour, 48),
            SeriesWindow::D7 => (Step::Hour, 7 * 24),
            SeriesWindow::D30 => (Step::Day, 30),
            SeriesWindow::D90 => (Step::Day, 90),
        }
    }

    /// The buckets of the window at `now_ms`, oldest first, ending with the current one.
    pub fn buckets(self, now_ms: u64) -> std::ops::RangeInclusive<u64> {
        let (step, points) = self.shape();
        let last = step.bucket(now_ms);
        last.saturating_sub(points - 1)..=last
    }
}

/// One point of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Point {
    /// Views in the step.
    pub views: u64,
    /// Shares (every network) in the step.
    pub shares: u64,
}

impl Point {
    /// The point a batch's delta adds: its views and the sum of its shares.
    pub fn of(d: &ArticleDelta) -> Point {
        Point {
            views: d.counts.views,
            shares: d.counts.shares_total(),
        }
    }

    /// True when the delta adds nothing to a series.
    pub fn is_zero(&self) -> bool {
        self.views == 0 && self.shares == 0
    }
}

/// A store's answer: the step and one point per bucket of the window, oldest first,
/// zeros included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The step of the points.
    pub step: Step,
    /// The first bucket (in steps since the epoch).
    pub first: u64,
    /// One point per bucket.
    pub points: Vec<Point>,
}

/// One point as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PointBody {
    /// Start of the step, RFC 3339 UTC.
    pub t: String,
    /// Views in the step.
    pub views: u64,
    /// Shares in the step.
    pub shares: u64,
}

impl Series {
    /// The points with their start times, as the API shows them.
    pub fn bodies(&self) -> Vec<PointBody> {
        self.points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ms = (self.first + i as u64) * self.step.millis();
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                PointBody {
                    t: humantime::format_rfc3339_seconds(at).to_string(),
                    views: p.views,
                    shares: p.shares,
                }
            })
            .collect()
    }
}

/// The distinct sections and languages of the articles seen, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaValues {
    /// Sections.
    pub sections: Vec<String>,
    /// Languages.
    pub langs: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 86_400_000;

    #[test]
    fn a_window_ends_with_the_current_step() {
        let now = 100 * DAY + 5 * HOUR + 59 * 60_000;
        assert_eq!(SeriesWindow::H48.buckets(now), (100 * 24 + 5 - 47)..=(100 * 24 + 5));
        assert_eq!(SeriesWindow::D90.buckets(now), 11..=100);
        assert_eq!(SeriesWindow::D7.buckets(now).count(), 168);
    }

    #[test]
    fn days_are_utc_days() {
        assert_eq!(Step::Day.bucket(DAY - 1), 0);
        assert_eq!(Step::Day.bucket(DAY), 1);
        assert_eq!(Step::Hour.bucket(HOUR), 1);
    }

    #[test]
    fn a_bucket_lives_its_retention_after_it_ends() {
        let now = 1_000 * HOUR + 30 * 60_000;
        assert_eq!(Step::Hour.ttl_secs(1_000, now), (7 * 24 * 3600) + 1800);
        assert_eq!(Step::Hour.ttl_secs(1_000 - 7 * 24 - 1, now), 0);
        assert_eq!(Step::Hour.oldest_kept(now), 1_000 - 168);
        assert_eq!(Step::Day.ttl_secs(0, 0), 401 * 86_400);
    }

    #[test]
    fn windows_parse_by_name_only() {
        assert_eq!(SeriesWindow::parse("48h"), Some(SeriesWindow::H48));
        assert_eq!(SeriesWindow::parse("90d"), Some(SeriesWindow::D90));
        assert_eq!(SeriesWindow::parse("1h"), None);
    }

    #[test]
    fn points_carry_their_start_times() {
        let s = Series {
            step: Step::Hour,
            first: 490_000,
            points: vec![Point::default(), Point { views: 2, shares: 1 }],
        };
        let b = s.bodies();
        assert_eq!(b[0].t, "2025-11-24T16:00:00Z");
        assert_eq!(
            (b[1].t.as_str(), b[1].views, b[1].shares),
            ("2025-11-24T17:00:00Z", 2, 1)
        );
    }
}
