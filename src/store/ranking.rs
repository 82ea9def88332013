//! The embedded store's windows, loaded in the background so a restart serves at
//! once: while the load reads its snapshot, every change committed after that
//! snapshot is queued and replayed on the loaded windows, so each counts once.
//! Ingest and per-article reads never wait for it; `/v1/top` waits a little, then
//! answers 503, and `/readyz` says 503 until it is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::store::glance::Glance;
use std::time::Duration;

use super::windows::Windows;
use super::Batch;
use crate::counts::Counts;
use crate::event::{ArticleId, Meta};

/// A change to the windows, as the store commits it.
#[derive(Debug)]
pub enum Change {
    /// A batch applied.
    Batch(Batch),
    /// An admin set of an article's totals.
    SetTotal(ArticleId, Counts),
    /// An admin delete.
    Forget(ArticleId),
    /// An admin replacement of metadata: the article's stored metadata after it.
    SetMeta(ArticleId, Meta),
}

#[derive(Debug)]
enum State {
    /// Changes committed since the load's snapshot, oldest first.
    Loading(Vec<Change>),
    Ready(Box<Windows>),
}

/// The windows, or the changes waiting for them while they load.
#[derive(Debug)]
pub struct Ranking {
    // std Mutex: held for in-memory work only, never across an await.
    state: Mutex<State>,
    loaded: Condvar,
    /// Writers hold it across a commit and the recording of its change, the loader
    /// across opening its snapshot: a change is either in the snapshot or queued.
    gate: Mutex<()>,
    cap: AtomicUsize,
    /// What `/metrics` and `/readyz` read, without waiting for an update.
    tracked: Glance,
    ready: Glance,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            state: Mutex::new(State::Loading(Vec::new())),
            loaded: Condvar::new(),
            gate: Mutex::new(()),
            cap: AtomicUsize::new(usize::MAX),
            tracked: Glance::default(),
            ready: Glance::default(),
        }
    }
}

fn apply(w: &mut Windows, change: &Change) {
    match change {
        Change::Batch(b) => w.apply(b),
        Change::SetTotal(id, total) => w.set_total(id, total.clone()),
        Change::Forget(id) => w.forget(id),
        Change::SetMeta(id, meta) => w.set_meta(id, meta.clone()),
    }
}

impl Ranking {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held by a writer across its commit and [`Ranking::record`].
    pub fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the loader with the gate held, as it opens its snapshot: changes
    /// queued for an earlier, failed attempt are in the new snapshot.
    pub fn snapshot_opened(&self) {
        if let State::Loading(queued) = &mut *self.state() {
            queued.clear();
        }
    }

    /// Records a committed change (call with the gate held).
    pub fn record(&self, change: Change) {
        match &mut *self.state() {
            State::Loading(queued) => queued.push(change),
            State::Ready(w) => apply(w, &change),
        }
    }

    /// Installs the loaded windows, replaying what was committed meanwhile.
    pub fn finish(&self, mut windows: Windows) {
        windows.set_cap(self.cap.load(Ordering::Relaxed));
        let mut state = self.state();
        if let State::Loading(queued) = &*state {
            queued.iter().for_each(|c| apply(&mut windows, c));
        }
        *state = State::Ready(Box::new(windows));
        drop(state);
        self.loaded.notify_all();
    }

    /// Runs `f` on the windows if they are loaded within `wait` (blocking).
    pub fn when_ready<T>(&self, wait: Duration, f: impl FnOnce(&mut Windows) -> T) -> Option<T> {
        let state = self.state();
        let (mut state, _) = self
            .loaded
            .wait_timeout_while(state, wait, |s| matches!(s, State::Loading(_)))
            .unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            State::Ready(w) => Some(f(w)),
            State::Loading(_) => None,
        }
    }

    /// True once the windows are loaded (as last seen while an update holds them).
    pub fn is_ready(&self) -> bool {
        self.ready
            .read(&self.state, |s| usize::from(matches!(s, State::Ready(_))))
            == 1
    }

    /// Articles tracked (0 while loading; as last seen while an update holds them).
    pub fn tracked(&self) -> usize {
        self.tracked.read(&self.state, |s| match s {
            State::Ready(w) => w.tracked(),
            State::Loading(_) => 0,
        })
    }

    /// Sets `--max-articles`.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
        if let State::Ready(w) = &mut *self.state() {
            w.set_cap(cap);
        }
    }
}
