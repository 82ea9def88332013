//! `GET /v1/top`: parse the query, answer from a short cache (at most one flush
//! interval old, so dashboards polling every second cost little), else ask the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use serde::Serialize;

use super::{json_response, Api, ApiError, ApiResult};
use crate::event::ArticleId;
use crate::top::{BadTopQuery, Metric, TopEntry, TopQuery};

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

/// Rankings computed recently, by query.
#[derive(Debug)]
pub struct TopCache {
    ttl: Duration,
    // std Mutex: never held across the store call.
    entries: Mutex<HashMap<TopQuery, (Instant, Arc<TopResponse>)>>,
}

impl TopCache {
    /// A cache whose entries live `ttl` (the flush interval).
    pub fn new(ttl: Duration) -> Self {
        TopCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, q: &TopQuery) -> Option<Arc<TopResponse>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(q)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, r)| r.clone())
    }

    fn put(&self, q: TopQuery, r: Arc<TopResponse>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.insert(q, (Instant::now(), r));
    }
}

fn response(q: &TopQuery, articles: Vec<TopEntry>) -> TopResponse {
    let (metric, network) = match &q.metric {
        Metric::Views => ("views", None),
        Metric::Shares(n) => ("shares", n.clone()),
    };
    TopResponse {
        metric,
        network,
        window: q.window.as_str(),
        generated_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
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
    let cached = api.top_cache.get(&q);
    let body = match cached {
        Some(r) => r,
        None => {
            let mut articles = api
                .store
                .top(&q)
                .await
                .map_err(|e| ApiError::StoreUnavailable(e.to_string()))?;
            add_titles(api, &mut articles).await;
            let r = Arc::new(response(&q, articles));
            api.top_cache.put(q, r.clone());
            r
        }
    };
    Ok(json_response(StatusCode::OK, &*body))
}
