//! `GET /v1/top`: parse the query and answer from the candidates of its (metric,
//! window): every filter's top 100 from one pass of the store, with titles, kept per
//! (metric, window) and recomputed in the background once a flush interval old while
//! the last ones keep answering (stale-while-revalidate). Only the first request of a
//! (metric, window), or one after a long idle spell, waits for the store. A filter the
//! pass did not cover (past its bound on filters) is ranked on its own, through a
//! short per-query cache.
//!
//! Each (filter, limit) answered from some candidates keeps its JSON body with them
//! (up to [`RENDERED_BYTES`] a (metric, window)), so a repeated query is a lookup and
//! a copy of a reference-counted buffer until the candidates are replaced.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use super::{text_response, Api, ApiError, ApiResult};
use crate::event::ArticleId;
use crate::store::windows::Basis;
use crate::store::{Rankings, Store, StoreError};
use crate::top::{BadTopQuery, Candidates, Filter, Metric, TopEntry, TopQuery, Window, MAX_LIMIT};

/// Distinct queries of uncovered filters cached at once; beyond it that cache starts over.
const MAX_CACHED: usize = 1_024;
/// Bytes of JSON bodies kept with one (metric, window)'s candidates: about 700
/// answers of ten rows; past it an answer is rendered each time it is asked.
pub const RENDERED_BYTES: usize = 1 << 20;
/// The content type of every answer.
const JSON: &str = "application/json; charset=utf-8";

/// The body of a `/v1/top` answer.
#[derive(Debug, Clone, Serialize)]
pub struct TopResponse {
    /// `views` or `shares`.
    pub metric: &'static str,
    /// The share network, when the query named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The window asked.
    pub window: &'static str,
    /// When the ranking was computed (RFC 3339, UTC).
    pub generated_at: String,
    /// Count descending, ties by article id ascending.
    pub articles: Vec<TopEntry>,
}

/// A ranking as computed: when, and its first [`MAX_LIMIT`] rows.
#[derive(Debug)]
struct Ranked {
    at: Instant,
    generated_at: SystemTime,
    articles: Vec<TopEntry>,
}

/// One key's cached ranking. A tokio Mutex: the request that computes it holds it
/// across the store call, so concurrent misses for the key wait for that one
/// computation instead of each running their own.
type Slot = Arc<tokio::sync::Mutex<Option<Ranked>>>;

/// Rankings computed recently, per (metric, window, filters): every `limit` is
/// served from the one ranking of [`MAX_LIMIT`] rows. Used for the filters the
/// candidates do not cover.
#[derive(Debug)]
struct QueryCache {
    ttl: Duration,
    // std Mutex: only finds or makes a slot, never held across an await.
    slots: Mutex<HashMap<TopQuery, Slot>>,
}

impl QueryCache {
    /// A cache whose entries live `ttl` (the flush interval).
    fn new(ttl: Duration) -> Self {
        QueryCache {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &TopQuery) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(key) && slots.len() >= MAX_CACHED {
            // Keep the slots in use or still fresh; a flood of distinct filters
            // cannot grow the cache past its bound.
            let ttl = self.ttl;
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(r) => r.as_ref().is_some_and(|r| r.at.elapsed() < ttl),
                Err(_) => true,
            });
            if slots.len() >= MAX_CACHED {
                slots.clear();
            }
        }
        slots.entry(key.clone()).or_default().clone()
    }

    /// The ranking of `q`, from the cache when it is at most one ttl old, else from
    /// `compute` (run once for all the concurrent requests of one key).
    async fn get_or_compute<F, Fut>(&self, q: &TopQuery, compute: F) -> Result<TopResponse, ApiError>
    where
        F: FnOnce(TopQuery) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<TopEntry>, ApiError>>,
    {
        let key = TopQuery {
            limit: MAX_LIMIT,
            ..q.clone()
        };
        let slot = self.slot(&key);
        let mut cached = slot.lock().await;
        let fresh = cached.as_ref().is_some_and(|r| r.at.elapsed() < self.ttl);
        if !fresh {
            let generated_at = SystemTime::now();
            let articles = compute(key).await?;
            *cached = Some(Ranked {
                at: Instant::now(),
                generated_at,
                articles,
            });
        }
        let ranked = cached.as_ref().expect("filled above");
        let articles = ranked.articles.iter().take(q.limit).cloned().collect();
        Ok(response(q, ranked.generated_at, articles))
    }
}

/// One (metric, window)'s candidates as computed: when, every filter's top, when
/// their titles were last all read, and the bodies answered from them so far.
#[derive(Debug)]
struct Computed {
    at: Instant,
    generated_at: SystemTime,
    candidates: Candidates,
    titles_at: Instant,
    rendered: Mutex<Rendered>,
}

/// What a recomputation starts from: the last candidates' basis (their lists, brought
/// up to date when only counts rose), and the last candidates themselves while their
/// titles were all read at most `served_until` ago, so an article still ranked keeps
/// its title and only the articles new to the candidates are read.
#[derive(Debug, Default)]
struct Last {
    basis: Option<Arc<Basis>>,
    titled: Option<Arc<Computed>>,
}

/// JSON bodies by (filter, limit), at most [`RENDERED_BYTES`] in all.
#[derive(Debug, Default)]
struct Rendered {
    bodies: HashMap<(Filter, usize), Bytes>,
    bytes: usize,
}

impl Computed {
    /// The body answering `q` (its (metric, window) is this one's), rendered once per
    /// (filter, limit); `None` for a filter the candidates do not cover.
    fn body(&self, q: &TopQuery) -> Result<Option<Bytes>, ApiError> {
        let key = (Filter::of(q), q.limit);
        let lock = || self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(body) = lock().bodies.get(&key) {
            return Ok(Some(body.clone()));
        }
        let Some(articles) = self.candidates.ranking(&key.0, q.limit) else {
            return Ok(None);
        };
        let body = render(&response(q, self.generated_at, articles))?;
        let mut rendered = lock();
        if rendered.bytes + body.len() <= RENDERED_BYTES {
            rendered.bytes += body.len();
            rendered.bodies.insert(key, body.clone());
        }
        Ok(Some(body))
    }
}

/// The JSON of an answer.
fn render(r: &TopResponse) -> Result<Bytes, ApiError> {
    serde_json::to_vec(r)
        .map(Bytes::from)
        .map_err(|e| ApiError::Internal(format!("rendering a /v1/top answer: {e}")))
}

/// One (metric, window)'s last candidates and the lock of their computation.
#[derive(Debug, Default)]
struct Shared {
    // std Mutex: read or replaced, never held across an await.
    current: Mutex<Option<Arc<Computed>>>,
    // tokio Mutex: held across a computation (a request's or a background one's), so
    // one runs at a time per (metric, window).
    computing: Arc<tokio::sync::Mutex<()>>,
}

impl Shared {
    fn current(&self) -> Option<Arc<Computed>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, computed: Computed) -> Arc<Computed> {
        let computed = Arc::new(computed);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(computed.clone());
        computed
    }
}

/// Runs `compute` and keeps what it gives, timed from its start; `titles_at` is when
/// the titles it kept were read (`None`: it read them all).
async fn computed(
    shared: &Shared,
    compute: impl Future<Output = Result<Candidates, ApiError>>,
    titles_at: Option<Instant>,
) -> Result<Arc<Computed>, ApiError> {
    let (at, generated_at) = (Instant::now(), SystemTime::now());
    let candidates = compute.await?;
    Ok(shared.replace(Computed {
        at,
        generated_at,
        candidates,
        titles_at: titles_at.unwrap_or(at),
        rendered: Mutex::default(),
    }))
}

/// The `/v1/top` answers: the candidates of each (metric, window) asked (at most the
/// configured networks' metrics times six windows: no eviction), and the per-query
/// cache of the filters they do not cover.
#[derive(Debug)]
pub struct TopCache {
    /// Candidates this young answer without a recomputation.
    ttl: Duration,
    /// Candidates older than this are not served: the request waits for new ones.
    served_until: Duration,
    // std Mutex: only finds or makes an entry, never held across an await.
    candidates: Mutex<HashMap<(Metric, Window), Arc<Shared>>>,
    /// One permit: background recomputations run one at a time, so with every
    /// (metric, window) polled they take at most one core (a pass over a million
    /// articles is tens of milliseconds) and never queue on the rankings' lock.
    background: Arc<tokio::sync::Semaphore>,
    uncovered: QueryCache,
}

impl TopCache {
    /// A cache whose candidates are recomputed once `ttl` (the flush interval) old, and
    /// served while that runs for up to ten ttl (at least 10 s).
    pub fn new(ttl: Duration) -> Self {
        TopCache {
            ttl,
            served_until: (ttl * 10).max(Duration::from_secs(10)),
            candidates: Mutex::new(HashMap::new()),
            background: Arc::new(tokio::sync::Semaphore::new(1)),
            uncovered: QueryCache::new(ttl),
        }
    }

    fn shared(&self, metric: &Metric, window: Window) -> Arc<Shared> {
        let mut all = self.candidates.lock().unwrap_or_else(|e| e.into_inner());
        all.entry((metric.clone(), window)).or_default().clone()
    }

    /// What a recomputation after `last` starts from, and when the titles it keeps
    /// were read.
    fn last(&self, last: Option<Arc<Computed>>) -> (Last, Option<Instant>) {
        let basis = last.as_ref().and_then(|c| c.candidates.basis.clone());
        let titled = last.filter(|c| c.titles_at.elapsed() < self.served_until);
        let titles_at = titled.as_ref().map(|c| c.titles_at);
        (Last { basis, titled }, titles_at)
    }

    /// The candidates of `q`'s (metric, window): the last ones while at most a ttl
    /// old; stale ones while at most `served_until` old, with a recomputation started
    /// in the background unless one runs (for any (metric, window): a later request
    /// starts it); else new ones (one computation for all the requests waiting).
    async fn candidates<F, Fut>(&self, q: &TopQuery, compute: F) -> Result<Arc<Computed>, ApiError>
    where
        F: FnOnce(Last) -> Fut,
        Fut: Future<Output = Result<Candidates, ApiError>> + Send + 'static,
    {
        let shared = self.shared(&q.metric, q.window);
        match shared.current() {
            Some(c) if c.at.elapsed() < self.ttl => Ok(c),
            Some(c) if c.at.elapsed() < self.served_until => {
                let turn = self.background.clone().try_acquire_owned().ok().and_then(|permit| {
                    let computing = shared.computing.clone().try_lock_owned().ok()?;
                    Some((permit, computing))
                });
                if let Some(turn) = turn {
                    let shared = shared.clone();
                    let (last, titles_at) = self.last(Some(c.clone()));
                    let compute = compute(last);
                    tokio::spawn(async move {
                        let _turn = turn;
                        if let Err(e) = computed(&shared, compute, titles_at).await {
                            tracing::debug!(error = %e, "recomputing /v1/top candidates failed; serving the last");
                        }
                    });
                }
                Ok(c)
            }
            _ => {
                let _computing = shared.computing.lock().await;
                // Computed while this request waited?
                match shared.current() {
                    Some(c) if c.at.elapsed() < self.served_until => Ok(c),
                    last => {
                        let (last, titles_at) = self.last(last);
                        computed(&shared, compute(last), titles_at).await
                    }
                }
            }
        }
    }

    /// The body answering `q`: from its (metric, window)'s candidates, or for a filter
    /// they do not cover, from `rank_alone`.
    async fn answer<F, Fut, R, RFut>(&self, q: &TopQuery, compute: F, rank_alone: R) -> Result<Bytes, ApiError>
    where
        F: FnOnce(Last) -> Fut,
        Fut: Future<Output = Result<Candidates, ApiError>> + Send + 'static,
        R: FnOnce(TopQuery) -> RFut,
        RFut: Future<Output = Result<Vec<TopEntry>, ApiError>>,
    {
        let c = self.candidates(q, compute).await?;
        match c.body(q)? {
            Some(body) => Ok(body),
            None => render(&self.uncovered.get_or_compute(q, rank_alone).await?),
        }
    }
}

fn response(q: &TopQuery, generated_at: SystemTime, articles: Vec<TopEntry>) -> TopResponse {
    let (metric, network) = match &q.metric {
        Metric::Views => ("views", None),
        Metric::Shares(n) => ("shares", n.clone()),
    };
    TopResponse {
        metric,
        network,
        window: q.window.as_str(),
        generated_at: humantime::format_rfc3339_seconds(generated_at).to_string(),
        articles,
    }
}

/// Each entry's title and url, read from the store in one call (the rankings keep
/// no titles in memory). A failed read costs the titles, not the ranking.
async fn add_titles(store: &Store, entries: &mut [TopEntry]) {
    let all: Vec<usize> = (0..entries.len()).collect();
    add_titles_at(store, entries, &all).await;
}

/// [`add_titles`] for the entries at positions `at` only.
async fn add_titles_at(store: &Store, entries: &mut [TopEntry], at: &[usize]) {
    let ids: Vec<ArticleId> = at
        .iter()
        .filter_map(|&i| ArticleId::parse(&entries[i].article).ok())
        .collect();
    if ids.len() != at.len() || ids.is_empty() {
        return;
    }
    match store.metas(&ids).await {
        Ok(metas) => {
            for (&i, meta) in at.iter().zip(metas) {
                entries[i].title = meta.title;
                entries[i].url = meta.url;
            }
        }
        Err(e) => tracing::debug!(error = %e, "title read for /v1/top failed; answering without titles"),
    }
}

/// Every filter's ranking of `metric` in `window`, from `last`'s basis when only
/// counts rose since it, with titles: from `last`'s candidates for the articles they
/// held when it has them, read for the others.
async fn candidates_with_titles(
    store: Store,
    window: Window,
    metric: Metric,
    last: Last,
) -> Result<Candidates, StoreError> {
    let mut candidates = store.top_candidates(window, &metric, last.basis).await?;
    let Some(titled) = last.titled else {
        add_titles(&store, &mut candidates.articles).await;
        return Ok(candidates);
    };
    let known: HashMap<&str, &TopEntry> = titled
        .candidates
        .articles
        .iter()
        .map(|e| (e.article.as_str(), e))
        .collect();
    let mut unknown = Vec::new();
    for (i, entry) in candidates.articles.iter_mut().enumerate() {
        match known.get(entry.article.as_str()) {
            Some(k) => (entry.title, entry.url) = (k.title.clone(), k.url.clone()),
            None => unknown.push(i),
        }
    }
    add_titles_at(&store, &mut candidates.articles, &unknown).await;
    Ok(candidates)
}

/// `GET /v1/top?metric=&window=&limit=&section=&lang=&network=`.
pub async fn top(api: &Api, query: &str) -> ApiResult {
    let q = TopQuery::parse(query, api.counter.networks())
        .map_err(|BadTopQuery(code, message)| ApiError::bad_request(code, message))?;
    let (store, window, metric) = (api.store.clone(), q.window, q.metric.clone());
    let body = api
        .top_cache
        .answer(
            &q,
            move |last| async move { Ok(candidates_with_titles(store, window, metric, last).await?) },
            |key| async move {
                let mut articles = api.store.top(&key).await.map_err(ApiError::from)?;
                add_titles(&api.store, &mut articles).await;
                Ok(articles)
            },
        )
        .await?;
    Ok(text_response(StatusCode::OK, JSON, body))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::event::Networks;

    fn entry(article: &str) -> TopEntry {
        TopEntry {
            article: article.into(),
            count: 1,
            section: None,
            lang: None,
            title: None,
            url: None,
        }
    }

    /// Candidates ranking `article` alone, for the unfiltered query only.
    fn only(article: &str, complete: bool) -> Candidates {
        Candidates {
            articles: vec![entry(article)],
            filters: HashMap::from([(Filter::default(), vec![0])]),
            complete,
            basis: None,
        }
    }

    fn query(q: &str) -> TopQuery {
        TopQuery::parse(q, &Networks::default()).unwrap()
    }

    /// The first article `cache` answers `q` with, `compute` giving new candidates.
    async fn first(
        cache: &TopCache,
        q: &str,
        compute: impl Future<Output = Result<Candidates, ApiError>> + Send + 'static,
    ) -> String {
        let ranked_alone = |_| async { Ok(vec![entry("ranked-alone")]) };
        let body = cache.answer(&query(q), |_| compute, ranked_alone).await.unwrap();
        let r: serde_json::Value = serde_json::from_slice(&body).unwrap();
        r["articles"][0]["article"].as_str().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn stale_candidates_answer_while_one_recomputation_runs_and_its_result_then_replaces_them() {
        // A ttl of zero: candidates are stale as soon as computed.
        let cache = TopCache::new(Duration::ZERO);
        assert_eq!(first(&cache, "", async { Ok(only("a", true)) }).await, "a");

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let blocked = async move {
            released.await.expect("released");
            Ok(only("b", true))
        };
        assert_eq!(first(&cache, "", blocked).await, "a", "stale, not waiting");

        let second_ran = Arc::new(AtomicBool::new(false));
        let flag = second_ran.clone();
        let second = async move {
            flag.store(true, Ordering::SeqCst);
            Ok(only("c", true))
        };
        assert_eq!(first(&cache, "limit=5", second).await, "a", "still the stale ones");

        release.send(()).expect("the recomputation waits");
        let mut answered = String::new();
        for _ in 0..6_000 {
            answered = first(&cache, "", async { Ok(only("b", true)) }).await;
            if answered == "b" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(answered, "b", "the recomputed candidates replace the stale ones");
        let shared = cache.shared(&Metric::Views, Window::H24);
        let _all_done = shared.computing.lock().await;
        assert!(
            !second_ran.load(Ordering::SeqCst),
            "no second recomputation while one ran"
        );
    }

    #[tokio::test]
    async fn a_repeated_query_gets_the_body_rendered_the_first_time_until_new_candidates_come() {
        let cache = TopCache::new(Duration::ZERO);
        let body = |q: &'static str, article: &'static str| {
            let cache = &cache;
            async move {
                let compute = |_| async move { Ok(only(article, true)) };
                let alone = |_| async { Ok(Vec::new()) };
                cache.answer(&query(q), compute, alone).await.unwrap()
            }
        };
        let first = body("limit=3", "a").await;
        let again = body("limit=3", "b").await;
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same buffer");
        let other = body("limit=4", "b").await;
        assert_ne!(first.as_ptr(), other.as_ptr(), "another limit is another body");
        let mut replaced = first.clone();
        for _ in 0..6_000 {
            replaced = body("limit=3", "b").await;
            if replaced != first {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let v: serde_json::Value = serde_json::from_slice(&replaced).unwrap();
        assert_eq!(v["articles"][0]["article"], "b", "rendered from the new candidates");
    }

    #[tokio::test]
    async fn a_recomputation_is_given_the_last_candidates_to_keep_their_titles() {
        let cache = TopCache::new(Duration::ZERO);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ask = |article: &'static str| {
            let seen = seen.clone();
            let compute = move |last: Last| {
                let kept = last.titled.map(|c| c.candidates.articles[0].article.clone());
                seen.lock().unwrap().push(kept);
                async move { Ok(only(article, true)) }
            };
            let cache = &cache;
            async move { cache.answer(&query(""), compute, |_| async { Ok(Vec::new()) }).await }
        };
        ask("a").await.unwrap();
        assert_eq!(*seen.lock().unwrap(), [None], "the first computation reads every title");
        for _ in 0..6_000 {
            ask("b").await.unwrap();
            if seen.lock().unwrap().len() > 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            seen.lock().unwrap()[1],
            Some("a".to_string()),
            "the recomputation is given the candidates whose titles were just read"
        );
    }

    #[tokio::test]
    async fn a_filter_the_candidates_do_not_cover_is_ranked_alone() {
        let cache = TopCache::new(Duration::from_secs(3600));
        assert_eq!(first(&cache, "", async { Ok(only("a", false)) }).await, "a");
        let unused = async { Ok(only("x", false)) };
        assert_eq!(first(&cache, "section=rare", unused).await, "ranked-alone");
        let complete = TopCache::new(Duration::from_secs(3600));
        let none = async { Ok(only("a", true)) };
        assert_eq!(
            first(&complete, "section=rare", none).await,
            "",
            "covered by a complete pass: no article"
        );
    }
}
