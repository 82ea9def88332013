//! Times each part of a drain of N distinct keys (profiling aid for BENCHMARKS.md).
//! Run: `cargo run --release --example drain_profile -- 1000000`

use std::time::Instant;

use viewcounter::counter::CounterMap;
use viewcounter::event::{Event, Networks};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let ids: Vec<String> = (0..n).map(|i| format!("article-{i:07}")).collect();
    let map = CounterMap::new(n + 1, Networks::default());
    for round in 0..3 {
        let t = Instant::now();
        for id in &ids {
            map.record(&Event::view(id).with_section("news").with_lang("en"));
        }
        let recorded = t.elapsed();
        let t = Instant::now();
        let out = map.drain();
        let drained = t.elapsed();
        let t = Instant::now();
        drop(out);
        println!(
            "round {round}: record {recorded:?}, drain {drained:?}, drop {:?}",
            t.elapsed()
        );
    }
}
