//! Ingest: `POST /v1/events` (object, array or NDJSON) and `GET /v1/pixel.gif`.
//! A request is all-or-nothing: it is validated whole before anything is recorded.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
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

/// The raw events of a body, in order, up to the first that is not JSON.
#[derive(Debug)]
pub struct Split<'b> {
    /// The events before the first one that does not parse (all of them, usually).
    pub items: Vec<&'b RawValue>,
    /// Why the body stops being JSON after `items`, if it does: reported only when
    /// none of `items` is a bad event itself.
    pub broken: Option<ApiError>,
}

/// Splits a body into raw events: a JSON array, or one or more whitespace-separated
/// objects (a single object and NDJSON alike). An empty body or batch, and one of too
/// many events, are refused whole; a body that stops being JSON keeps the events
/// before that point, so the first bad event can be named whatever makes it bad.
pub fn split_events(body: &[u8]) -> Result<Split<'_>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let mut items = Vec::new();
    let broken = match first {
        None => return Err(malformed(None, "the body is empty")),
        Some(b'[') => split_array(body, &mut items),
        Some(_) => split_stream(body, &mut items),
    };
    if items.len() > MAX_EVENTS {
        return Err(ApiError::bad_request(
            "too_many_events",
            format!("at most {MAX_EVENTS} events a request"),
        ));
    }
    if items.is_empty() && broken.is_none() {
        return Err(ApiError::bad_request("empty_batch", "the request holds no event"));
    }
    Ok(Split { items, broken })
}

/// The elements of a JSON array into `items`, stopping past [`MAX_EVENTS`]; an error
/// inside the array names the element where it stops being JSON.
fn split_array<'b>(body: &'b [u8], items: &mut Vec<&'b RawValue>) -> Option<ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Err(e) = ArrayItems(items).deserialize(&mut de) {
        return (items.len() <= MAX_EVENTS).then(|| malformed(Some(items.len()), e.to_string()));
    }
    de.end().err().map(|e| malformed(None, e.to_string()))
}

/// Whitespace-separated JSON values (one object, or NDJSON) into `items`, stopping
/// past [`MAX_EVENTS`]; the error names the value that does not parse.
fn split_stream<'b>(body: &'b [u8], items: &mut Vec<&'b RawValue>) -> Option<ApiError> {
    for (i, item) in serde_json::Deserializer::from_slice(body)
        .into_iter::<&RawValue>()
        .enumerate()
    {
        match item {
            Ok(raw) => items.push(raw),
            Err(e) => return Some(malformed(Some(i), e.to_string())),
        }
        if items.len() > MAX_EVENTS {
            break;
        }
    }
    None
}

/// Reads a JSON array's elements into the vector as raw JSON, one by one, so the
/// elements before a syntax error are kept.
struct ArrayItems<'v, 'b>(&'v mut Vec<&'b RawValue>);

impl<'de> DeserializeSeed<'de> for ArrayItems<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArrayItems<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element()? {
            self.0.push(raw);
            if self.0.len() > MAX_EVENTS {
                return Err(serde::de::Error::custom("too many events"));
            }
        }
        Ok(())
    }
}

/// A body of one JSON object (a page's beacon, most requests) parsed in one pass; None
/// for anything else (an array, NDJSON, a body that does not parse), which takes the
/// general path and gets its errors.
fn single_object(body: &[u8]) -> Option<RawEvent<'_>> {
    RawEvent::from_json(body).ok()
}

/// One raw event of a batch, read as an event object.
fn parse_raw(i: usize, raw: &RawValue) -> Result<RawEvent<'_>, ApiError> {
    RawEvent::from_json(raw.get().as_bytes()).map_err(|e| malformed(Some(i), e.to_string()))
}

/// The events of a split body, read in order up to the first that is not an event
/// object; that one's error (or the split's) is handed back after them.
fn parse_split(split: Split<'_>) -> (Vec<RawEvent<'_>>, Option<ApiError>) {
    let mut parsed = Vec::with_capacity(split.items.len());
    for (i, raw) in split.items.into_iter().enumerate() {
        match parse_raw(i, raw) {
            Ok(event) => parsed.push(event),
            Err(e) => return (parsed, Some(e)),
        }
    }
    (parsed, split.broken)
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
            .map_err(|retry_after| ApiError::RateLimited {
                retry_after,
                over_burst: (events > limiter.burst()).then_some(limiter.burst()),
            }),
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

/// Validates the events in order, then reports `broken` (where the body stopped being
/// events after them): the 400 names the first bad event, whatever makes it bad.
fn validate_all<'r>(api: &Api, raws: &'r [RawEvent<'_>], broken: Option<ApiError>) -> Result<Vec<Event<'r>>, ApiError> {
    let networks = api.counter.networks();
    let events = raws
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.validate(networks)
                .map_err(|source| ApiError::Event { index: Some(i), source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match broken {
        Some(e) => Err(e),
        None => Ok(events),
    }
}

/// With `--beacon-secret`, checks every event's signature (403 for the whole request)
/// and marks the events signed; without, hands them back as they are.
fn signed<'r>(api: &Api, raws: &[RawEvent<'_>], events: Vec<Event<'r>>) -> Result<Vec<Event<'r>>, ApiError> {
    if api.signer.is_none() {
        return Ok(events);
    }
    verify(api, raws)?;
    Ok(events.into_iter().map(Event::signed).collect())
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
    let (parsed, broken) = match single_object(body) {
        Some(one) => (vec![one], None),
        None => parse_split(split_events(body)?),
    };
    let events = validate_all(api, &parsed, broken)?;
    rate_limit(api, sender, events.len())?;
    let events = signed(api, &parsed, events)?;
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
    let raw = [pixel_event(query)];
    let without_index = |e| match e {
        ApiError::Event { source, .. } => ApiError::Event { index: None, source },
        other => other,
    };
    let events = validate_all(api, &raw, None).map_err(without_index)?;
    rate_limit(api, sender, 1)?;
    let events = signed(api, &raw, events).map_err(without_index)?;
    record(api, sender, &events)?;
    let mut resp: Response<Body> = text_response(StatusCode::OK, "image/gif", Bytes::from_static(PIXEL_GIF));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &[u8]) -> Split<'_> {
        split_events(body).unwrap()
    }

    fn broken_at(body: &[u8]) -> Option<usize> {
        match split(body).broken {
            Some(ApiError::Event { index, .. }) => index,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn objects_arrays_and_ndjson_split_alike() {
        assert_eq!(split(br#"{"a":1}"#).items.len(), 1);
        assert_eq!(split(br#"[{"a":1},{"a":2}]"#).items.len(), 2);
        assert_eq!(split(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").items.len(), 3);
        assert!(split(br#"[{"a":1},{"a":2}]"#).broken.is_none());
    }

    #[test]
    fn empty_bodies_and_batches_and_too_many_events_are_refused_whole() {
        for body in [&b""[..], b"   ", b"[]"] {
            assert!(split_events(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let too_many = format!("[{}]", vec!["{}"; MAX_EVENTS + 1].join(","));
        assert_eq!(split_events(too_many.as_bytes()).unwrap_err().code(), "too_many_events");
        let too_many = vec!["{}"; MAX_EVENTS + 1].join("\n");
        assert_eq!(split_events(too_many.as_bytes()).unwrap_err().code(), "too_many_events");
        let too_many_then_broken = format!("[{}, nonsense", vec!["{}"; MAX_EVENTS + 1].join(","));
        assert_eq!(
            split_events(too_many_then_broken.as_bytes()).unwrap_err().code(),
            "too_many_events"
        );
    }

    #[test]
    fn a_body_that_stops_being_json_keeps_the_events_before_and_names_where() {
        assert_eq!(broken_at(b"{\"a\":"), Some(0));
        assert_eq!(broken_at(b"nonsense"), Some(0));
        assert_eq!(broken_at(b"[1,"), Some(1));
        assert_eq!(broken_at(b"[{},{},{\"a\":}]"), Some(2));
        assert_eq!(broken_at(b"[{},]"), Some(1));
        assert_eq!(broken_at(b"{}\n{}\n{\"a\""), Some(2));
        assert_eq!(broken_at(b"{\"a\":1}\n{\"a\":\n"), Some(1));
        assert_eq!(broken_at(b"[{}] trailing"), None);
        assert_eq!(split(b"[{},{},{\"a\":}]").items.len(), 2);
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
