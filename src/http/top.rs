//! `GET /v1/top`: parse the query, answer from a short cache (at most one flush
//! interval old, so dashboards polling every second cost little), else ask the store
//! once for all the concurrent requests of the same ranking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use serde::Serialize;

use super::{json_response, Api, ApiError, ApiResult};
use crate::event::ArticleId;
use crate::top::{BadTopQuery, Metric, TopEntry, TopQuery, MAX_LIMIT};

/// Distinct queries cached at once; beyond it the cache starts over.
const MAX_CACHED: usize = 1_024;

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
/// served from the one ranking of [`MAX_LIMIT`] rows.
#[derive(Debug)]
pub struct TopCache {
    ttl: Duration,
    // std Mutex: only finds or makes a slot, never held across an await.
    slots: Mutex<HashMap<TopQuery, Slot>>,
}

impl TopCache {
    /// A cache whose entries live `ttl` (the flush interval).
    pub fn new(ttl: Duration) -> Self {
        TopCache {
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

/// Each entry's title and url, read from the store (at most 100 articles, once per
/// cached ranking): the rankings keep no titles in memory. A failed read costs the
/// titles, not the ranking.
async fn add_titles(api: &Api, entries: &mut [TopEntry]) {
    let ids: Vec<ArticleId> = entries
        .iter()
        .filter_map(|e| ArticleId::parse(&e.article).ok())
        .collect();
    if ids.len() != entries.len() || ids.is_empty() {
        return;
    }
    match api.store.metas(&ids).await {
        Ok(metas) => {
            for (entry, meta) in entries.iter_mut().zip(metas) {
                entry.title = meta.title;
                entry.url = meta.url;
            }
        }
        Err(e) => tracing::debug!(error = %e, "title read for /v1/top failed; answering without titles"),
    }
}

/// `GET /v1/top?metric=&window=&limit=&section=&lang=&network=`.
pub async fn top(api: &Api, query: &str) -> ApiResult {
    let q = TopQuery::parse(query, api.counter.networks())
        .map_err(|BadTopQuery(code, message)| ApiError::bad_request(code, message))?;
    let body = api
        .top_cache
        .get_or_compute(&q, |key| async move {
            let mut articles = api.store.top(&key).await.map_err(ApiError::from)?;
            add_titles(api, &mut articles).await;
            Ok(articles)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &body))
}
