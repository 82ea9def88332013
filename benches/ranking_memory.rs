//! Bytes per tracked article in the in-memory rankings (`Windows`): the resident
//! memory of the process before and after tracking N articles, each with a section,
//! a language and views in every window (the worst case: a flood of new ids within
//! the last 15 minutes), and after a flood of N more past a cap of N.
//!
//! Run: `cargo bench --bench ranking_memory -- [--articles 1000000]`

use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta};
use viewcounter::store::windows::Windows;
use viewcounter::store::{ArticleDelta, Batch, BatchId, StoreError};

fn articles() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--articles")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1_000_000)
}

/// Resident set size in bytes (Linux: /proc/self/statm, pages).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn batch(seq: u64, first: usize, n: usize, at_ms: u64) -> Batch {
    let articles = (first..first + n)
        .map(|i| ArticleDelta {
            // The length of a typical numeric id or short slug.
            article: ArticleId::parse(&format!("art-{i:09}")).unwrap(),
            counts: Counts::of_views(1 + (i as u64 % 13)),
            meta: Meta {
                section: Some(format!("section-{}", i % 30).into()),
                lang: Some("en".into()),
                ..Meta::default()
            },
            visitors: Vec::new(),
        })
        .collect();
    let mut articles: Vec<ArticleDelta> = articles;
    articles.sort_by(|a, b| a.article.as_str().cmp(b.article.as_str()));
    Batch {
        id: BatchId {
            instance: "bench".into(),
            epoch_ms: 1,
            seq,
            chunk: 0,
        },
        flushed_at_ms: at_ms,
        articles,
    }
}

fn main() {
    let n = articles();
    let now = 1_790_000_000_000;
    // Load the (empty) windows at `now`, as a store does at start.
    struct Empty;
    impl viewcounter::store::windows::BucketSource for Empty {
        fn bucket_rows(&self, _: viewcounter::top::Granularity, _: u64) -> Result<Vec<ArticleDelta>, StoreError> {
            Ok(vec![])
        }
    }
    let mut w = Windows::load(&Empty, now, None, None).unwrap();
    w.set_cap(n);
    let before = rss();
    const CHUNK: usize = 10_000;
    for (seq, first) in (0..n).step_by(CHUNK).enumerate() {
        w.apply(&batch(seq as u64, first, CHUNK.min(n - first), now));
    }
    let tracked = w.tracked();
    let after = rss();
    println!(
        "tracked {tracked} articles: RSS +{} MB, {} bytes per tracked article",
        (after - before) / 1_000_000,
        (after - before) / tracked as u64
    );
    for (seq, first) in (n..2 * n).step_by(CHUNK).enumerate() {
        w.apply(&batch(
            (n / CHUNK + seq) as u64,
            first,
            CHUNK.min(2 * n - first),
            now + 1_000,
        ));
    }
    let flooded = rss();
    println!(
        "after {n} more ids past a cap of {n}: tracked {}, RSS +{} MB over the first {n}",
        w.tracked(),
        flooded.saturating_sub(after) / 1_000_000
    );
}
