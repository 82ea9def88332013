//! Step 1 of the data flow: what a beacon says. Identifiers are validated in their
//! constructors, so everything past this module holds only valid ids.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub mod bots;
pub mod meta;
mod networks;
pub mod verify;

pub use bots::BotFilter;
pub use networks::{Networks, DEFAULT_NETWORKS, MAX_NETWORKS};
pub use verify::Signer;

/// Why an event was refused; maps to a 400 (403 for a signature) with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body or query is not an event object.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// `type` is missing or not `view` / `share`.
    #[error("event type must be \"view\" or \"share\"")]
    UnknownType,
    /// `article` is missing or not a valid id.
    #[error("article id must be 1-64 characters of A-Z a-z 0-9 . _ -")]
    InvalidArticle,
    /// `network` is missing on a share or not one of the configured networks.
    #[error("network must be one of the configured share networks")]
    InvalidNetwork,
    /// `--beacon-secret` is set and the event has no valid, unexpired signature.
    #[error("the event needs a valid, unexpired signature (exp and sig)")]
    InvalidSignature,
}

impl EventError {
    /// The machine-readable code of the contract's error body.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Malformed(_) => "malformed_json",
            EventError::UnknownType => "invalid_type",
            EventError::InvalidArticle => "invalid_article",
            EventError::InvalidNetwork => "invalid_network",
            EventError::InvalidSignature => "invalid_signature",
        }
    }
}

/// The longest article id the contract admits.
pub const MAX_ARTICLE_LEN: usize = 64;

fn is_article_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks an article id without allocating (the hot path validates borrowed ids).
pub fn validate_article(s: &str) -> Result<&str, EventError> {
    if (1..=MAX_ARTICLE_LEN).contains(&s.len()) && s.bytes().all(is_article_byte) {
        Ok(s)
    } else {
        Err(EventError::InvalidArticle)
    }
}

/// A valid article id, cheap to clone (shared between a batch and the reads).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ArticleId(Arc<str>);

impl ArticleId {
    /// Validates and copies an article id.
    pub fn parse(s: &str) -> Result<Self, EventError> {
        validate_article(s).map(|s| ArticleId(Arc::from(s)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Hash and Eq of the Arc<str> are those of the str, so maps keyed by ArticleId can be
// searched with a borrowed &str.
impl std::borrow::Borrow<str> for ArticleId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArticleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ArticleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        ArticleId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An article's metadata as events (or the admin API) gave it, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// e.g. `analytics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<Box<str>>,
    /// e.g. `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<Box<str>>,
    /// The article's headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Box<str>>,
    /// The article's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Box<str>>,
    /// The values come from validly signed events: they replace what the store holds
    /// (unsigned values only fill fields the store does not have yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
}

impl Meta {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.section.is_none() && self.lang.is_none() && self.title.is_none() && self.url.is_none()
    }

    /// The fields that are set, by name (`section`, `lang`, `title`, `url`).
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        [
            ("section", &self.section),
            ("lang", &self.lang),
            ("title", &self.title),
            ("url", &self.url),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
    }

    /// Sets field `name` (one of [`META_FIELDS`]); other names are ignored.
    pub fn set(&mut self, name: &str, value: &str) {
        let slot = match name {
            "section" => &mut self.section,
            "lang" => &mut self.lang,
            "title" => &mut self.title,
            "url" => &mut self.url,
            _ => return,
        };
        *slot = Some(value.into());
    }

    /// Fills each field `other` has: every one when `replace`, else only those unset here.
    /// True when anything changed.
    pub fn merge(&mut self, other: &Meta, replace: bool) -> bool {
        let mut changed = false;
        for (name, value) in other.fields() {
            let slot = match name {
                "section" => &mut self.section,
                "lang" => &mut self.lang,
                "title" => &mut self.title,
                _ => &mut self.url,
            };
            if slot.is_none() || (replace && slot.as_deref() != Some(value)) {
                *slot = Some(value.into());
                changed = true;
            }
        }
        changed
    }
}

/// The metadata fields, in the order reads and stores list them.
pub const META_FIELDS: [&str; 4] = ["section", "lang", "title", "url"];

/// Which counter of an article an event adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A page view.
    View,
    /// A share to configured network `i`.
    Share(u8),
}

/// One valid event, borrowing its text from the request where it needed no
/// normalising. Built only by [`RawEvent::validate`] or [`Event::new`], so every field
/// holds a valid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    article: &'a str,
    counter: Counter,
    section: Option<Cow<'a, str>>,
    lang: Option<Cow<'a, str>>,
    title: Option<Cow<'a, str>>,
    url: Option<&'a str>,
    signed: bool,
    dropped: u8,
}

impl<'a> Event<'a> {
    /// An event of `counter` on `article` (validated), without metadata.
    pub fn new(article: &'a str, counter: Counter) -> Result<Self, EventError> {
        Ok(Event {
            article: validate_article(article)?,
            counter,
            section: None,
            lang: None,
            title: None,
            url: None,
            signed: false,
            dropped: 0,
        })
    }

    /// A view of `article`; panics on an invalid id (tests and benches).
    pub fn view(article: &'a str) -> Self {
        Event::new(article, Counter::View).expect("a valid article id")
    }

    /// With `section`, normalised (dropped when still invalid).
    pub fn with_section(mut self, raw: &'a str) -> Self {
        self.section = self.keep(meta::section(raw), 0);
        self
    }

    /// With `lang`, normalised (dropped when still invalid).
    pub fn with_lang(mut self, raw: &'a str) -> Self {
        self.lang = self.keep(meta::lang(raw), 1);
        self
    }

    /// With `title`, normalised (dropped when still invalid).
    pub fn with_title(mut self, raw: &'a str) -> Self {
        self.title = self.keep(meta::title(raw), 2);
        self
    }

    /// With `url` (dropped when invalid).
    pub fn with_url(mut self, raw: &'a str) -> Self {
        self.url = self.keep(meta::url(raw), 3);
        self
    }

    /// Marks the event as validly signed: its metadata replaces what is stored.
    pub fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    fn keep<T>(&mut self, value: Option<T>, bit: u8) -> Option<T> {
        if value.is_none() {
            self.dropped |= 1 << bit;
        }
        value
    }

    /// The article counted.
    pub fn article(&self) -> &str {
        self.article
    }

    /// View or share (and where to).
    pub fn counter(&self) -> Counter {
        self.counter
    }

    /// The normalised section, if the event gave a valid one.
    pub fn section(&self) -> Option<&str> {
        self.section.as_deref()
    }

    /// The normalised language, if the event gave a valid one.
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }

    /// The normalised title, if the event gave a valid one.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The url, if the event gave a valid one.
    pub fn url(&self) -> Option<&str> {
        self.url
    }

    /// True when the event carried a valid signature.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// True when the event carries any metadata.
    pub fn has_meta(&self) -> bool {
        self.section.is_some() || self.lang.is_some() || self.title.is_some() || self.url.is_some()
    }

    /// The metadata fields the event gave but that were invalid and dropped.
    pub fn dropped(&self) -> impl Iterator<Item = &'static str> + '_ {
        META_FIELDS
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.dropped & (1 << i) != 0)
            .map(|(_, name)| name)
    }

    /// The metadata as the store keeps it.
    pub fn meta(&self) -> Meta {
        Meta {
            section: self.section().map(Into::into),
            lang: self.lang().map(Into::into),
            title: self.title().map(Into::into),
            url: self.url().map(Into::into),
            signed: self.signed,
        }
    }
}

/// The fields of an event before validation; strings borrow from the body where
/// they contain no escapes. Every field takes any JSON value (see [`lenient_string`]),
/// so a field of the wrong type is judged by the rule of that field (an article id
/// that is not one is `invalid_article`, a section that is not one is dropped and the
/// view counted) instead of failing the whole event as malformed.
#[derive(Debug, Default, Deserialize)]
pub struct RawEvent<'a> {
    /// `view` or `share`.
    #[serde(rename = "type", borrow, default, deserialize_with = "lenient_string")]
    pub kind: Option<Cow<'a, str>>,
    /// The article id (a JSON string, or a non-negative integer as many CMSs use).
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub article: Option<Cow<'a, str>>,
    /// Optional section.
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub section: Option<Cow<'a, str>>,
    /// Optional language.
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub lang: Option<Cow<'a, str>>,
    /// Optional headline (views).
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub title: Option<Cow<'a, str>>,
    /// Optional address (views).
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub url: Option<Cow<'a, str>>,
    /// The share network (shares only).
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub network: Option<Cow<'a, str>>,
    /// Signed beacons: when the signature expires, Unix seconds.
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub exp: Option<Cow<'a, str>>,
    /// Signed beacons: the signature, lowercase hex.
    #[serde(borrow, default, deserialize_with = "lenient_string")]
    pub sig: Option<Cow<'a, str>>,
}

/// What a field of another JSON type than string or non-negative integer reads as: a
/// NUL, which no rule accepts (not an article id, a network, a type, a section, a
/// language, a url or hex; a title loses its control characters and is then empty).
pub const NOT_A_STRING: &str = "\0";

/// A field as a string: a string as it is, a non-negative integer in decimal (article
/// ids and `exp` are often numbers), `null` as absent, anything else (a negative or
/// fractional number, a boolean, an array, an object) as [`NOT_A_STRING`].
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(NOT_A_STRING)))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(NOT_A_STRING)))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(NOT_A_STRING)))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Some(Cow::Borrowed(NOT_A_STRING)))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(Some(Cow::Borrowed(NOT_A_STRING)))
        }
    }
    d.deserialize_any(Visitor)
}

/// The fields of an event as raw JSON, for [`RawEvent::from_json`]'s second look at an
/// event serde_json would not read whole.
#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    article: Option<&'a RawValue>,
    #[serde(borrow, default)]
    section: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lang: Option<&'a RawValue>,
    #[serde(borrow, default)]
    title: Option<&'a RawValue>,
    #[serde(borrow, default)]
    url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    network: Option<&'a RawValue>,
    #[serde(borrow, default)]
    exp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sig: Option<&'a RawValue>,
}

/// A field's raw JSON read as [`lenient_string`] reads it, where serde_json refuses the
/// value itself: a string with an unpaired surrogate escape (a headline cut in the
/// middle of an emoji) is decoded with U+FFFD in its place, a number out of range
/// reads as [`NOT_A_STRING`].
fn lenient_raw<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    let text = raw.get();
    match lenient_string(&mut serde_json::Deserializer::from_str(text)) {
        Ok(value) => value,
        Err(_) if text.starts_with('"') => Some(Cow::Owned(decode_lossy(text))),
        Err(_) => Some(Cow::Borrowed(NOT_A_STRING)),
    }
}

/// A JSON string literal decoded with every unpaired surrogate escape as U+FFFD.
fn decode_lossy(literal: &str) -> String {
    fn push_units(out: &mut String, units: &mut Vec<u16>) {
        out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)));
    }
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(literal);
    let mut out = String::with_capacity(inner.len());
    let mut units = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            push_units(&mut out, &mut units);
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u16::from_str_radix(&hex, 16) {
                    Ok(unit) => units.push(unit),
                    Err(_) => out.push(char::REPLACEMENT_CHARACTER),
                }
            }
            Some(escaped) => {
                push_units(&mut out, &mut units);
                out.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    other => other,
                });
            }
            None => {}
        }
    }
    push_units(&mut out, &mut units);
    out
}

impl<'a> RawEvent<'a> {
    /// Reads one event object (anything else is refused). Where serde_json refuses a
    /// value inside it (an unpaired surrogate escape, a number out of range), the event
    /// is read again field by field and only that field is judged by its rule: a
    /// metadata field is then dropped or repaired, never a reason to refuse the view.
    /// A body that is not a JSON object keeps serde_json's error.
    pub fn from_json(json: &'a [u8]) -> Result<RawEvent<'a>, serde_json::Error> {
        // serde would also read a struct from an array of its fields in order.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(serde::de::Error::custom("an event must be a JSON object"));
        }
        let strict = match serde_json::from_slice(json) {
            Ok(event) => return Ok(event),
            Err(e) => e,
        };
        let Ok(fields) = serde_json::from_slice::<RawFields<'a>>(json) else {
            return Err(strict);
        };
        let field = |raw: Option<&'a RawValue>| raw.and_then(lenient_raw);
        Ok(RawEvent {
            kind: field(fields.kind),
            article: field(fields.article),
            section: field(fields.section),
            lang: field(fields.lang),
            title: field(fields.title),
            url: field(fields.url),
            network: field(fields.network),
            exp: field(fields.exp),
            sig: field(fields.sig),
        })
    }

    /// Validates the type, article and network (the first invalid one decides the
    /// error); normalises the optional metadata, dropping what is still invalid.
    pub fn validate<'s>(&'s self, networks: &Networks) -> Result<Event<'s>, EventError> {
        let counter = match self.kind.as_deref() {
            Some("view") => Counter::View,
            Some("share") => {
                let network = self.network.as_deref().ok_or(EventError::InvalidNetwork)?;
                Counter::Share(networks.find(network)?)
            }
            _ => return Err(EventError::UnknownType),
        };
        let mut event = Event::new(self.article.as_deref().unwrap_or(""), counter)?;
        if let Some(s) = self.section.as_deref() {
            event = event.with_section(s);
        }
        if let Some(l) = self.lang.as_deref() {
            event = event.with_lang(l);
        }
        if let Some(t) = self.title.as_deref() {
            event = event.with_title(t);
        }
        if let Some(u) = self.url.as_deref() {
            event = event.with_url(u);
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawEvent<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_view_with_section_and_lang_is_valid() {
        let r = raw(r#"{"type":"view","article":"12345","section":"analytics","lang":"en"}"#);
        let e = r.validate(&Networks::default()).unwrap();
        assert_eq!(e.article(), "12345");
        assert_eq!(e.counter(), Counter::View);
        assert_eq!(e.section(), Some("analytics"));
        assert_eq!(e.lang(), Some("en"));
    }

    fn from_json(json: &str) -> Result<RawEvent<'_>, serde_json::Error> {
        RawEvent::from_json(json.as_bytes())
    }

    #[test]
    fn a_headline_cut_inside_an_emoji_is_repaired_and_the_view_kept() {
        let r = from_json(r#"{"type":"view","article":"a","title":"Floods \ud83c","section":"\ud83d"}"#).unwrap();
        let e = r.validate(&Networks::default()).unwrap();
        assert_eq!(e.title(), Some("Floods \u{fffd}"));
        assert_eq!(e.section(), None, "a section of U+FFFD alone is no section");
        assert_eq!(e.dropped().collect::<Vec<_>>(), ["section"]);
    }

    #[test]
    fn a_metadata_number_out_of_range_is_dropped_and_the_view_kept() {
        let r = from_json(r#"{"type":"view","article":"a","section":1e400,"lang":"en"}"#).unwrap();
        let e = r.validate(&Networks::default()).unwrap();
        assert_eq!((e.section(), e.lang()), (None, Some("en")));
        assert_eq!(e.dropped().collect::<Vec<_>>(), ["section"]);
    }

    #[test]
    fn a_required_field_serde_json_refuses_is_still_invalid() {
        let bad_article = from_json(r#"{"type":"view","article":"\udc00","title":"\ud800"}"#).unwrap();
        let err = bad_article.validate(&Networks::default()).unwrap_err();
        assert!(matches!(err, EventError::InvalidArticle), "{err:?}");
        let bad_network = from_json(r#"{"type":"share","article":"a","network":1e999}"#).unwrap();
        let err = bad_network.validate(&Networks::default()).unwrap_err();
        assert!(matches!(err, EventError::InvalidNetwork), "{err:?}");
    }

    #[test]
    fn a_body_that_is_not_one_json_object_keeps_its_error() {
        for bad in [
            r#"{"type":"view","article":"a","article":"b"}"#,
            r#"{"type":"view","article":"a","title":"\ud800""#,
            r#"["not","an","object"]"#,
            r#"{"type":"view"} {"type":"view"}"#,
        ] {
            assert!(from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lossy_decoding_pairs_surrogates_and_keeps_every_other_escape() {
        assert_eq!(
            decode_lossy(r#""a\ud83d\ude00\n\t\"\\\/\u00e9\ud800x\udc00""#),
            "a\u{1f600}\n\t\"\\/\u{e9}\u{fffd}x\u{fffd}"
        );
    }

    #[test]
    fn invalid_metadata_is_dropped_and_the_event_kept() {
        let r = raw(r#"{"type":"view","article":"a","section":"a/b","lang":"EN_gb","url":"ftp://x","title":" T "}"#);
        let e = r.validate(&Networks::default()).unwrap();
        assert_eq!(
            (e.section(), e.lang(), e.title(), e.url()),
            (None, Some("en-gb"), Some("T"), None)
        );
        assert_eq!(e.dropped().collect::<Vec<_>>(), ["section", "url"]);
    }

    #[test]
    fn networks_match_case_insensitively() {
        let r = raw(r#"{"type":"share","article":"a","network":"Telegram"}"#);
        assert_eq!(r.validate(&Networks::default()).unwrap().counter(), Counter::Share(3));
    }

    #[test]
    fn unsigned_metadata_fills_only_what_is_missing() {
        let mut stored = Meta {
            section: Some("politics".into()),
            ..Meta::default()
        };
        let incoming = Event::view("a").with_section("casino").with_lang("en").meta();
        assert!(stored.merge(&incoming, false));
        assert_eq!(
            (stored.section.as_deref(), stored.lang.as_deref()),
            (Some("politics"), Some("en"))
        );
        assert!(stored.merge(&incoming, true));
        assert_eq!(stored.section.as_deref(), Some("casino"));
    }

    #[test]
    fn a_share_needs_a_configured_network() {
        let n = Networks::default();
        let ok = raw(r#"{"type":"share","article":"a","network":"telegram"}"#);
        assert_eq!(ok.validate(&n).unwrap().counter(), Counter::Share(3));
        let missing = raw(r#"{"type":"share","article":"a"}"#);
        assert_eq!(missing.validate(&n), Err(EventError::InvalidNetwork));
        let unknown = raw(r#"{"type":"share","article":"a","network":"myspace"}"#);
        assert_eq!(unknown.validate(&n), Err(EventError::InvalidNetwork));
    }

    #[test]
    fn identifiers_follow_the_contract() {
        assert!(validate_article(&"a".repeat(64)).is_ok());
        assert!(validate_article(&"a".repeat(65)).is_err());
        assert!(validate_article("").is_err());
        assert!(validate_article("a b").is_err());
        assert!(validate_article("ü").is_err());
    }

    #[test]
    fn unknown_types_are_refused() {
        let n = Networks::default();
        assert_eq!(
            raw(r#"{"type":"click","article":"a"}"#).validate(&n),
            Err(EventError::UnknownType)
        );
        assert_eq!(raw(r#"{"article":"a"}"#).validate(&n), Err(EventError::UnknownType));
    }

    #[test]
    fn numeric_article_ids_are_accepted() {
        let r = raw(r#"{"type":"view","article":12345}"#);
        assert_eq!(r.validate(&Networks::default()).unwrap().article(), "12345");
    }

    #[test]
    fn a_required_field_of_another_type_is_invalid_by_its_own_rule() {
        let n = Networks::default();
        for article in ["-1", "1.5", "true", "[\"a\"]", r#"{"$gt":""}"#] {
            let json = format!(r#"{{"type":"view","article":{article}}}"#);
            assert_eq!(raw(&json).validate(&n), Err(EventError::InvalidArticle), "{json}");
        }
        assert_eq!(
            raw(r#"{"type":"share","article":"a","network":7}"#).validate(&n),
            Err(EventError::InvalidNetwork)
        );
        assert_eq!(
            raw(r#"{"type":["view"],"article":"a"}"#).validate(&n),
            Err(EventError::UnknownType)
        );
    }

    #[test]
    fn metadata_of_another_type_is_dropped_and_the_view_kept() {
        let r = raw(r#"{"type":"view","article":"a","section":{"a":[1]},"lang":["en"],"title":true,"url":-3}"#);
        let e = r.validate(&Networks::default()).unwrap();
        assert_eq!((e.section(), e.lang(), e.title(), e.url()), (None, None, None, None));
        assert_eq!(e.dropped().collect::<Vec<_>>(), ["section", "lang", "title", "url"]);
        let r = raw(r#"{"type":"view","article":"a","section":42}"#);
        assert_eq!(r.validate(&Networks::default()).unwrap().section(), Some("42"));
    }

    #[test]
    fn escaped_strings_are_still_validated() {
        let r = raw(r#"{"type":"view","article":"a\u0020b"}"#);
        assert_eq!(r.validate(&Networks::default()), Err(EventError::InvalidArticle));
    }
}
