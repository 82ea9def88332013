//! Forgiving metadata: the optional fields a view carries (`section`, `lang`, `title`,
//! `url`) are normalised as the contract says; a field still invalid after that is
//! dropped (the event counts without it), never a reason to refuse the event.
//! Well-formed input (the common case) is borrowed, not copied.

use std::borrow::Cow;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// The longest section, in characters.
pub const MAX_SECTION_CHARS: usize = 64;
/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// The longest url, in bytes (a valid one is ASCII).
pub const MAX_URL_LEN: usize = 2_048;

fn is_plain_section_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
}

fn is_section_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// True when every character of a lower-cased section is allowed: letters, digits and
/// `- _ .`, where a letter takes its combining marks along (a virama in `हिन्दी` or
/// `தமிழ்`, the dot `İ` keeps in lower case, an accent typed as a second character).
fn all_section_chars(s: &str) -> bool {
    let mut after_letter = false;
    s.chars().all(|c| {
        let ok = is_section_char(c) || (after_letter && is_combining_mark(c));
        after_letter = ok && !matches!(c, '-' | '_' | '.');
        ok
    })
}

/// `section`: trimmed, Unicode lower-cased, runs of white space turned into `-`; then
/// 1-64 characters of Unicode letters or digits and `- _ .` (`World News` -> `world-news`).
pub fn section(raw: &str) -> Option<Cow<'_, str>> {
    let t = raw.trim();
    if (1..=MAX_SECTION_CHARS).contains(&t.len()) && t.bytes().all(is_plain_section_byte) {
        return Some(Cow::Borrowed(t));
    }
    let mut out = String::with_capacity(t.len());
    let mut in_space = false;
    for c in t.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('-');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        out.extend(c.to_lowercase());
    }
    // One spelling per section: an accent typed as a second character is composed.
    if is_nfc_quick(out.chars()) != IsNormalized::Yes {
        out = out.nfc().collect();
    }
    let chars = out.chars().count();
    ((1..=MAX_SECTION_CHARS).contains(&chars) && all_section_chars(&out)).then_some(Cow::Owned(out))
}

fn is_lang_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// `lang`: lower-cased with `_` -> `-`; then 2-16 characters of `a-z 0-9 -` (`EN_gb` -> `en-gb`).
pub fn lang(raw: &str) -> Option<Cow<'_, str>> {
    let t = raw.trim();
    if !(2..=16).contains(&t.len()) {
        return None;
    }
    if t.bytes().all(is_lang_byte) {
        return Some(Cow::Borrowed(t));
    }
    let out: String = t
        .chars()
        .map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() })
        .collect();
    out.bytes().all(is_lang_byte).then_some(Cow::Owned(out))
}

/// `title`: control characters removed, trimmed; then 1-300 characters.
pub fn title(raw: &str) -> Option<Cow<'_, str>> {
    let cleaned: Cow<'_, str> = if raw.chars().any(char::is_control) {
        Cow::Owned(raw.chars().filter(|c| !c.is_control()).collect())
    } else {
        Cow::Borrowed(raw)
    };
    let chars = cleaned.trim().chars().count();
    if !(1..=MAX_TITLE_CHARS).contains(&chars) {
        return None;
    }
    Some(match cleaned {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    })
}

/// `url`: an absolute `http`/`https` URL (a host after the scheme, no white space or
/// control characters, nothing outside ASCII: browsers send URLs percent-encoded) of at
/// most 2,048 characters. Kept as given: a signature covers it byte for byte.
pub fn url(raw: &str) -> Option<&str> {
    if raw.len() > MAX_URL_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let lower = |n: usize| raw.get(..n).map(str::to_ascii_lowercase);
    let rest = if lower(8).as_deref() == Some("https://") {
        &raw[8..]
    } else if lower(7).as_deref() == Some("http://") {
        &raw[7..]
    } else {
        return None;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    (!host.is_empty() && !host.starts_with(':')).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_normalised_as_the_contract_says() {
        assert_eq!(section("Analytics").as_deref(), Some("analytics"));
        assert_eq!(section("  World   News ").as_deref(), Some("world-news"));
        assert_eq!(section("Политика").as_deref(), Some("политика"));
        assert_eq!(section("a.b_c-1").as_deref(), Some("a.b_c-1"));
        assert!(matches!(section("sport"), Some(Cow::Borrowed("sport"))));
        assert_eq!(section(&"s".repeat(64)).map(|s| s.len()), Some(64));
        assert_eq!(section(&"я".repeat(64)).map(|s| s.chars().count()), Some(64));
    }

    #[test]
    fn letters_keep_their_combining_marks_in_one_spelling() {
        for (raw, want) in [
            ("हिन्दी", "हिन्दी"),
            ("क्रिकेट", "क्रिकेट"),
            ("தமிழ்", "தமிழ்"),
            ("İstanbul", "i\u{307}stanbul"),
            ("Cafe\u{301}", "caf\u{e9}"),
            ("caf\u{e9}", "caf\u{e9}"),
        ] {
            assert_eq!(section(raw).as_deref(), Some(want), "{raw:?}");
        }
        for stray in ["\u{301}", "-\u{301}", "a.\u{94d}", "a \u{301}"] {
            assert_eq!(section(stray), None, "{stray:?}");
        }
    }

    #[test]
    fn sections_still_invalid_after_normalisation_are_dropped() {
        for bad in ["", "   ", "a/b", "<script>", "caf\u{e9}!", &"s".repeat(65)] {
            assert_eq!(section(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn langs_are_lower_cased_with_dashes() {
        assert_eq!(lang("en").as_deref(), Some("en"));
        assert_eq!(lang("EN_gb").as_deref(), Some("en-gb"));
        assert_eq!(lang("az").as_deref(), Some("az"));
        for bad in ["e", "", "en gb", "ру", &"a".repeat(17)] {
            assert_eq!(lang(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn titles_lose_control_characters_and_outer_space() {
        assert_eq!(title("  Why views\u{7} count ").as_deref(), Some("Why views count"));
        assert_eq!(title("Почему").as_deref(), Some("Почему"));
        assert_eq!(title(&"t".repeat(300)).map(|t| t.len()), Some(300));
        assert_eq!(title(&"t".repeat(301)), None);
        assert_eq!(title(" \n\t "), None);
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert_eq!(
            url("https://site.example/en/a/1?x=1"),
            Some("https://site.example/en/a/1?x=1")
        );
        assert!(url("HTTP://site.example").is_some());
        for bad in [
            "ftp://x",
            "/relative",
            "https://",
            "https:///path",
            "javascript:alert(1)",
            "https://a b",
        ] {
            assert_eq!(url(bad), None, "{bad:?}");
        }
        let long = format!("https://site.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(url(&long), None);
    }
}
