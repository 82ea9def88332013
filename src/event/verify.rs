//! Signed beacons (`--beacon-secret`): the page's server signs each article it renders,
//! `sig = hex(HMAC-SHA256(secret, "v1\n{article}\n{exp}\n{section}\n{lang}\n{title}\n{url}"))`
//! over the values exactly as the event carries them (absent = empty), and an event
//! without a valid, unexpired signature is refused. Several secrets may be configured
//! so one can be rotated: any of them signs.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{EventError, RawEvent};

type HmacSha256 = Hmac<Sha256>;

fn field<'b>(f: &'b Option<std::borrow::Cow<'_, str>>) -> &'b str {
    f.as_deref().unwrap_or("")
}

/// The fields a signature covers, as the event carries them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    /// The article id.
    pub article: &'a str,
    /// Expiry, Unix seconds, as text.
    pub exp: &'a str,
    /// Section, or "".
    pub section: &'a str,
    /// Language, or "".
    pub lang: &'a str,
    /// Title, or "".
    pub title: &'a str,
    /// Url, or "".
    pub url: &'a str,
}

impl Signed<'_> {
    fn mac(&self, secret: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(b"v1");
        for field in [self.article, self.exp, self.section, self.lang, self.title, self.url] {
            mac.update(b"\n");
            mac.update(field.as_bytes());
        }
        mac
    }

    /// The signature under `secret`, lowercase hex.
    pub fn sign(&self, secret: &str) -> String {
        hex::encode(self.mac(secret.as_bytes()).finalize().into_bytes())
    }
}

/// The configured secrets. Purposefully prints none of them in `Debug`.
#[derive(Clone)]
pub struct Signer {
    secrets: Vec<Box<str>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({} secrets)", self.secrets.len())
    }
}

impl Signer {
    /// Parses `--beacon-secret`: comma-separated secrets, none empty.
    pub fn parse(list: &str) -> Result<Signer, String> {
        let secrets: Vec<Box<str>> = list.split(',').map(|s| s.trim().into()).collect();
        if secrets.iter().any(|s| s.is_empty()) {
            return Err("a beacon secret must not be empty".into());
        }
        Ok(Signer { secrets })
    }

    /// The signature the first secret makes: the one `viewcounter sign` gives pages
    /// (while rotating, the new secret is listed first).
    pub fn first_signs(&self, signed: &Signed<'_>) -> String {
        signed.sign(&self.secrets[0])
    }

    /// Checks the signature of `raw` at Unix time `now_secs`: present, unexpired, and
    /// made with one of the secrets (each compared in constant time).
    pub fn verify(&self, raw: &RawEvent<'_>, now_secs: u64) -> Result<(), EventError> {
        let exp = field(&raw.exp);
        let tag = raw
            .sig
            .as_deref()
            .and_then(|s| hex::decode(s).ok())
            .ok_or(EventError::InvalidSignature)?;
        let unexpired = exp.parse::<u64>().is_ok_and(|t| t >= now_secs);
        if !unexpired {
            return Err(EventError::InvalidSignature);
        }
        let signed = Signed {
            article: field(&raw.article),
            exp,
            section: field(&raw.section),
            lang: field(&raw.lang),
            title: field(&raw.title),
            url: field(&raw.url),
        };
        let valid = self
            .secrets
            .iter()
            .any(|s| signed.mac(s.as_bytes()).verify_slice(&tag).is_ok());
        valid.then_some(()).ok_or(EventError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawEvent<'_> {
        serde_json::from_str(json).unwrap()
    }

    fn signed_view(secret: &str, exp: u64, section: &str) -> String {
        let exp = exp.to_string();
        let sig = Signed {
            article: "12345",
            exp: &exp,
            section,
            ..Signed::default()
        }
        .sign(secret);
        format!(r#"{{"type":"view","article":"12345","section":"{section}","exp":{exp},"sig":"{sig}"}}"#)
    }

    #[test]
    fn a_signature_of_any_configured_secret_is_accepted_until_it_expires() {
        let signer = Signer::parse("new,old").unwrap();
        for secret in ["new", "old"] {
            let body = signed_view(secret, 1_000, "analytics");
            assert_eq!(signer.verify(&raw(&body), 999), Ok(()));
            assert_eq!(signer.verify(&raw(&body), 1_000), Ok(()));
            assert_eq!(signer.verify(&raw(&body), 1_001), Err(EventError::InvalidSignature));
        }
    }

    #[test]
    fn unsigned_tampered_and_foreign_signatures_are_refused() {
        let signer = Signer::parse("s3cret").unwrap();
        let unsigned = raw(r#"{"type":"view","article":"12345"}"#);
        assert_eq!(signer.verify(&unsigned, 0), Err(EventError::InvalidSignature));
        let body = signed_view("s3cret", 1_000, "analytics").replace("analytics", "casino");
        assert_eq!(signer.verify(&raw(&body), 0), Err(EventError::InvalidSignature));
        let foreign = signed_view("other", 1_000, "analytics");
        assert_eq!(signer.verify(&raw(&foreign), 0), Err(EventError::InvalidSignature));
    }

    #[test]
    fn the_message_layout_is_stable() {
        // Computed independently: printf 'v1\na\n1\n\n\n\n' | openssl dgst -sha256 -hmac k
        let sig = Signed {
            article: "a",
            exp: "1",
            ..Signed::default()
        }
        .sign("k");
        assert_eq!(sig, "6bfbef5d42326e5a95fed3487a3ae9997ccf77b239c9e9147b4cb38a5cd74865");
        assert!(Signer::parse("a,,b").is_err());
    }
}
