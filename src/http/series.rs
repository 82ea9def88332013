//! `GET /v1/articles/{article}/series` (views and shares per UTC hour or day, from the
//! store's series buckets) and `GET /v1/meta` (what the filters can offer).

use http::StatusCode;
use serde::Serialize;

use super::{json_response, Api, ApiError, ApiResult};
use crate::event::ArticleId;
use crate::store::series::{PointBody, SeriesWindow};

/// The body of a series answer.
#[derive(Debug, Serialize)]
pub struct SeriesResponse {
    /// The article id.
    pub article: String,
    /// The window asked.
    pub window: &'static str,
    /// `1h` or `1d`.
    pub step: &'static str,
    /// Oldest first, one per step, zeros included.
    pub points: Vec<PointBody>,
}

/// The body of `/v1/meta`.
#[derive(Debug, Serialize)]
pub struct MetaResponse {
    /// Sections of the articles seen, sorted.
    pub sections: Vec<String>,
    /// Languages of the articles seen, sorted.
    pub langs: Vec<String>,
    /// The configured share networks, sorted.
    pub networks: Vec<String>,
}

/// Parses `window=` (default `48h`); any other parameter but the cache-buster `_` is
/// refused, so a typo does not silently give the default.
pub fn parse_window(query: &str) -> Result<SeriesWindow, ApiError> {
    let mut window = SeriesWindow::H48;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "window" => {
                window = SeriesWindow::parse(&v).ok_or_else(|| {
                    ApiError::bad_request("invalid_window", "window must be one of 24h, 48h, 7d, 30d, 90d")
                })?
            }
            crate::top::CACHE_BUSTER => {}
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "unknown query parameter; expected window",
                ))
            }
        }
    }
    Ok(window)
}

/// `GET /v1/articles/{article}/series?window=`.
pub async fn series(api: &Api, id: &str, query: &str) -> ApiResult {
    let id = ArticleId::parse(id)?;
    let window = parse_window(query)?;
    let series = api.store.series(&id, window).await.map_err(ApiError::from)?;
    let body = SeriesResponse {
        article: id.to_string(),
        window: window.as_str(),
        step: series.step.as_str(),
        points: series.bodies(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `GET /v1/meta`.
pub async fn meta(api: &Api) -> ApiResult {
    let values = api.store.meta_values().await.map_err(ApiError::from)?;
    let mut networks: Vec<String> = api.counter.networks().names().map(String::from).collect();
    networks.sort();
    let body = MetaResponse {
        sections: values.sections,
        langs: values.langs,
        networks,
    };
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_defaults_to_48_hours_and_refuses_others() {
        assert_eq!(parse_window("").unwrap(), SeriesWindow::H48);
        assert_eq!(parse_window("window=90d").unwrap(), SeriesWindow::D90);
        assert_eq!(parse_window("window=1h").unwrap_err().code(), "invalid_window");
        assert_eq!(parse_window("windw=7d").unwrap_err().code(), "invalid_query");
        assert!(matches!(
            parse_window("window=7d&_=1700000000000"),
            Ok(SeriesWindow::D7)
        ));
    }
}
