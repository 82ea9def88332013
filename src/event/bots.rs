//! The bot filter (on by default, `--count-bots` turns it off): a request whose
//! `User-Agent` matches the vendored pattern list (`bots.txt`: crawlers, link-preview
//! fetchers, HTTP libraries, headless browsers) is answered as usual and not counted.
//! The patterns are compiled once into one automaton; a request with no User-Agent
//! is counted (a site's own server relaying events).

use std::cell::RefCell;
use std::hash::BuildHasher;

use regex::bytes::Regex;

/// The vendored list, one pattern a line.
const PATTERNS: &str = include_str!("bots.txt");

/// The longest prefix of a User-Agent examined: real ones are a few hundred bytes, and
/// every pattern names the client early.
const MAX_UA: usize = 512;

/// Slots of each thread's cache of recent verdicts.
const CACHED: usize = 256;

thread_local! {
    /// Verdicts of the User-Agents this thread saw last, by keyed hash (0: empty). A
    /// site's readers come with a few hundred browser builds, so most requests skip the
    /// automaton, and with it the search cache its threads would share. Every filter
    /// compiles the same list, so filters may share the verdicts.
    static VERDICTS: RefCell<[(u64, bool); CACHED]> = const { RefCell::new([(0, false); CACHED]) };
}

/// The compiled pattern list.
#[derive(Debug, Clone)]
pub struct BotFilter {
    automaton: Regex,
    /// Keys the verdict cache (random per process: no crafted collisions).
    seed: foldhash::fast::RandomState,
}

impl BotFilter {
    /// Compiles the vendored list (once per process).
    pub fn new() -> Self {
        let alternation = PATTERNS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("|");
        BotFilter {
            automaton: Regex::new(&alternation).expect("the vendored bot patterns compile"),
            seed: foldhash::fast::RandomState::default(),
        }
    }

    /// True when `user_agent` names an automated client: the thread's cached verdict
    /// for it, or the automaton's.
    pub fn is_bot(&self, user_agent: &[u8]) -> bool {
        let ua = &user_agent[..user_agent.len().min(MAX_UA)];
        let key = self.seed.hash_one(ua).max(1);
        let slot = (key % CACHED as u64) as usize;
        if let Some(verdict) = VERDICTS.with_borrow(|c| (c[slot].0 == key).then_some(c[slot].1)) {
            return verdict;
        }
        let verdict = self.matches(ua);
        VERDICTS.with_borrow_mut(|c| c[slot] = (key, verdict));
        verdict
    }

    /// Runs the automaton. Lower-cases into a stack buffer: no allocation.
    fn matches(&self, ua: &[u8]) -> bool {
        let mut buf = [0u8; MAX_UA];
        for (dst, src) in buf.iter_mut().zip(ua) {
            *dst = src.to_ascii_lowercase();
        }
        self.automaton.is_match(&buf[..ua.len()])
    }
}

impl Default for BotFilter {
    fn default() -> Self {
        BotFilter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROWSERS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 YaBrowser/24.10",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 309.0",
    ];

    const BOTS: &[&str] = &[
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "TelegramBot (like TwitterBot)",
        "Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "WhatsApp/2.23.20.0 A",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "curl/8.5.0",
        "python-requests/2.32.3",
        "Python-urllib/3.12",
        "Go-http-client/1.1",
        "Wget/1.21.4",
        "axios/1.7.7",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "okhttp/4.12.0",
        "Java/17.0.2",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    ];

    #[test]
    fn cached_verdicts_match_the_automaton_on_every_lookup() {
        let filter = BotFilter::new();
        // More agents than cache slots, twice over: slots are reused and hit.
        let agents: Vec<String> = (0..3 * CACHED)
            .flat_map(|i| {
                [
                    format!("{} v{i}", BROWSERS[i % BROWSERS.len()]),
                    format!("{} v{i}", BOTS[i % BOTS.len()]),
                ]
            })
            .collect();
        for _ in 0..2 {
            for ua in &agents {
                assert_eq!(filter.is_bot(ua.as_bytes()), filter.matches(ua.as_bytes()), "{ua}");
            }
        }
        assert!(agents.iter().any(|ua| filter.is_bot(ua.as_bytes())));
        assert!(agents.iter().any(|ua| !filter.is_bot(ua.as_bytes())));
    }

    #[test]
    fn browsers_are_not_bots() {
        let f = BotFilter::new();
        for ua in BROWSERS {
            assert!(!f.is_bot(ua.as_bytes()), "{ua}");
        }
    }

    #[test]
    fn crawlers_previews_libraries_and_headless_browsers_are_bots() {
        let f = BotFilter::new();
        for ua in BOTS {
            assert!(f.is_bot(ua.as_bytes()), "{ua}");
        }
    }
}
