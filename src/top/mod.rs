//! `/v1/top`: windows, metrics and filters of a query and the per-article tallies;
//! `rank.rs` ranks a window's counts (count descending, ties by article id ascending);
//! `candidates.rs` holds every filter's ranking of one window and metric at once.

mod candidates;
mod rank;

pub use candidates::{Candidates, Filter, MAX_FILTERS};
pub use rank::{top_n, Best, TopEntry};

use crate::event::{meta, Networks};

/// A ranking window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last 15 minutes (minute buckets).
    M15,
    /// The last hour (minute buckets).
    H1,
    /// The last 24 hours (hour buckets).
    H24,
    /// The last 7 days (hour buckets).
    D7,
    /// The last 30 days (hour buckets).
    D30,
    /// All time (the totals).
    All,
}

/// The size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Granularity {
    /// Bucket length in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
        }
    }

    /// The bucket holding Unix time `ms`.
    pub fn bucket(self, ms: u64) -> u64 {
        ms / self.millis()
    }

    /// How many buckets the longest window of this granularity needs.
    pub fn retention(self) -> u64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 30 * 24,
        }
    }
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 6] = [
        Window::M15,
        Window::H1,
        Window::H24,
        Window::D7,
        Window::D30,
        Window::All,
    ];

    /// Parses `15m`, `1h`, `24h`, `7d`, `30d` or `all`.
    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// The query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::M15 => "15m",
            Window::H1 => "1h",
            Window::H24 => "24h",
            Window::D7 => "7d",
            Window::D30 => "30d",
            Window::All => "all",
        }
    }

    /// Bucket size and count: a window at time t covers the bucket holding t and the
    /// `count - 1` before it. `None` for `all`.
    pub fn buckets(self) -> Option<(Granularity, u64)> {
        match self {
            Window::M15 => Some((Granularity::Minute, 15)),
            Window::H1 => Some((Granularity::Minute, 60)),
            Window::H24 => Some((Granularity::Hour, 24)),
            Window::D7 => Some((Granularity::Hour, 7 * 24)),
            Window::D30 => Some((Granularity::Hour, 30 * 24)),
            Window::All => None,
        }
    }
}

/// What is ranked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Views.
    Views,
    /// Shares, on every network or on one.
    Shares(Option<String>),
}

/// A validated `/v1/top` query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopQuery {
    /// views or shares (and network).
    pub metric: Metric,
    /// The window.
    pub window: Window,
    /// 1 to 100.
    pub limit: usize,
    /// Only this section.
    pub section: Option<String>,
    /// Only this language.
    pub lang: Option<String>,
}

/// A query parameter of `/v1/top` is invalid: (code, message) of the 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTopQuery(pub &'static str, pub &'static str);

/// The query parameter a client adds only to defeat caches (jQuery's `cache: false`
/// sends `_=<time>`): ignored by the reads that otherwise refuse unknown parameters.
pub const CACHE_BUSTER: &str = "_";

/// Most articles one ranking may return.
pub const MAX_LIMIT: usize = 100;

impl TopQuery {
    /// Parses and validates a query string; unknown parameters are refused so a typo
    /// (`windw=1h`) does not silently give the default ([`CACHE_BUSTER`] excepted).
    pub fn parse(query: &str, networks: &Networks) -> Result<TopQuery, BadTopQuery> {
        let mut q = TopQuery {
            metric: Metric::Views,
            window: Window::H24,
            limit: 10,
            section: None,
            lang: None,
        };
        let (mut metric, mut network) = (None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "metric" => metric = Some(v.into_owned()),
                "network" => network = Some(v.into_owned()),
                "window" => {
                    q.window = Window::parse(&v).ok_or(BadTopQuery(
                        "invalid_window",
                        "window must be one of 15m, 1h, 24h, 7d, 30d, all",
                    ))?
                }
                "limit" => q.limit = parse_limit(&v)?,
                // Normalised as events are: ?section=Analytics finds `analytics`.
                "section" => {
                    q.section = Some(
                        meta::section(&v)
                            .ok_or(BadTopQuery(
                                "invalid_section",
                                "section must be 1-64 letters or digits and - _ . (white space becomes -)",
                            ))?
                            .into_owned(),
                    )
                }
                "lang" => {
                    q.lang = Some(
                        meta::lang(&v)
                            .ok_or(BadTopQuery(
                                "invalid_lang",
                                "lang must be 2-16 characters of a-z 0-9 - (_ becomes -)",
                            ))?
                            .into_owned(),
                    )
                }
                CACHE_BUSTER => {}
                _ => {
                    return Err(BadTopQuery(
                        "invalid_query",
                        "unknown query parameter; expected metric, network, window, limit, section, lang",
                    ))
                }
            }
        }
        q.metric = match (metric.as_deref(), network) {
            (None | Some("views"), None) => Metric::Views,
            (None | Some("views"), Some(_)) => return Err(BadTopQuery("invalid_query", "network needs metric=shares")),
            (Some("shares"), None) => Metric::Shares(None),
            (Some("shares"), Some(n)) => {
                let i = networks.find(&n).map_err(|_| {
                    BadTopQuery(
                        "invalid_network",
                        "network must be one of the configured share networks",
                    )
                })?;
                Metric::Shares(Some(networks.name(i).to_string()))
            }
            _ => return Err(BadTopQuery("invalid_metric", "metric must be views or shares")),
        };
        Ok(q)
    }
}

fn parse_limit(v: &str) -> Result<usize, BadTopQuery> {
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(BadTopQuery("invalid_limit", "limit must be an integer from 1 to 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(query: &str) -> Result<TopQuery, BadTopQuery> {
        TopQuery::parse(query, &Networks::default())
    }

    #[test]
    fn filters_are_normalised_as_events_are() {
        let t = q("section=World%20News&lang=EN_gb&metric=shares&network=Telegram").unwrap();
        assert_eq!(
            (t.section.as_deref(), t.lang.as_deref()),
            (Some("world-news"), Some("en-gb"))
        );
        assert_eq!(t.metric, Metric::Shares(Some("telegram".into())));
    }

    #[test]
    fn defaults_are_views_24h_10() {
        let t = q("").unwrap();
        assert_eq!((t.metric, t.window, t.limit), (Metric::Views, Window::H24, 10));
        let busted = q("window=7d&_=1700000000000").unwrap();
        assert_eq!(busted.window, Window::D7, "a cache-buster is ignored");
    }

    #[test]
    fn every_bad_parameter_is_refused_with_its_code() {
        for (query, code) in [
            ("window=2h", "invalid_window"),
            ("limit=0", "invalid_limit"),
            ("limit=101", "invalid_limit"),
            ("limit=ten", "invalid_limit"),
            ("metric=clicks", "invalid_metric"),
            ("metric=shares&network=myspace", "invalid_network"),
            ("network=telegram", "invalid_query"),
            ("section=a%2Fb", "invalid_section"),
            ("lang=x", "invalid_lang"),
            ("windw=1h", "invalid_query"),
            ("_x=1", "invalid_query"),
        ] {
            assert_eq!(q(query).unwrap_err().0, code, "{query}");
        }
    }
}
