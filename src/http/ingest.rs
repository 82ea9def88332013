//! Ingest: `POST /v1/events` (object, array or NDJSON) and `GET /v1/pixel.gif`.
//! A request is all-or-nothing: it is validated whole before anything is recorded.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::value::RawValue;

use super::{json_response, text_response, Api, ApiError, ApiResult, Body, JSON_CONTENT_TYPE};
use crate::event::{Counter, Event, EventError, RawEvent};

/// Most events one request may carry.
pub const MAX_EVENTS: usize = 1_000;

/// A 1×1 transparent GIF.
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The content types an ingest body may have (compared case-insensitively).
const ACCEPTED_TYPES: [&[u8]; 4] = [
    b"application/json",
    b"text/plain",
    b"application/x-ndjson",
    b"application/ndjson",
];

/// Refuses content types other than JSON, NDJSON and text/plain (absent is allowed:
/// the body is sniffed the same way). Allocates nothing: it runs on every beacon.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if ACCEPTED_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

fn malformed(index: Option<usize>, why: impl Into<String>) -> ApiError {
    ApiError::Event {
        index,
        source: EventError::Malformed(why.into()),
    }
}

/// Splits a body into raw events: a JSON array, or one or more whitespace-separated
/// objects (a single object and NDJSON alike).
pub fn split_events(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items: Vec<&RawValue> = match first {
        None => return Err(malformed(None, "the body is empty")),
        Some(b'[') => serde_json::from_slice(body).map_err(|e| malformed(None, e.to_string()))?,
        Some(_) => {
            let mut items = Vec::new();
            for (i, item) in serde_json::Deserializer::from_slice(body)
                .into_iter::<&RawValue>()
                .enumerate()
            {
                items.push(item.map_err(|e| malformed(Some(i), e.to_string()))?);
                if items.len() > MAX_EVENTS {
                    break;
                }
            }
            items
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "the request holds no event"));
    }
    if items.len() > MAX_EVENTS {
        return Err(ApiError::bad_request(
            "too_many_events",
            format!("at most {MAX_EVENTS} events a request"),
        ));
    }
    Ok(items)
}

/// A body of one JSON object (a page's beacon, most requests) parsed in one pass; None
/// for anything else (an array, NDJSON, a body that does not parse), which takes the
/// general path and gets its errors.
fn single_object(body: &[u8]) -> Option<RawEvent<'_>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn parse_raw(i: usize, raw: &RawValue) -> Result<RawEvent<'_>, ApiError> {
    if !raw.get().starts_with('{') {
        return Err(malformed(Some(i), "an event must be a JSON object"));
    }
    serde_json::from_str(raw.get()).map_err(|e| malformed(Some(i), e.to_string()))
}

/// Who sent an ingest request: what the rate limit, the bot filter and the visitor
/// hash look at.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The client address (the peer, or `--client-ip-header`'s).
    pub addr: IpAddr,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<&'a [u8]>,
}

impl<'a> Sender<'a> {
    /// The sender of a request from `peer` with `headers`.
    pub fn of(api: &Api, peer: IpAddr, headers: &'a HeaderMap) -> Self {
        Sender {
            addr: api.client_addr.of(peer, headers),
            user_agent: headers.get(header::USER_AGENT).map(HeaderValue::as_bytes),
        }
    }
}

/// `--rate-limit`: `events` tokens of the sender's bucket, or 429 for the whole request.
fn rate_limit(api: &Api, sender: &Sender<'_>, events: usize) -> Result<(), ApiError> {
    match &api.rate_limit {
        Some(limiter) => limiter
            .check(sender.addr, events, Instant::now())
            .map_err(|retry_after| ApiError::RateLimited { retry_after }),
        None => Ok(()),
    }
}

/// `--beacon-secret`: every event needs a valid, unexpired signature, else 403 for the
/// whole request.
fn verify(api: &Api, raws: &[RawEvent<'_>]) -> Result<(), ApiError> {
    let Some(signer) = &api.signer else { return Ok(()) };
    let now = crate::clock::unix_secs();
    for (i, raw) in raws.iter().enumerate() {
        signer
            .verify(raw, now)
            .map_err(|source| ApiError::Event { index: Some(i), source })?;
    }
    Ok(())
}

/// Validates every event (400 naming the first bad one), then checks signatures.
fn validate_all<'r>(api: &Api, raws: &'r [RawEvent<'_>]) -> Result<Vec<Event<'r>>, ApiError> {
    let networks = api.counter.networks();
    let events = raws
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.validate(networks)
                .map_err(|source| ApiError::Event { index: Some(i), source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    verify(api, raws)?;
    let signed = api.signer.is_some();
    Ok(events
        .into_iter()
        .map(|e| if signed { e.signed() } else { e })
        .collect())
}

/// Records `events` through the ingest gate unless the sender is a bot; counts them
/// in the metrics. Answers how many were counted.
fn record(api: &Api, sender: &Sender<'_>, events: &[Event<'_>]) -> Result<usize, ApiError> {
    for field in events.iter().flat_map(Event::dropped) {
        api.metrics.fields_dropped.with_label_values(&[field]).inc();
    }
    let bot = match (&api.bots, sender.user_agent) {
        (Some(filter), Some(ua)) => filter.is_bot(ua),
        _ => false,
    };
    if bot {
        api.metrics.ignored_bot.inc_by(events.len() as u64);
        return Ok(0);
    }
    let visitor = visitor_mark(api, sender, events);
    let record = || api.counter.record_all_from(events, visitor);
    match api.lifecycle.admit(record) {
        None => Err(ApiError::ShuttingDown),
        Some(Err(_)) => Err(ApiError::CapacityExhausted),
        Some(Ok(())) => {
            let views = events.iter().filter(|e| e.counter() == Counter::View).count() as u64;
            // Only the counters that move: each add is an atomic on a line both
            // workers write, and a beacon has no share.
            let shares = events.len() as u64 - views;
            if views > 0 {
                api.metrics.events_view.inc_by(views);
            }
            if shares > 0 {
                api.metrics.events_share.inc_by(shares);
            }
            Ok(events.len())
        }
    }
}

/// The sender's visitor mark, remembered for each article it viewed: one keyed hash
/// per request with views, not per event.
fn visitor_mark(api: &Api, sender: &Sender<'_>, events: &[Event<'_>]) -> Option<crate::visitors::Mark> {
    if !events.iter().any(|e| e.counter() == Counter::View) {
        return None;
    }
    let ua = sender.user_agent.unwrap_or_default();
    api.salts.mark(crate::visitors::today(), sender.addr, ua)
}

/// `POST /v1/events`, with a body whose content type [`check_content_type`] let
/// through (the route checks it before reading the body).
pub fn post_events(api: &Api, sender: &Sender<'_>, body: &Bytes) -> ApiResult {
    let parsed = match single_object(body) {
        Some(one) => {
            rate_limit(api, sender, 1)?;
            vec![one]
        }
        None => {
            let raws = split_events(body)?;
            rate_limit(api, sender, raws.len())?;
            raws.iter()
                .enumerate()
                .map(|(i, r)| parse_raw(i, r))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let events = validate_all(api, &parsed)?;
    let counted = record(api, sender, &events)?;
    Ok(accepted(events.len(), counted))
}

/// The answer to an accepted `POST /v1/events`: `{"accepted":n,"counted":m}` (valid
/// events, of which counted; the rest came from an automated client). A page's beacon
/// (one event) gets a body built once, not serialised per request.
pub fn accepted(accepted: usize, counted: usize) -> Response<Body> {
    const ONE_COUNTED: &str = r#"{"accepted":1,"counted":1}"#;
    const ONE_IGNORED: &str = r#"{"accepted":1,"counted":0}"#;
    match (accepted, counted) {
        (1, 1) => text_response(
            StatusCode::ACCEPTED,
            JSON_CONTENT_TYPE,
            Bytes::from_static(ONE_COUNTED.as_bytes()),
        ),
        (1, 0) => text_response(
            StatusCode::ACCEPTED,
            JSON_CONTENT_TYPE,
            Bytes::from_static(ONE_IGNORED.as_bytes()),
        ),
        _ => json_response(StatusCode::ACCEPTED, &Accepted { accepted, counted }),
    }
}

#[derive(serde::Serialize)]
struct Accepted {
    accepted: usize,
    counted: usize,
}

/// The event of a pixel request's query string.
pub fn pixel_event(query: &str) -> RawEvent<'_> {
    let mut raw = RawEvent::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot: &mut Option<Cow<'_, str>> = match &*k {
            "type" => &mut raw.kind,
            "article" => &mut raw.article,
            "section" => &mut raw.section,
            "lang" => &mut raw.lang,
            "title" => &mut raw.title,
            "url" => &mut raw.url,
            "network" => &mut raw.network,
            "exp" => &mut raw.exp,
            "sig" => &mut raw.sig,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }
    raw
}

/// `GET /v1/pixel.gif?type=view&article=...`.
pub fn pixel(api: &Api, sender: &Sender<'_>, query: &str) -> ApiResult {
    rate_limit(api, sender, 1)?;
    let raw = [pixel_event(query)];
    let events = validate_all(api, &raw).map_err(|e| match e {
        ApiError::Event { source, .. } => ApiError::Event { index: None, source },
        other => other,
    })?;
    record(api, sender, &events)?;
    let mut resp: Response<Body> = text_response(StatusCode::OK, "image/gif", Bytes::from_static(PIXEL_GIF));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_ndjson_split_alike() {
        assert_eq!(split_events(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(split_events(br#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert_eq!(split_events(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap().len(), 3);
    }

    #[test]
    fn bad_bodies_are_refused() {
        for body in [&b""[..], b"   ", b"[]", b"{\"a\":", b"[1,", b"nonsense"] {
            assert!(split_events(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let too_many = format!("[{}]", vec!["{}"; MAX_EVENTS + 1].join(","));
        assert_eq!(split_events(too_many.as_bytes()).unwrap_err().code(), "too_many_events");
    }

    #[test]
    fn only_a_body_of_one_whole_object_takes_the_one_pass_path() {
        let one = single_object(br#" {"type":"view","article":"a1"} "#).expect("one object");
        assert_eq!(one.article.as_deref(), Some("a1"));
        for other in [
            &br#"[{"type":"view","article":"a1"}]"#[..],
            b"{\"article\":\"a1\"}\n{\"article\":\"a2\"}\n",
            br#"{"article":"a1""#,
            br#"{"article":"a1","article":"a2"}"#,
            b"",
        ] {
            assert!(single_object(other).is_none(), "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn a_broken_ndjson_line_is_named_by_index() {
        let err = split_events(b"{\"a\":1}\n{\"a\":\n").unwrap_err();
        assert!(matches!(err, ApiError::Event { index: Some(1), .. }));
    }

    #[test]
    fn content_types_are_matched_without_case_or_parameters() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            check_content_type(&h)
        };
        for ok in [
            "text/plain",
            "Application/JSON; charset=utf-8",
            " application/x-ndjson ",
            "application/ndjson;x=1",
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in ["text/html", "application/jsonx", "", "multipart/form-data; boundary=x"] {
            assert!(matches!(with(bad), Err(ApiError::UnsupportedMediaType)), "{bad}");
        }
        assert!(check_content_type(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn the_accepted_body_is_the_same_built_once_or_serialised() {
        for (a, c) in [(1, 1), (1, 0), (2, 1), (1000, 1000)] {
            let resp = accepted(a, c);
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], JSON_CONTENT_TYPE);
            let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(resp.into_body()))
                .unwrap()
                .unwrap()
                .to_bytes();
            let want = serde_json::to_vec(&Accepted {
                accepted: a,
                counted: c,
            })
            .unwrap();
            assert_eq!(body, want);
        }
    }

    #[test]
    fn pixel_query_parameters_decode() {
        let raw = pixel_event("type=view&article=a%2Db&lang=en&r=123&article=ignored");
        assert_eq!(raw.article.as_deref(), Some("a-b"));
        assert_eq!(raw.lang.as_deref(), Some("en"));
    }
}
