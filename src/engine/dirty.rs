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
///
/// Copy workers commit chunks out of order: `issued` holds every chunk handed
/// out past the committed prefix, in key order; the prefix moves `mark.upto`
/// as its chunks commit, and the committed ones beyond it are `mark.ahead`.
#[derive(Debug, Default)]
struct Progress {
    mark: CopyMark,
    issued: std::collections::VecDeque<Issued>,
    /// Ranges a resumed run found committed beyond `upto`, not yet reached.
    resumed: std::collections::VecDeque<KeyRange>,
    recheck: Vec<Key>,
}

#[derive(Debug)]
struct Issued {
    id: u64,
    range: KeyRange,
    committed: bool,
}

/// The copy's committed progress.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CopyMark {
    /// The copy's last key, fixed when it starts.
    pub end: Option<Key>,
    /// Last key of the committed prefix: every chunk up to it has committed.
    pub upto: Option<Key>,
    /// Chunks committed beyond `upto` (workers finish out of order), in key order.
    pub ahead: Vec<KeyRange>,
    pub done: bool,
}

impl Progress {
    /// Moves `upto` over the committed chunks at the front.
    fn advance(&mut self) {
        while self.issued.front().is_some_and(|c| c.committed) {
            if let Some(c) = self.issued.pop_front() {
                self.mark.upto = Some(c.range.upto);
            }
        }
    }

    fn mark(&self) -> CopyMark {
        let mut ahead: Vec<KeyRange> = self
            .issued
            .iter()
            .filter(|c| c.committed)
            .map(|c| c.range.clone())
            .collect();
        ahead.extend(self.resumed.iter().cloned());
        CopyMark {
            ahead,
            ..self.mark.clone()
        }
    }
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
        self.progress().mark()
    }

    /// Where the copy starts: a resumed run's `ahead` ranges are skipped when reached.
    pub fn set_copy_mark(&self, mark: CopyMark) {
        let mut p = self.progress();
        p.resumed = mark.ahead.iter().cloned().collect();
        p.issued.clear();
        p.mark = CopyMark {
            ahead: Vec::new(),
            ..mark
        };
    }

    /// The copy's last key is fixed (it starts now).
    pub fn set_copy_end(&self, end: Key) {
        self.progress().mark.end = Some(end);
    }

    /// The next range a resumed run found committed, if any: the chunker stops
    /// before it and skips it.
    pub fn next_resumed(&self) -> Option<KeyRange> {
        self.progress().resumed.front().cloned()
    }

    /// The chunker reached the next resumed range: it counts as committed here.
    pub fn skip_resumed(&self) {
        let mut p = self.progress();
        if let Some(range) = p.resumed.pop_front() {
            p.issued.push_back(Issued {
                id: 0,
                range,
                committed: true,
            });
            p.advance();
        }
    }

    /// Chunk `id` (from [`ChunkTracker::begin`]) covers `range`; call in key order.
    pub fn issue(&self, id: u64, range: KeyRange) {
        self.progress().issued.push_back(Issued {
            id,
            range,
            committed: false,
        });
    }

    /// Chunk `id` committed: `recheck` must be re-read.
    pub fn chunk_committed(&self, id: u64, recheck: Vec<Key>) {
        let mut p = self.progress();
        if let Some(chunk) = p.issued.iter_mut().find(|c| c.id == id && !c.committed) {
            chunk.committed = true;
        }
        p.recheck.extend(recheck);
        p.advance();
    }

    /// There was nothing to copy (an empty table, or a resumed run's copy was done).
    pub fn copy_finished_empty(&self) {
        let mut p = self.progress();
        p.resumed.clear();
        p.mark.done = true;
    }

    /// Nothing is left to copy: the committed prefix reached the end.
    pub fn copy_finished(&self) {
        let mut p = self.progress();
        p.mark.done = p.issued.is_empty() && p.resumed.is_empty();
    }

    /// The keys committed chunks left to the apply, removed from here.
    pub fn take_recheck(&self) -> Vec<Key> {
        std::mem::take(&mut self.progress().recheck)
    }

    /// How far the copy has committed, with the keys it left to the apply.
    pub fn checkpoint(&self) -> (CopyMark, Vec<Key>) {
        let p = self.progress();
        (p.mark(), p.recheck.clone())
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
    fn chunks_committed_out_of_order_move_the_mark_over_the_committed_prefix() {
        let t = ChunkTracker::default();
        t.set_copy_mark(CopyMark {
            end: Some(k("9")),
            ..CopyMark::default()
        });
        let ids: Vec<u64> = [range("0", "3"), range("3", "6"), range("6", "9")]
            .into_iter()
            .map(|r| {
                let id = t.begin(r.clone());
                t.issue(id, r);
                id
            })
            .collect();
        t.chunk_committed(ids[2], vec![]);
        t.chunk_committed(ids[1], vec![k("4")]);
        let (mark, recheck) = t.checkpoint();
        assert_eq!(mark.upto, None, "the first chunk still runs");
        assert_eq!(mark.ahead, vec![range("3", "6"), range("6", "9")]);
        assert_eq!(recheck, vec![k("4")]);
        t.chunk_committed(ids[0], vec![]);
        t.copy_finished();
        let mark = t.copy_mark();
        assert_eq!(
            (mark.upto, mark.ahead, mark.done),
            (Some(k("9")), vec![], true)
        );
    }

    #[test]
    fn a_resumed_mark_keeps_its_ranges_ahead_until_the_chunker_reaches_them() {
        let t = ChunkTracker::default();
        t.set_copy_mark(CopyMark {
            end: Some(k("9")),
            upto: Some(k("3")),
            ahead: vec![range("6", "9")],
            done: false,
        });
        assert_eq!(t.next_resumed(), Some(range("6", "9")));
        let id = t.begin(range("3", "6"));
        t.issue(id, range("3", "6"));
        assert_eq!(
            t.copy_mark().ahead,
            vec![range("6", "9")],
            "saved again as is"
        );
        t.skip_resumed();
        assert_eq!(t.copy_mark().upto, Some(k("3")));
        t.chunk_committed(id, vec![]);
        t.copy_finished();
        let mark = t.copy_mark();
        assert_eq!((mark.upto, mark.done), (Some(k("9")), true));
        assert_eq!(t.next_resumed(), None);
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
