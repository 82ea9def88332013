//! The counter map and the flush against models: a property test (random streams
//! give exactly the counts of a plain HashMap, across flushes into the embedded
//! store) and a concurrency test (threads recording while the flusher drains).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use viewcounter::counter::CounterMap;
use viewcounter::event::{ArticleId, Counter, Event, Networks};
use viewcounter::store::{Batch, BatchId, EmbeddedStore, StoredCounts};

const ARTICLES: [&str; 5] = ["a", "b", "c.1", "d_2", "e-3"];

#[derive(Debug, Clone)]
enum Step {
    Record { article: usize, counter: Option<u8> },
    Flush,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..ARTICLES.len(), proptest::option::of(0u8..12)).prop_map(|(article, counter)| Step::Record { article, counter }),
        1 => Just(Step::Flush),
    ]
}

fn event(article: usize, counter: Option<u8>) -> Event<'static> {
    Event::new(ARTICLES[article], counter.map_or(Counter::View, Counter::Share))
        .unwrap()
        .with_section("news")
}

fn batch(seq: u64, map: &CounterMap) -> Batch {
    Batch {
        id: BatchId {
            instance: "test".into(),
            epoch_ms: 1,
            seq,
            chunk: 0,
        },
        flushed_at_ms: 1,
        articles: map.drain(),
    }
}

fn model_counts(model: &HashMap<(usize, Option<u8>), u64>, networks: &Networks, article: usize) -> StoredCounts {
    let mut c = StoredCounts::default();
    for ((a, counter), n) in model {
        if *a != article {
            continue;
        }
        match counter {
            None => c.views += n,
            Some(i) => *c.shares.entry(networks.name(*i).to_string()).or_default() += n,
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_streams_give_the_counts_of_a_hashmap_across_flushes(steps in proptest::collection::vec(step(), 1..300)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let networks = Networks::default();
        let map = CounterMap::new(1_000, networks.clone());
        let mut model: HashMap<(usize, Option<u8>), u64> = HashMap::new();
        let mut seq = 0;
        for s in steps.iter().chain(std::iter::once(&Step::Flush)) {
            match s {
                Step::Record { article, counter } => {
                    map.record_all(&[event(*article, *counter)]).unwrap();
                    *model.entry((*article, *counter)).or_default() += 1;
                }
                Step::Flush => {
                    seq += 1;
                    rt.block_on(store.apply(&batch(seq, &map))).unwrap();
                }
            }
        }
        let ids: Vec<ArticleId> = ARTICLES.iter().map(|a| ArticleId::parse(a).unwrap()).collect();
        let stored = rt.block_on(store.counts(&ids)).unwrap();
        for (i, got) in stored.into_iter().enumerate() {
            prop_assert_eq!(got, model_counts(&model, &networks, i));
        }
        prop_assert!(map.drain().is_empty());
    }
}

#[test]
fn a_replayed_batch_is_applied_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let map = CounterMap::new(10, Networks::default());
    map.record_all(&[event(0, None), event(0, None)]).unwrap();
    let b = batch(1, &map);
    use viewcounter::store::Applied;
    assert_eq!(rt.block_on(store.apply(&b)).unwrap(), Applied::Applied);
    assert_eq!(rt.block_on(store.apply(&b)).unwrap(), Applied::Duplicate);
    let got = rt.block_on(store.counts(&[ArticleId::parse("a").unwrap()])).unwrap();
    assert_eq!(got[0].views, 2);
}

#[test]
fn idle_keys_leave_the_map_and_free_capacity() {
    let map = CounterMap::new(2, Networks::default());
    map.record_all(&[event(0, None), event(1, None)]).unwrap();
    assert!(map.record_all(&[event(2, None)]).is_err(), "full");
    assert_eq!(map.drain().len(), 2);
    assert_eq!(map.len(), 2, "keys just drained stay for one interval");
    assert!(map.drain().is_empty());
    assert_eq!(map.len(), 0, "keys idle for a whole interval are removed");
    map.record_all(&[event(2, None)]).unwrap();
}

#[test]
fn threads_recording_while_the_flusher_drains_lose_nothing() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 200_000;
    let map = Arc::new(CounterMap::new(1_000_000, Networks::default()));
    let done = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (map, done) = (map.clone(), done.clone());
        std::thread::spawn(move || {
            let mut total = 0u64;
            let mut drains = 0u64;
            while !done.load(Ordering::SeqCst) {
                total += map
                    .drain()
                    .iter()
                    .map(|d| d.views + d.shares.iter().map(|s| s.1).sum::<u64>())
                    .sum::<u64>();
                drains += 1;
            }
            (total, drains)
        })
    };
    // Many keys, each touched in bursts, so idle keys are removed while others race.
    let articles: Arc<Vec<String>> = Arc::new((0..2_000).map(|i| format!("art-{i}")).collect());
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (map, articles) = (map.clone(), articles.clone());
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let article = articles[((i / 64) as usize * 7 + t) % articles.len()].as_str();
                    let counter = if i % 7 == 0 {
                        Counter::Share((i % 12) as u8)
                    } else {
                        Counter::View
                    };
                    map.record(&Event::new(article, counter).unwrap());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (drained, drains) = drainer.join().unwrap();
    let rest: u64 = map
        .drain()
        .iter()
        .map(|d| d.views + d.shares.iter().map(|s| s.1).sum::<u64>())
        .sum();
    assert!(drains > 10, "the flusher drained repeatedly ({drains})");
    assert_eq!(drained + rest, THREADS as u64 * PER_THREAD);
}

#[test]
fn metadata_reaches_a_batch_when_it_changes_not_every_flush() {
    let map = CounterMap::new(10, Networks::default());
    let with_section = |s: &'static str| Event::view("m").with_section(s);
    map.record(&with_section("news"));
    assert_eq!(map.drain()[0].meta.section.as_deref(), Some("news"));
    map.record(&with_section("news"));
    let d = map.drain();
    assert_eq!(d[0].views, 1);
    assert!(d[0].meta.is_empty(), "unchanged metadata is not sent again");
    map.record(&with_section("sport"));
    assert!(
        map.drain()[0].meta.is_empty(),
        "an unsigned event cannot change a section already given"
    );
    map.record(&with_section("sport").signed());
    let d = map.drain();
    assert_eq!((d[0].meta.section.as_deref(), d[0].meta.signed), (Some("sport"), true));
}
