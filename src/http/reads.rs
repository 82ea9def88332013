//! Reads: `GET /v1/articles/{article}` and `GET /v1/articles?ids=...`. A count is the
//! store's total plus batches not yet acknowledged plus what this instance holds in
//! memory, so a reader sees their own view at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use serde::Serialize;

use super::{json_response, Api, ApiError, ApiResult};
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};
use crate::store::{unapplied_in, ArticleRead, Batch};

/// Most ids one batch read may ask for.
pub const MAX_IDS: usize = 100;

/// One article's counts as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArticleCounts {
    /// The article id.
    pub article: String,
    /// Total views.
    pub views: u64,
    /// Shares by network (networks with no share are left out).
    pub shares: BTreeMap<String, u64>,
    /// Sum of `shares`.
    pub shares_total: u64,
    /// Distinct visitors per day, summed over days (estimated; flushed visitors only).
    pub visitors: u64,
    /// The section, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<Box<str>>,
    /// The language, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<Box<str>>,
    /// The title, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Box<str>>,
    /// The url, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Box<str>>,
}

impl ArticleCounts {
    fn with_meta(mut self, meta: Meta) -> Self {
        self.section = meta.section;
        self.lang = meta.lang;
        self.title = meta.title;
        self.url = meta.url;
        self
    }
}

/// The body of `GET /v1/articles?ids=...`.
#[derive(Debug, Serialize)]
pub struct ArticlesResponse {
    /// In the order asked.
    pub articles: Vec<ArticleCounts>,
}

/// Store + unacknowledged batches + pending, for each article in order.
pub async fn counts_of(api: &Api, ids: &[ArticleId]) -> Result<Vec<ArticleCounts>, ApiError> {
    loop {
        // Queued batches and pending counts of one moment, each count in one of them.
        let articles: Vec<&str> = ids.iter().map(ArticleId::as_str).collect();
        let view = api.in_flight.view_with(&articles, || {
            ids.iter()
                .map(|id| api.counter.pending(id.as_str()))
                .collect::<Vec<_>>()
        });
        // Totals, landed batches, metadata and visitors in one store call: on Redis one
        // round trip, so a read waits for Redis once while a flush keeps it busy.
        let reads = store_reads(api, ids, &view.batches).await?;
        // A batch drained and applied during the store read would be counted twice
        // (pending, then stored): read again whenever a batch that may hold one of the
        // articles joined the queue meanwhile, so no answer counts a view twice. A
        // drain's chunks hold consecutive ranges of the sorted articles, so a read of
        // one article reads again for one chunk of a drain, not for each of them
        // (a 1M-key drain is 245 chunks on Redis), and a second read is exact.
        if api.in_flight.joined_since(view.generation, &articles) {
            continue;
        }
        return Ok(ids
            .iter()
            .zip(reads)
            .zip(view.also)
            .map(|((id, read), p)| {
                let meta = completed_meta(api, id, read.meta, &view.batches);
                let mut c = read.stored;
                c.add(&unapplied_in(id, &view.batches, &read.landed));
                c.add(&p);
                ArticleCounts {
                    visitors: read.visitors,
                    ..present(id, c).with_meta(meta)
                }
            })
            .collect());
    }
}

/// The store's view; while the store fails, the last totals read with the batches they
/// held (if every article was read before, without metadata or visitors), else
/// `store_unavailable`.
async fn store_reads(api: &Api, ids: &[ArticleId], unacked: &[Arc<Batch>]) -> Result<Vec<ArticleRead>, ApiError> {
    match api.store.article_reads(ids, unacked).await {
        Ok(reads) => {
            api.last_known.remember(ids, &reads);
            Ok(reads)
        }
        Err(e) => match api.last_known.recall(ids) {
            Some(reads) => {
                tracing::debug!(error = %e, "store read failed; answering from the last known totals");
                Ok(reads)
            }
            None => Err(e.into()),
        },
    }
}

/// An article's stored metadata, completed by what this instance has not stored yet:
/// the batches waiting for the store (the counter forgets the metadata of an article
/// idle for an interval, maybe before its batch lands) and the pending map (a first
/// view's section shows at once).
fn completed_meta(api: &Api, id: &ArticleId, mut m: Meta, unacked: &[Arc<Batch>]) -> Meta {
    for delta in unacked.iter().filter_map(|b| b.get(id.as_str())) {
        m.merge(&delta.meta, false);
    }
    if let Some(pending) = api.counter.pending_meta(id.as_str()) {
        m.merge(&pending, false);
    }
    m.signed = false;
    m
}

/// The API's shape of `c`: the edge where shares become a JSON object.
fn present(id: &ArticleId, c: Counts) -> ArticleCounts {
    ArticleCounts {
        article: id.to_string(),
        views: c.views,
        shares_total: c.shares_total(),
        shares: c.shares.into_iter().map(|(network, n)| (network.into(), n)).collect(),
        visitors: 0,
        section: None,
        lang: None,
        title: None,
        url: None,
    }
}

/// `GET /v1/articles/{article}`.
pub async fn article(api: &Api, id: &str) -> ApiResult {
    let id = ArticleId::parse(id)?;
    let mut counts = counts_of(api, std::slice::from_ref(&id)).await?;
    Ok(json_response(StatusCode::OK, &counts.remove(0)))
}

/// Parses `ids=a,b,c` (1 to 100 valid ids; repeats allowed, answered in order). A
/// repeated parameter adds its ids (`ids=a&ids=b` is `ids=a,b`), as form encoders write
/// a list.
pub fn parse_ids(query: &str) -> Result<Vec<ArticleId>, ApiError> {
    let params: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.into_owned())
        .collect();
    if params.is_empty() {
        return Err(ApiError::bad_request("invalid_query", "the ids parameter is required"));
    }
    let list: Vec<&str> = params.iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    if list.len() > MAX_IDS {
        return Err(ApiError::bad_request(
            "too_many_ids",
            format!("at most {MAX_IDS} ids a request"),
        ));
    }
    list.into_iter()
        .map(|s| ArticleId::parse(s).map_err(ApiError::from))
        .collect()
}

/// `GET /v1/articles?ids=...`.
pub async fn articles(api: &Api, query: &str) -> ApiResult {
    let ids = parse_ids(query)?;
    let articles = counts_of(api, &ids).await?;
    Ok(json_response(StatusCode::OK, &ArticlesResponse { articles }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_in_order() {
        let ids = parse_ids("ids=b,a,b").unwrap();
        assert_eq!(ids.iter().map(ArticleId::as_str).collect::<Vec<_>>(), ["b", "a", "b"]);
        let joined = parse_ids("ids=a,b&x=1&ids=c").unwrap();
        assert_eq!(
            joined.iter().map(ArticleId::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn bad_id_lists_are_refused() {
        assert_eq!(parse_ids("").unwrap_err().code(), "invalid_query");
        assert_eq!(parse_ids("ids=").unwrap_err().code(), "invalid_article");
        assert_eq!(parse_ids("ids=a,,b").unwrap_err().code(), "invalid_article");
        assert_eq!(parse_ids("ids=a%20b").unwrap_err().code(), "invalid_article");
        let many = (0..=MAX_IDS).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(parse_ids(&format!("ids={many}")).unwrap_err().code(), "too_many_ids");
    }
}
