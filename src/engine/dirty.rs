//! Dirty keys waiting to be re-read, copy chunks in flight, and keys held back.
//!
//! The rule this module serves (DESIGN 2.C): a copy chunk reads an older snapshot,
//! so if it committed after a re-read of key k that found k deleted, it would
//! bring k back. The protocol that prevents it, and keeps copy and apply from
//! ever writing the same shadow rows at once (they would deadlock):
//! - a chunk registers its key range *before* it takes its snapshot, and only
//!   while no apply runs (the [`Gate`]);
//! - an apply holds the gate for its whole transaction, leaves out the keys
//!   inside registered ranges and holds them back;
//! - held keys are re-read once every chunk that covered them has committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use crate::key::{Key, KeyRange};

/// Serializes "a chunk registers its range" against "an apply runs".
pub type Gate = tokio::sync::Mutex<()>;

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

/// Copy chunks that have registered their range and not yet committed, and how
/// far the copy has committed (for checkpoints).
#[derive(Debug, Default)]
pub struct ChunkTracker {
    inner: Mutex<Tracker>,
    progress: Mutex<Progress>,
}

/// How far the copy has committed, and the keys of committed chunks that the copy
/// left to the apply ([`crate::engine::Copied::recheck`]): one lock, so a
/// checkpoint never records a chunk as done without the keys it still owes.
#[derive(Debug, Default)]
struct Progress {
    mark: CopyMark,
    recheck: Vec<Key>,
}

/// The copy's committed progress.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CopyMark {
    /// The copy's last key, fixed when it starts.
    pub end: Option<Key>,
    /// Last key of the last committed chunk.
    pub upto: Option<Key>,
    pub done: bool,
}

#[derive(Debug, Default)]
struct Tracker {
    next: u64,
    running: BTreeMap<u64, KeyRange>,
}

impl ChunkTracker {
    /// Registers a chunk; call with the gate held, before the chunk takes its snapshot.
    pub fn begin(&self, range: KeyRange) -> u64 {
        let mut t = self.lock();
        t.next += 1;
        let id = t.next;
        t.running.insert(id, range);
        id
    }

    /// The chunk committed (or failed).
    pub fn end(&self, id: u64) {
        self.lock().running.remove(&id);
    }

    /// The ranges in flight, and the newest chunk's id (`None`: nothing in flight).
    pub fn in_flight(&self) -> (Option<u64>, Vec<KeyRange>) {
        let t = self.lock();
        (
            t.running.keys().next_back().copied(),
            t.running.values().cloned().collect(),
        )
    }

    /// True when no chunk with an id up to `id` is still running.
    pub fn all_done_upto(&self, id: u64) -> bool {
        self.lock()
            .running
            .keys()
            .next()
            .is_none_or(|&first| first > id)
    }

    /// How far the copy has committed.
    pub fn copy_mark(&self) -> CopyMark {
        self.progress().mark.clone()
    }

    pub fn set_copy_mark(&self, mark: CopyMark) {
        self.progress().mark = mark;
    }

    /// A chunk committed: the copy got as far as `mark`, and `recheck` must be re-read.
    pub fn chunk_committed(&self, mark: CopyMark, recheck: Vec<Key>) {
        let mut p = self.progress();
        p.mark = mark;
        p.recheck.extend(recheck);
    }

    /// The keys committed chunks left to the apply, removed from here.
    pub fn take_recheck(&self) -> Vec<Key> {
        std::mem::take(&mut self.progress().recheck)
    }

    /// How far the copy has committed, with the keys it left to the apply.
    pub fn checkpoint(&self) -> (CopyMark, Vec<Key>) {
        let p = self.progress();
        (p.mark.clone(), p.recheck.clone())
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keys held back by an apply, waiting for the chunks that covered them to commit.
#[derive(Debug, Default)]
pub struct Held {
    waiting: Vec<(u64, Vec<Key>)>,
}

impl Held {
    /// Holds `keys` until every chunk up to `chunk` has committed.
    pub fn hold(&mut self, chunk: u64, keys: Vec<Key>) {
        if !keys.is_empty() {
            self.waiting.push((chunk, keys));
        }
    }

    /// Keys whose chunks have all committed: they must be re-read now.
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

    /// Every key held back.
    pub fn keys(&self) -> Vec<Key> {
        self.waiting.iter().flat_map(|(_, k)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        vec![s.to_string()]
    }

    fn range(a: &str, b: &str) -> KeyRange {
        KeyRange {
            after: Some(k(a)),
            upto: k(b),
        }
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
    fn held_keys_wait_for_every_chunk_in_flight_at_the_apply() {
        let t = ChunkTracker::default();
        let mut h = Held::default();
        let c1 = t.begin(range("0", "10"));
        let c2 = t.begin(range("10", "20"));
        let (newest, ranges) = t.in_flight();
        assert_eq!(newest, Some(c2));
        assert_eq!(ranges, vec![range("0", "10"), range("10", "20")]);
        h.hold(c2, vec![k("7")]);
        // A chunk registered after the apply does not hold the key back.
        let c3 = t.begin(range("20", "30"));
        t.end(c2);
        assert!(h.release(&t).is_empty(), "c1 still runs");
        t.end(c1);
        assert_eq!(h.release(&t), vec![k("7")]);
        assert!(h.is_empty());
        t.end(c3);
        assert_eq!(t.in_flight(), (None, vec![]));
    }
}
