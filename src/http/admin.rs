//! Admin: `PUT` / `DELETE /v1/admin/articles/{article}` behind `--admin-token`
//! (compared in constant time). Without a configured token the API does not exist.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::reads::counts_of;
use super::{json_response, Api, ApiError, ApiResult};
use crate::event::ArticleId;
use crate::store::StoredCounts;

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
struct SetTotals {
    #[serde(default)]
    views: u64,
    #[serde(default)]
    shares: BTreeMap<String, u64>,
}

/// The largest total an admin may set: 2^53, where JSON numbers in most clients (and
/// Lua's in Redis) stop being exact. Events add to it without ever wrapping.
pub const MAX_TOTAL: u64 = 1 << 53;

fn parse_totals(api: &Api, body: &[u8]) -> Result<StoredCounts, ApiError> {
    let t: SetTotals = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"views\": N, \"shares\": {{...}}}}: {e}"),
        )
    })?;
    for network in t.shares.keys() {
        api.counter.networks().find(network).map_err(ApiError::from)?;
    }
    if t.views > MAX_TOTAL || t.shares.values().any(|n| *n > MAX_TOTAL) {
        return Err(ApiError::bad_request(
            "total_too_large",
            format!("totals must be at most 2^53 ({MAX_TOTAL})"),
        ));
    }
    Ok(StoredCounts {
        views: t.views,
        shares: t.shares,
    })
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::StoreUnavailable(e.to_string())
}

/// `PUT /v1/admin/articles/{article}`: sets the totals; answers the article's counts.
pub async fn put_article(api: &Api, id: &str, body: &Bytes) -> ApiResult {
    let id = ArticleId::parse(id)?;
    let totals = parse_totals(api, body)?;
    api.counter.forget(id.as_str());
    api.last_known.forget(&id);
    api.store.set(&id, &totals).await.map_err(store_error)?;
    let mut counts = counts_of(api, std::slice::from_ref(&id)).await?;
    Ok(json_response(StatusCode::OK, &counts.remove(0)))
}

/// `DELETE /v1/admin/articles/{article}`: forgets the article.
pub async fn delete_article(api: &Api, id: &str) -> ApiResult {
    let id = ArticleId::parse(id)?;
    api.counter.forget(id.as_str());
    api.last_known.forget(&id);
    api.store.delete(&id).await.map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "article": id.as_str(), "deleted": true }),
    ))
}
