//! The copy: the table chunk by chunk in key order, beside the apply loop, by
//! `--threads` workers (changed live by `ctl threads=N`).
//!
//! One chunker hands out the ranges in key order; each worker copies its chunk on
//! a session of its own. Each chunk is registered with the [`ChunkTracker`] under
//! the [`Gate`] before it reads the source, so the apply never writes a key of a
//! chunk in flight, however many there are (DESIGN 2.C); the chunk size adapts to
//! the target chunk time, inside the throttle's pace and the rows/s cap, which
//! all workers share. Chunks commit out of order: the tracker keeps the committed
//! prefix and the chunks beyond it, which is what a checkpoint records.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::engine::control::Control;
use crate::engine::dirty::{ChunkTracker, Gate};
use crate::engine::faults::{Faults, Point};
use crate::engine::pacing::{ChunkSizer, rate_wait};
use crate::engine::throttle::{pace_wait, wait_while_paused};
use crate::engine::{Backend, Stats};
use crate::key::{Key, KeyRange};
use crate::plan::RunOptions;

/// How often a change of `--threads` is looked for.
const THREADS_POLL: Duration = Duration::from_millis(100);

/// What the workers share.
struct Shared<B> {
    backend: Arc<B>,
    tracker: Arc<ChunkTracker>,
    gate: Arc<Gate>,
    stats: Arc<Stats>,
    opts: RunOptions,
    control: Arc<Control>,
    faults: Faults,
    chunker: Mutex<Chunker>,
    started: Instant,
}

/// Where the next chunk starts.
struct Chunker {
    after: Option<Key>,
    end: Key,
    sizer: ChunkSizer,
    /// Every range is handed out.
    exhausted: bool,
}

/// A chunk handed to a worker: registered in flight.
struct Chunk {
    id: u64,
    range: KeyRange,
}

/// Copies the table chunk by chunk with `control.threads()` workers, pacing
/// itself; runs beside the apply loop.
pub(crate) async fn copy_all<B: Backend>(
    backend: Arc<B>,
    tracker: Arc<ChunkTracker>,
    gate: Arc<Gate>,
    stats: Arc<Stats>,
    opts: RunOptions,
    control: Arc<Control>,
    faults: Faults,
) -> anyhow::Result<()> {
    stats.copy_started();
    // A resumed copy continues after the chunks the interrupted run committed.
    let mark = tracker.copy_mark();
    let end = match (mark.done, &mark.end) {
        (true, _) => None,
        (false, Some(end)) => Some(end.clone()),
        (false, None) => backend.copy_end().await.context("finding the last key")?,
    };
    // Nothing to copy: an empty table, or the interrupted run copied it all.
    let Some(end) = end.filter(|e| mark.upto.as_ref() != Some(e)) else {
        tracker.copy_finished_empty();
        stats.copy_finished();
        return Ok(());
    };
    tracker.set_copy_end(end.clone());
    let shared = Arc::new(Shared {
        chunker: Mutex::new(Chunker {
            after: mark.upto,
            end,
            sizer: ChunkSizer::new(opts.initial_chunk_rows, opts.chunk_time),
            exhausted: false,
        }),
        backend,
        tracker,
        gate,
        stats,
        opts,
        control,
        faults,
        started: Instant::now(),
    });
    let mut workers = JoinSet::new();
    // Which worker indices run now.
    let mut running: Vec<bool> = Vec::new();
    loop {
        let exhausted = shared.chunker.lock().await.exhausted;
        if !exhausted && !shared.control.aborted() {
            let want = shared.control.threads();
            if running.len() < want {
                running.resize(want, false);
            }
            for (w, on) in running.iter_mut().enumerate().take(want) {
                if !*on {
                    shared
                        .backend
                        .copy_sessions(w + 1)
                        .await
                        .context("opening a copy session")?;
                    *on = true;
                    let shared = shared.clone();
                    workers.spawn(async move { (w, worker(&shared, w).await) });
                }
            }
        }
        shared
            .stats
            .copy_workers
            .store(running.iter().filter(|on| **on).count() as u64, Relaxed);
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(Ok((w, result))) => {
                    running[w] = false;
                    result?;
                }
                Some(Err(e)) => anyhow::bail!("a copy worker failed: {e}"),
            },
            _ = tokio::time::sleep(THREADS_POLL) => {}
        }
        if workers.is_empty() && (shared.chunker.lock().await.exhausted || shared.control.aborted())
        {
            break;
        }
    }
    shared.stats.copy_workers.store(0, Relaxed);
    if shared.control.aborted() {
        // The run reports why (user or guard) at its next check.
        return Ok(());
    }
    shared.tracker.copy_finished();
    shared.stats.copy_finished();
    Ok(())
}

/// Worker `w`: copies chunks until none is left, the run stops, or the thread
/// count drops below `w + 1`.
async fn worker<B: Backend>(s: &Shared<B>, w: usize) -> anyhow::Result<()> {
    loop {
        let paused = wait_while_paused(&s.control).await;
        s.stats
            .throttled_ms
            .fetch_add(paused.as_millis() as u64, Relaxed);
        if s.control.aborted() || w >= s.control.threads() {
            return Ok(());
        }
        let copied = s.stats.rows_copied.load(Relaxed);
        tokio::time::sleep(rate_wait(
            copied,
            s.started.elapsed(),
            s.opts.max_rows_per_sec,
        ))
        .await;
        let t0 = Instant::now();
        let Some(chunk) = next_chunk(s).await? else {
            return Ok(());
        };
        s.faults.hit(Point::MidChunk).await;
        let copied = s.backend.copy_range(w, chunk.range.clone()).await;
        s.tracker.end(chunk.id);
        let copied = copied.with_context(|| match &chunk.range.after {
            Some(k) => format!("copying the chunk after key ({})", k.join(", ")),
            None => "copying the first chunk".to_string(),
        })?;
        tracing::debug!(
            worker = w,
            after = ?chunk.range.after,
            upto = ?chunk.range.upto,
            rows = copied.rows,
            recheck = copied.recheck.len(),
            "chunk copied"
        );
        let took = t0.elapsed();
        s.chunker.lock().await.sizer.observe(copied.rows, took);
        s.stats.rows_copied.fetch_add(copied.rows, Relaxed);
        s.stats.chunks.fetch_add(1, Relaxed);
        // The chunk has committed: the keys it leaves to the apply are not in flight.
        s.tracker.chunk_committed(chunk.id, copied.recheck);
        // Near a limit the copy slows in proportion instead of stopping.
        tokio::time::sleep(pace_wait(took, s.control.pace())).await;
    }
}

/// The next range in key order, registered in flight (`None`: all handed out).
/// A resumed run's committed ranges are skipped as the chunker reaches them.
async fn next_chunk<B: Backend>(s: &Shared<B>) -> anyhow::Result<Option<Chunk>> {
    let mut c = s.chunker.lock().await;
    loop {
        if c.exhausted {
            return Ok(None);
        }
        match s.tracker.next_resumed() {
            Some(r) if r.after == c.after => {
                c.after = Some(r.upto.clone());
                s.tracker.skip_resumed();
                c.exhausted = r.upto == c.end;
            }
            _ => break,
        }
    }
    // A chunk stops where a resumed committed range starts, or at the end.
    let bound = s
        .tracker
        .next_resumed()
        .and_then(|r| r.after)
        .unwrap_or_else(|| c.end.clone());
    c.sizer.set_target(s.control.chunk_time());
    let mut rows = c.sizer.rows();
    if let Some(rate) = s.opts.max_rows_per_sec {
        // A chunk never takes more than one target chunk time's worth of the rate.
        rows = rows.min(((rate as f64 * s.control.chunk_time().as_secs_f64()) as u64).max(1));
    }
    s.stats.chunk_rows.store(rows, Relaxed);
    let range = s
        .backend
        .next_chunk(c.after.clone(), bound.clone(), rows)
        .await
        .context("finding the next chunk")?;
    let id = {
        let _gate = s.gate.lock().await;
        let id = s.tracker.begin(range.clone());
        s.tracker.issue(id, range.clone());
        id
    };
    let in_flight = s.tracker.in_flight().1.len() as u64;
    s.stats.chunks_in_flight_peak.fetch_max(in_flight, Relaxed);
    c.after = Some(range.upto.clone());
    c.exhausted = range.upto == c.end;
    Ok(Some(Chunk { id, range }))
}
