//! Verification: proves that a target table holds what it should, range by range.
//!
//! The key space is cut into spans; each span's row count and an
//! order-independent hash of its rows (the source side with the column mapping
//! applied, so the comparison is of what the target *should* hold) are computed
//! by parallel workers that share one snapshot. A span that differs is narrowed
//! to the exact keys. This module decides nothing about databases: an engine
//! implements [`Checksums`]; the migration's verify phase (engine) and
//! `wraith verify` both drive [`compare`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Stats;
use crate::key::Key;

/// Rows per compared range: small enough to narrow quickly, large enough that
/// per-range overhead does not matter.
pub const SPAN_ROWS: u64 = 50_000;

/// Keys after `after` (exclusive) up to `upto` (inclusive); `None` is unbounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub after: Option<Key>,
    pub upto: Option<Key>,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |k: &Option<Key>, open: &str| match k {
            Some(k) => format!("({})", k.join(", ")),
            None => open.to_string(),
        };
        write!(
            f,
            "({}, {}]",
            show(&self.after, "start"),
            show(&self.upto, "end")
        )
    }
}

/// How thoroughly to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Off,
    /// Row counts per span.
    Count,
    /// Row counts and a hash of every row.
    Checksum,
}

/// Count and hash of one side of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Sums {
    pub rows: i64,
    /// An order-independent hash of the rows (empty in count mode).
    pub hash: String,
}

/// What an engine provides to verify a source against a target.
pub trait Checksums: Send + Sync + 'static {
    /// Cuts the source's key space into spans of about `rows` rows, covering everything.
    fn spans(&self, rows: u64) -> impl Future<Output = anyhow::Result<Vec<Span>>> + Send;
    /// Opens the sessions `open_snapshot` needs; called before any lock is taken, so
    /// connecting never happens while writes are blocked.
    fn connect(&self, workers: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Starts one snapshot of both tables, shared by the `workers` sessions.
    fn open_snapshot(&self, workers: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Ends those sessions' snapshot.
    fn close_snapshot(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// (source, target) sums of a span, on worker session `worker`.
    fn sums(
        &self,
        worker: usize,
        span: Span,
        mode: Mode,
    ) -> impl Future<Output = anyhow::Result<(Sums, Sums)>> + Send;
    /// Keys whose rows differ in a span (present on one side only, or with other values).
    fn differing_keys(
        &self,
        worker: usize,
        span: Span,
    ) -> impl Future<Output = anyhow::Result<Vec<Key>>> + Send;
}

/// An engine whose [`Checksums`] are those of a checker it builds with the shadow:
/// implementing this gives the engine [`Checksums`] by delegation.
pub trait ChecksumsBy: Send + Sync + 'static {
    type Checker: Checksums;
    /// The checker, or an error before the shadow exists.
    fn checker(&self) -> anyhow::Result<&Self::Checker>;
}

impl<T: ChecksumsBy> Checksums for T {
    async fn spans(&self, rows: u64) -> anyhow::Result<Vec<Span>> {
        self.checker()?.spans(rows).await
    }

    async fn connect(&self, workers: usize) -> anyhow::Result<()> {
        self.checker()?.connect(workers).await
    }

    async fn open_snapshot(&self, workers: usize) -> anyhow::Result<()> {
        self.checker()?.open_snapshot(workers).await
    }

    async fn close_snapshot(&self) -> anyhow::Result<()> {
        self.checker()?.close_snapshot().await
    }

    async fn sums(&self, worker: usize, span: Span, mode: Mode) -> anyhow::Result<(Sums, Sums)> {
        self.checker()?.sums(worker, span, mode).await
    }

    async fn differing_keys(&self, worker: usize, span: Span) -> anyhow::Result<Vec<Key>> {
        self.checker()?.differing_keys(worker, span).await
    }
}

/// A span that differs, with its keys.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub span: Span,
    pub source_rows: i64,
    pub target_rows: i64,
    pub keys: Vec<Key>,
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub spans: usize,
    pub source_rows: u64,
    pub target_rows: u64,
    pub mismatches: Vec<Mismatch>,
    pub elapsed: Duration,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
    }

    pub fn keys(&self) -> Vec<Key> {
        self.mismatches
            .iter()
            .flat_map(|m| m.keys.iter().cloned())
            .collect()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ranges": self.spans,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "mismatched_ranges": self.mismatches.len(),
            "mismatched_keys": self.keys(),
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ranges checked, {} source rows, {} target rows, {} mismatching ranges, {} ms",
            self.spans,
            self.source_rows,
            self.target_rows,
            self.mismatches.len(),
            self.elapsed.as_millis()
        )?;
        for m in &self.mismatches {
            let keys: Vec<String> = m
                .keys
                .iter()
                .take(20)
                .map(|k| format!("({})", k.join(", ")))
                .collect();
            writeln!(
                f,
                "  range {}: {} vs {} rows; keys {}{}",
                m.span,
                m.source_rows,
                m.target_rows,
                keys.join(" "),
                if m.keys.len() > 20 {
                    format!(" and {} more", m.keys.len() - 20)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

/// What `wraith verify` compares: two tables of one schema with the same key.
#[derive(Debug, Clone)]
pub struct VerifyTarget {
    pub schema: String,
    pub source: String,
    pub target: String,
    pub transforms: Vec<crate::plan::Transform>,
}

/// `wraith verify`: compares under one snapshot; differing ranges are checked once
/// more a moment later, so keys a running migration has not applied yet drop out.
/// `skipped`: target columns that are not compared (no source column or transform).
pub async fn tables<C: Checksums>(
    checker: &Arc<C>,
    skipped: &[String],
    mode: Mode,
    workers: usize,
) -> anyhow::Result<Report> {
    if !skipped.is_empty() {
        tracing::warn!(
            "not compared (no source column or --transform): {}",
            skipped.join(", ")
        );
    }
    let mut spans = checker.spans(SPAN_ROWS).await?;
    let mut report: Option<Report> = None;
    let mut elapsed = Duration::ZERO;
    for pass in 0..2 {
        if pass == 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        checker.connect(workers).await?;
        checker.open_snapshot(workers).await?;
        let r = compare(checker, spans.clone(), workers, mode, None).await;
        checker.close_snapshot().await?;
        let r = r?;
        elapsed += r.elapsed;
        let clean = r.is_clean();
        spans = r.mismatches.iter().map(|m| m.span.clone()).collect();
        match &mut report {
            None => report = Some(r),
            // Totals from the full pass; differences from the re-check.
            Some(first) => first.mismatches = r.mismatches,
        }
        if clean {
            break;
        }
    }
    let mut report = report.unwrap_or_default();
    report.elapsed = elapsed;
    Ok(report)
}

/// Compares `spans` with `workers` parallel sessions (the snapshot must be open).
pub async fn compare<C: Checksums>(
    checker: &Arc<C>,
    spans: Vec<Span>,
    workers: usize,
    mode: Mode,
    stats: Option<Arc<Stats>>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let total = spans.len();
    if let Some(s) = &stats {
        s.verify_ranges.store(total as u64, Relaxed);
        s.verify_done.store(0, Relaxed);
    }
    let queue = Arc::new(Mutex::new(spans.into_iter().collect::<VecDeque<_>>()));
    let mut tasks = Vec::new();
    for worker in 0..workers.max(1) {
        let (checker, queue, stats) = (checker.clone(), queue.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Report::default();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(span) = next else { break };
                let (s, t) = checker.sums(worker, span.clone(), mode).await?;
                out.source_rows += s.rows.max(0) as u64;
                out.target_rows += t.rows.max(0) as u64;
                if s != t {
                    let keys = checker.differing_keys(worker, span.clone()).await?;
                    out.mismatches.push(Mismatch {
                        span,
                        source_rows: s.rows,
                        target_rows: t.rows,
                        keys,
                    });
                }
                if let Some(st) = &stats {
                    st.verify_done.fetch_add(1, Relaxed);
                }
            }
            Ok::<Report, anyhow::Error>(out)
        }));
    }
    let mut report = Report {
        spans: total,
        ..Report::default()
    };
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => {
                report.source_rows += r.source_rows;
                report.target_rows += r.target_rows;
                report.mismatches.extend(r.mismatches);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("a verification worker failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
