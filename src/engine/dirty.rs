//! Dirty keys waiting to be re-read, copy chunks in flight, and keys held for a re-check.
//!
//! The rule this module enforces (DESIGN 2.C): a copy chunk reads an older snapshot.
//! If it commits after a re-read of key k that found k deleted, it would bring k
//! back. So every key re-read while a chunk was in flight is re-read once more
//! after that chunk (and every chunk started before it) has committed.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use crate::engine::Key;

/// Keys whose shadow rows must be re-read from the source; duplicates coalesce.
#[derive(Debug, Default)]
pub struct DirtyKeys {
    set: HashSet<Key>,
}

impl DirtyKeys {
    pub fn extend(&mut self, keys: impl IntoIterator<Item = Key>) {
        self.set.extend(keys);
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Removes and returns up to `n` keys.
    pub fn take(&mut self, n: usize) -> Vec<Key> {
        if self.set.len() <= n {
            return self.set.drain().collect();
        }
        let keys: Vec<Key> = self.set.iter().take(n).cloned().collect();
        for k in &keys {
            self.set.remove(k);
        }
        keys
    }

    /// A copy of every key (the cutover applies them but keeps them until the swap commits).
    pub fn snapshot(&self) -> Vec<Key> {
        self.set.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.set.clear();
    }
}

/// Copy chunks that have started and not yet committed.
#[derive(Debug, Default)]
pub struct ChunkTracker {
    inner: Mutex<Tracker>,
}

#[derive(Debug, Default)]
struct Tracker {
    next: u64,
    running: BTreeSet<u64>,
}

impl ChunkTracker {
    /// Registers a chunk; call before the chunk takes its snapshot.
    pub fn begin(&self) -> u64 {
        let mut t = self.lock();
        t.next += 1;
        let id = t.next;
        t.running.insert(id);
        id
    }

    /// The chunk committed (or failed).
    pub fn end(&self, id: u64) {
        self.lock().running.remove(&id);
    }

    /// The newest chunk in flight; call before a re-read starts.
    pub fn newest_running(&self) -> Option<u64> {
        self.lock().running.iter().next_back().copied()
    }

    /// True when no chunk with an id up to `id` is still running.
    pub fn all_done_upto(&self, id: u64) -> bool {
        self.lock()
            .running
            .iter()
            .next()
            .is_none_or(|&first| first > id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keys re-read while chunks were in flight, waiting for those chunks to commit.
#[derive(Debug, Default)]
pub struct Rechecks {
    waiting: Vec<(u64, Vec<Key>)>,
}

impl Rechecks {
    /// Holds `keys` until every chunk up to `chunk` has committed.
    pub fn hold(&mut self, chunk: u64, keys: Vec<Key>) {
        self.waiting.push((chunk, keys));
    }

    /// Keys whose chunks have all committed: they must be re-read again.
    pub fn release(&mut self, tracker: &ChunkTracker) -> Vec<Key> {
        let mut out = Vec::new();
        self.waiting.retain_mut(|(chunk, keys)| {
            if tracker.all_done_upto(*chunk) {
                out.append(keys);
                false
            } else {
                true
            }
        });
        out
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.iter().map(|(_, k)| k.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        vec![s.to_string()]
    }

    #[test]
    fn dirty_keys_coalesce_and_take() {
        let mut d = DirtyKeys::default();
        d.extend([k("1"), k("2"), k("1"), k("3")]);
        assert_eq!(d.len(), 3);
        let first = d.take(2);
        assert_eq!(first.len(), 2);
        let rest = d.take(10);
        assert_eq!(rest.len(), 1);
        assert!(d.is_empty());
        let mut all: Vec<_> = first.into_iter().chain(rest).collect();
        all.sort();
        assert_eq!(all, vec![k("1"), k("2"), k("3")]);
    }

    #[test]
    fn rechecks_wait_for_every_chunk_in_flight_at_the_re_read() {
        let t = ChunkTracker::default();
        let mut r = Rechecks::default();
        let c1 = t.begin();
        let c2 = t.begin();
        // A re-read starts while c1 and c2 run.
        let newest = t.newest_running().unwrap();
        assert_eq!(newest, c2);
        r.hold(newest, vec![k("7")]);
        // A chunk started after the re-read does not hold the key back.
        let c3 = t.begin();
        t.end(c2);
        assert!(r.release(&t).is_empty(), "c1 still runs");
        t.end(c1);
        assert_eq!(r.release(&t), vec![k("7")]);
        assert!(r.is_empty());
        t.end(c3);
        assert_eq!(t.newest_running(), None);
    }
}
