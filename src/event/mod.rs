//! Step 1 of the data flow: what a beacon says. Identifiers are validated in their
//! constructors, so everything past this module holds only valid ids.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod networks;

pub use networks::{Networks, DEFAULT_NETWORKS, MAX_NETWORKS};

/// Why an event (or one of its fields) was refused; maps to a 400 with a stable code.
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
    /// `section` is not a valid section.
    #[error("section must be 1-32 characters of a-z 0-9 _ -")]
    InvalidSection,
    /// `lang` is not a valid language tag.
    #[error("lang must be 2-16 characters of a-z A-Z 0-9 -")]
    InvalidLang,
    /// `network` is missing on a share or not one of the configured networks.
    #[error("network must be one of the configured share networks")]
    InvalidNetwork,
}

impl EventError {
    /// The machine-readable code of the contract's error body.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Malformed(_) => "malformed_json",
            EventError::UnknownType => "invalid_type",
            EventError::InvalidArticle => "invalid_article",
            EventError::InvalidSection => "invalid_section",
            EventError::InvalidLang => "invalid_lang",
            EventError::InvalidNetwork => "invalid_network",
        }
    }
}

/// The longest article id the contract admits.
pub const MAX_ARTICLE_LEN: usize = 64;

fn is_article_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn is_section_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-')
}

fn is_lang_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn valid(s: &str, len: std::ops::RangeInclusive<usize>, byte_ok: fn(u8) -> bool) -> bool {
    len.contains(&s.len()) && s.bytes().all(byte_ok)
}

/// Checks an article id without allocating (the hot path validates borrowed ids).
pub fn validate_article(s: &str) -> Result<&str, EventError> {
    if valid(s, 1..=MAX_ARTICLE_LEN, is_article_byte) {
        Ok(s)
    } else {
        Err(EventError::InvalidArticle)
    }
}

/// Checks a section name without allocating.
pub fn validate_section(s: &str) -> Result<&str, EventError> {
    if valid(s, 1..=32, is_section_byte) {
        Ok(s)
    } else {
        Err(EventError::InvalidSection)
    }
}

/// Checks a language tag without allocating.
pub fn validate_lang(s: &str) -> Result<&str, EventError> {
    if valid(s, 2..=16, is_lang_byte) {
        Ok(s)
    } else {
        Err(EventError::InvalidLang)
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

/// An article's section and language, as the latest event gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// e.g. `analytics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<Box<str>>,
    /// e.g. `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<Box<str>>,
}

impl Meta {
    /// True when the event carried neither a section nor a language.
    pub fn is_empty(&self) -> bool {
        self.section.is_none() && self.lang.is_none()
    }
}

/// Which counter of an article an event adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A page view.
    View,
    /// A share to configured network `i`.
    Share(u8),
}

/// One valid event, borrowing its text from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The article counted.
    pub article: &'a str,
    /// View or share (and where to).
    pub counter: Counter,
    /// Section, if the event gave one.
    pub section: Option<&'a str>,
    /// Language, if the event gave one.
    pub lang: Option<&'a str>,
}

/// The fields of an event before validation; strings borrow from the body where
/// they contain no escapes.
#[derive(Debug, Default, Deserialize)]
pub struct RawEvent<'a> {
    /// `view` or `share`.
    #[serde(rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    /// The article id (a JSON string, or a non-negative integer as many CMSs use).
    #[serde(borrow, default, deserialize_with = "string_or_integer")]
    pub article: Option<Cow<'a, str>>,
    /// Optional section.
    #[serde(borrow)]
    pub section: Option<Cow<'a, str>>,
    /// Optional language.
    #[serde(borrow)]
    pub lang: Option<Cow<'a, str>>,
    /// The share network (shares only).
    #[serde(borrow)]
    pub network: Option<Cow<'a, str>>,
}

fn string_or_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a non-negative integer")
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
    }
    d.deserialize_any(Visitor)
}

impl<'a> RawEvent<'a> {
    /// Validates every field; the first invalid one decides the error.
    pub fn validate<'s>(&'s self, networks: &Networks) -> Result<Event<'s>, EventError> {
        let counter = match self.kind.as_deref() {
            Some("view") => Counter::View,
            Some("share") => {
                let network = self.network.as_deref().ok_or(EventError::InvalidNetwork)?;
                Counter::Share(networks.find(network)?)
            }
            _ => return Err(EventError::UnknownType),
        };
        let article = validate_article(self.article.as_deref().unwrap_or(""))?;
        let section = self.section.as_deref().map(validate_section).transpose()?;
        let lang = self.lang.as_deref().map(validate_lang).transpose()?;
        Ok(Event {
            article,
            counter,
            section,
            lang,
        })
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
        assert_eq!(e.article, "12345");
        assert_eq!(e.counter, Counter::View);
        assert_eq!(e.section, Some("analytics"));
        assert_eq!(e.lang, Some("en"));
    }

    #[test]
    fn a_share_needs_a_configured_network() {
        let n = Networks::default();
        let ok = raw(r#"{"type":"share","article":"a","network":"telegram"}"#);
        assert_eq!(ok.validate(&n).unwrap().counter, Counter::Share(3));
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
        assert!(validate_section("Analytics").is_err());
        assert!(validate_section(&"s".repeat(33)).is_err());
        assert!(validate_lang("e").is_err());
        assert!(validate_lang("en-GB").is_ok());
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
        assert_eq!(r.validate(&Networks::default()).unwrap().article, "12345");
        assert!(serde_json::from_str::<RawEvent<'_>>(r#"{"type":"view","article":-1}"#).is_err());
    }

    #[test]
    fn escaped_strings_are_still_validated() {
        let r = raw(r#"{"type":"view","article":"a\u0020b"}"#);
        assert_eq!(r.validate(&Networks::default()), Err(EventError::InvalidArticle));
    }
}
