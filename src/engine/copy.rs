//! The copy: the table chunk by chunk in key order, beside the apply loop.
//!
//! Each chunk is registered with the [`ChunkTracker`] under the [`Gate`] before
//! it reads the source, so the apply never writes a key of a chunk in flight
//! (DESIGN 2.C); the chunk size adapts to the target chunk time, inside the
//! throttle's pace and the rows/s cap.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::Context;

use crate::engine::control::Control;
use crate::engine::dirty::{ChunkTracker, CopyMark, Gate};
use crate::engine::faults::{Faults, Point};
use crate::engine::pacing::{ChunkSizer, rate_wait};
use crate::engine::throttle::{pace_wait, wait_while_paused};
use crate::engine::{Backend, Stats};
use crate::plan::RunOptions;

/// Copies the table chunk by chunk, pacing itself; runs beside the apply loop.
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
    // A resumed copy continues after the last chunk the interrupted run committed.
    let mark = tracker.copy_mark();
    let end = match (mark.done, &mark.end) {
        (true, _) => None,
        (false, Some(end)) => Some(end.clone()),
        (false, None) => backend.copy_end().await.context("finding the last key")?,
    };
    // Nothing to copy: an empty table, or the interrupted run copied it all.
    let Some(end) = end.filter(|e| mark.upto.as_ref() != Some(e)) else {
        tracker.set_copy_mark(CopyMark { done: true, ..mark });
        stats.copy_finished();
        return Ok(());
    };
    let mut after = mark.upto;
    tracker.set_copy_mark(CopyMark {
        end: Some(end.clone()),
        upto: after.clone(),
        done: false,
    });
    let mut sizer = ChunkSizer::new(opts.initial_chunk_rows, opts.chunk_time);
    let started = Instant::now();
    loop {
        let paused = wait_while_paused(&control).await;
        stats
            .throttled_ms
            .fetch_add(paused.as_millis() as u64, Relaxed);
        if control.aborted() {
            // The run reports why (user or guard) at its next check.
            return Ok(());
        }
        sizer.set_target(control.chunk_time());
        let copied = stats.rows_copied.load(Relaxed);
        tokio::time::sleep(rate_wait(copied, started.elapsed(), opts.max_rows_per_sec)).await;
        let mut rows = sizer.rows();
        if let Some(rate) = opts.max_rows_per_sec {
            // A chunk never takes more than one target chunk time's worth of the rate.
            rows = rows.min(((rate as f64 * control.chunk_time().as_secs_f64()) as u64).max(1));
        }
        stats.chunk_rows.store(rows, Relaxed);
        let t0 = Instant::now();
        let range = backend
            .next_chunk(after.clone(), end.clone(), rows)
            .await
            .context("finding the next chunk")?;
        let done = range.upto == end;
        let id = {
            let _gate = gate.lock().await;
            tracker.begin(range.clone())
        };
        faults.hit(Point::MidChunk).await;
        let copied = backend.copy_range(range.clone()).await;
        tracker.end(id);
        let copied = copied.with_context(|| match &range.after {
            Some(k) => format!("copying the chunk after key ({})", k.join(", ")),
            None => "copying the first chunk".to_string(),
        })?;
        tracing::debug!(
            after = ?range.after,
            upto = ?range.upto,
            rows = copied.rows,
            recheck = copied.recheck.len(),
            "chunk copied"
        );
        let took = t0.elapsed();
        sizer.observe(copied.rows, took);
        stats.rows_copied.fetch_add(copied.rows, Relaxed);
        stats.chunks.fetch_add(1, Relaxed);
        // The chunk has committed: the keys it leaves to the apply are not in flight.
        tracker.chunk_committed(
            CopyMark {
                end: Some(end.clone()),
                upto: Some(range.upto.clone()),
                done,
            },
            copied.recheck,
        );
        if done {
            break;
        }
        after = Some(range.upto);
        // Near a limit the copy slows in proportion instead of stopping.
        tokio::time::sleep(pace_wait(took, control.pace())).await;
    }
    stats.copy_finished();
    Ok(())
}
