//! What the rankings' windows cost the Redis rankings' refresh after a big flush: the
//! apply of a minute that a flush of N articles wrote, freeing its batch, and the rolls
//! that subtract it from the windows 15 and 60 minutes later. All three hold the
//! rankings' lock and run on the blocking pool (the roll ran on a runtime thread until
//! 2026-12-02): see BENCHMARKS.md, "A read during a 1M-key flush: the stall at the end".
//! Usage: `cargo run --release --example roll_cost -- [articles, default 500000] [seconds to roll through, default 3900]`.

use std::time::Instant;

use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta};
use viewcounter::store::windows::{BucketSource, Windows};
use viewcounter::store::{ArticleDelta, Batch, BatchId, StoreError};
use viewcounter::top::Granularity;

/// The rows of the one minute (and its hour) that the flush wrote; other buckets are empty.
struct FlushedMinute {
    at_ms: u64,
    rows: Vec<ArticleDelta>,
    /// Rows handed out to the rolls.
    given: std::cell::Cell<usize>,
}

impl BucketSource for FlushedMinute {
    fn bucket_rows(&self, g: Granularity, bucket: u64) -> Result<Vec<ArticleDelta>, StoreError> {
        if g.bucket(self.at_ms) != bucket {
            return Ok(Vec::new());
        }
        self.given.set(self.given.get() + self.rows.len());
        Ok(self.rows.clone())
    }
}

fn main() -> Result<(), StoreError> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let n = args.next().flatten().unwrap_or(500_000);
    let later_s = args.next().flatten().unwrap_or(3_900);
    let rows: Vec<ArticleDelta> = (0..n)
        .map(|i| ArticleDelta {
            article: ArticleId::parse(&format!("article-{i:07}")).expect("valid id"),
            counts: Counts::of_views(1),
            meta: Meta::default(),
            visitors: Vec::new(),
        })
        .collect();
    let at_ms = 1_000_000 * 60_000;
    let none: Vec<Result<(ArticleId, Counts), StoreError>> = Vec::new();
    let no_meta: Vec<Result<(ArticleId, Meta), StoreError>> = Vec::new();
    let source = FlushedMinute {
        at_ms,
        rows,
        given: Default::default(),
    };
    let mut w = Windows::load(
        &FlushedMinute {
            at_ms,
            rows: Vec::new(),
            given: Default::default(),
        },
        at_ms,
        none,
        no_meta,
    )?;
    let batch = Batch {
        id: BatchId {
            instance: "roll_cost".into(),
            epoch_ms: 0,
            seq: 1,
            chunk: 0,
        },
        flushed_at_ms: at_ms,
        articles: source.rows.clone(),
    };
    let t = Instant::now();
    w.apply(&batch);
    println!("apply of a minute of {n} articles: {:?}", t.elapsed());
    let t = Instant::now();
    drop(batch);
    println!("freeing that batch: {:?}", t.elapsed());
    // The refresh rolls the windows every few seconds: step a minute at a time, as it
    // would, with a view a minute, and report the slowest roll.
    let (mut slowest, mut at_step) = (std::time::Duration::ZERO, 0);
    for step in 1..=later_s / 60 {
        let now = at_ms + step * 60_000 + 1_000;
        // Views keep coming after the big minute (else a window that holds nothing newer
        // is cleared at once rather than subtracted from).
        w.apply(&Batch {
            id: BatchId {
                instance: "roll_cost".into(),
                epoch_ms: 0,
                seq: 1 + step,
                chunk: 0,
            },
            flushed_at_ms: now,
            articles: source.rows[..1].to_vec(),
        });
        let t = Instant::now();
        w.roll(&source, now)?;
        if t.elapsed() > slowest {
            (slowest, at_step) = (t.elapsed(), step);
        }
    }
    println!(
        "slowest roll in {later_s} s of minute steps: {slowest:?}, {at_step} min after the flush ({} rows subtracted in all, copies from the source included)",
        source.given.get()
    );
    Ok(())
}
