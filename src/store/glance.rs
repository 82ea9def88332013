//! What the operations endpoints read of the rankings (how many articles they track,
//! whether they are loaded) without waiting for them: the rankings' lock is held for up
//! to a second while a big flush is applied to them, and a runtime thread blocked on it
//! stalls every request queued behind it on that thread (a `/metrics` scrape during a
//! 1M-key flush held article reads 0.8 s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

/// The last value read under a lock, for readers that must not wait for it.
#[derive(Debug, Default)]
pub struct Glance(AtomicUsize);

impl Glance {
    /// `read` of what `lock` guards, or, while another holds it, the value last read
    /// (0 before any).
    pub fn read<T>(&self, lock: &Mutex<T>, read: impl FnOnce(&T) -> usize) -> usize {
        let value = match lock.try_lock() {
            Ok(guard) => read(&guard),
            Err(TryLockError::Poisoned(p)) => read(&p.into_inner()),
            Err(TryLockError::WouldBlock) => return self.0.load(Ordering::Relaxed),
        };
        self.0.store(value, Ordering::Relaxed);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_gives_the_value_last_read_without_waiting() {
        let lock = Mutex::new(3);
        let glance = Glance::default();
        assert_eq!(glance.read(&lock, |n| *n), 3);
        let mut held = lock.lock().unwrap();
        *held = 5;
        // Would deadlock (the same thread holds it) if the read waited.
        assert_eq!(glance.read(&lock, |n| *n), 3);
        drop(held);
        assert_eq!(glance.read(&lock, |n| *n), 5);
    }

    #[test]
    fn nothing_read_yet_is_zero() {
        let lock = Mutex::new(7);
        let glance = Glance::default();
        let _held = lock.lock().unwrap();
        assert_eq!(glance.read(&lock, |n| *n), 0);
    }
}
