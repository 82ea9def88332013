//! Admin: `PUT` / `DELETE /v1/admin/articles/{article}` behind `--admin-token`
//! (compared in constant time). Without a configured token the API does not exist.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::reads::counts_of;
use super::{json_response, Api, ApiError, ApiResult};
use crate::counts::Counts;
use crate::event::{meta as event_meta, ArticleId, Meta};

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = api.admin_token.as_deref() else {
        return Err(ApiError::NotFound);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetArticle {
    views: Option<u64>,
    shares: Option<BTreeMap<String, u64>>,
    section: Option<String>,
    lang: Option<String>,
    title: Option<String>,
    url: Option<String>,
}

/// The largest total an admin may set: 2^53, where JSON numbers in most clients (and
/// Lua's in Redis) stop being exact. Events add to it without ever wrapping.
pub const MAX_TOTAL: u64 = 1 << 53;

/// An admin `PUT`: new totals (when it names views or shares) and metadata to replace.
struct Change {
    totals: Option<Counts>,
    meta: Meta,
}

fn parse_change(api: &Api, body: &[u8]) -> Result<Change, ApiError> {
    let t: SetArticle = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"views\": N, \"shares\": {{...}}, \"section\": ..., \"lang\": ..., \"title\": ..., \"url\": ...}}: {e}"),
        )
    })?;
    let mut counts = Counts::of_views(t.views.unwrap_or(0));
    for (network, n) in t.shares.clone().unwrap_or_default() {
        let i = api.counter.networks().find(&network).map_err(ApiError::from)?;
        counts.add_share(api.counter.networks().name(i), n);
    }
    // Each total and their sum as reads answer it (`shares_total`): a read must not
    // show a number past 2^53 either.
    if counts.views > MAX_TOTAL || counts.shares_total() > MAX_TOTAL {
        return Err(ApiError::bad_request(
            "total_too_large",
            format!("views and the shares together must each be at most 2^53 ({MAX_TOTAL})"),
        ));
    }
    let totals = (t.views.is_some() || t.shares.is_some()).then_some(counts);
    let invalid = |code, what| ApiError::bad_request(code, format!("{what} is invalid after normalisation"));
    let mut meta = Meta::default();
    if let Some(s) = &t.section {
        meta.section = Some(
            event_meta::section(s)
                .ok_or(invalid("invalid_section", "section"))?
                .into(),
        );
    }
    if let Some(l) = &t.lang {
        meta.lang = Some(event_meta::lang(l).ok_or(invalid("invalid_lang", "lang"))?.into());
    }
    if let Some(ti) = &t.title {
        meta.title = Some(event_meta::title(ti).ok_or(invalid("invalid_title", "title"))?.into());
    }
    if let Some(u) = &t.url {
        meta.url = Some(event_meta::url(u).ok_or(invalid("invalid_url", "url"))?.into());
    }
    Ok(Change { totals, meta })
}

/// `PUT /v1/admin/articles/{article}`: sets the totals (when given) and replaces the
/// metadata fields given; answers the article as a read does.
pub async fn put_article(api: &Api, id: &str, body: &Bytes) -> ApiResult {
    let id = ArticleId::parse(id)?;
    let change = parse_change(api, body)?;
    if let Some(totals) = &change.totals {
        api.counter.forget(id.as_str());
        api.last_known.forget(&id);
        settle(api, &id).await;
        api.store.set(&id, totals).await.map_err(ApiError::from)?;
    }
    if !change.meta.is_empty() {
        api.counter.forget_meta(id.as_str());
        api.store.set_meta(&id, &change.meta).await.map_err(ApiError::from)?;
    }
    let mut counts = counts_of(api, std::slice::from_ref(&id)).await?;
    Ok(json_response(StatusCode::OK, &counts.remove(0)))
}

/// How long an admin change waits for queued batches of its article to land: a flush
/// round on a loaded machine can take seconds.
const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits (bounded) until no batch drained before the change holds the article, queued
/// or still being drained: one landing after the change would undo it. With the store
/// away the change goes ahead after [`SETTLE_WITHIN`] (and the store answers it).
async fn settle(api: &Api, id: &ArticleId) {
    let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
    let queued = || api.in_flight.may_hold(id.as_str());
    while queued() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `DELETE /v1/admin/articles/{article}`: forgets the article.
pub async fn delete_article(api: &Api, id: &str) -> ApiResult {
    let id = ArticleId::parse(id)?;
    api.counter.forget(id.as_str());
    api.last_known.forget(&id);
    settle(api, &id).await;
    api.store.delete(&id).await.map_err(ApiError::from)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "article": id.as_str(), "deleted": true }),
    ))
}
