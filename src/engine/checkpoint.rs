//! Checkpoints (DESIGN 2.G): how far a run got, saved every few seconds in a small
//! table next to the shadow, so `--resume` continues a run whose process, connection
//! or server died, without copying again what was copied.
//!
//! What a checkpoint promises:
//! - every change before `position` is applied to the shadow, except the keys in
//!   `pending` (held back for a copy chunk in flight, DESIGN 2.C), which a resumed
//!   run re-reads first; the stream is never confirmed past held keys that no saved
//!   checkpoint lists;
//! - every chunk up to `copied_upto` has committed, and so has every range in
//!   `copied_ahead` (copy workers commit out of order). A resumed copy starts after
//!   `copied_upto` and skips those ranges; copying a range twice would be harmless
//!   anyway, since a chunk inserts only missing rows.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::dsn::Dsn;
use crate::error::bad_input;
use crate::key::{Key, KeyRange};
use crate::plan::{BackendOptions, MigrationSpec, Plan, RunOptions, fnv1a};

/// How often a checkpoint is saved.
pub const EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The wraith version that saved it.
    pub tool: String,
    /// The run used `--resume`: its change stream outlives the process.
    pub resumable: bool,
    /// The spec (table, ALTER, transforms) and the shadow's shape it was saved for.
    pub fingerprint: String,
    pub shape: String,
    /// The copy's last key, fixed when the copy started.
    pub copy_end: Option<Key>,
    /// Last key of the committed prefix of chunks.
    pub copied_upto: Option<Key>,
    /// Chunks committed beyond `copied_upto`, in key order.
    #[serde(default)]
    pub copied_ahead: Vec<KeyRange>,
    pub copy_done: bool,
    pub rows_copied: u64,
    /// Stream position whose changes are applied (the engine's own text form).
    pub position: Option<String>,
    /// Keys whose changes before `position` still wait to be re-read.
    pub pending: Vec<Key>,
    /// When it was saved (unix seconds).
    pub saved_unix: i64,
}

impl Checkpoint {
    /// The first checkpoint of a run, saved once the shadow exists.
    pub fn new(opts: &RunOptions, fingerprint: String, plan: &Plan) -> Checkpoint {
        Checkpoint {
            tool: env!("CARGO_PKG_VERSION").to_string(),
            resumable: opts.resume,
            fingerprint,
            shape: shape_digest(plan),
            ..Checkpoint::default()
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// One line for people: how far the interrupted run got.
    pub fn describe(&self) -> String {
        let copy = if self.copy_done {
            "copy finished".to_string()
        } else {
            match &self.copied_upto {
                Some(k) => format!(
                    "{} rows copied, up to key ({})",
                    self.rows_copied,
                    k.join(", ")
                ),
                None => "copy not started".to_string(),
            }
        };
        let age = crate::engine::migration::unix_us() / 1_000_000 - self.saved_unix;
        format!("{copy}; checkpoint saved {age} s ago")
    }
}

/// What the shadow's shape looks like to the copy: a shape that changed since the
/// checkpoint (the table or the spec was altered meanwhile) cannot be resumed.
pub fn shape_digest(plan: &Plan) -> String {
    format!(
        "{:08x}",
        fnv1a(&format!("{}\n{}", plan.copy_sql, plan.apply_sql.join("\n")))
    )
}

/// What an earlier run left, as preflight found it.
#[derive(Debug, Default)]
pub struct Leftover {
    /// Its objects, for messages (`shadow table ...`, `replication slot ...`).
    pub found: Vec<String>,
    /// Its last checkpoint, as saved.
    pub checkpoint: Option<String>,
    /// Why its change stream cannot be continued (`None`: it can).
    pub stream_gone: Option<String>,
}

/// What to do about a leftover.
#[derive(Debug)]
pub enum Decision {
    /// Nothing was left.
    Fresh,
    /// Continue from this checkpoint.
    Resume(Checkpoint),
    /// Nothing in it can be continued: a real run removes it and starts over.
    StartOver(String),
}

/// Resumes a resumable leftover under `--resume`, refuses one without it (naming
/// both ways on), and lets a real run clear one that cannot be resumed.
pub fn decide(
    left: Leftover,
    opts: &BackendOptions,
    fingerprint: &str,
    target: &str,
    dsn: &Dsn,
) -> anyhow::Result<Decision> {
    if left.found.is_empty() {
        return Ok(Decision::Fresh);
    }
    let what = left.found.join(", ");
    let parsed = left
        .checkpoint
        .as_deref()
        .and_then(|s| serde_json::from_str::<Checkpoint>(s).ok());
    let cp = match parsed {
        None => {
            return Ok(Decision::StartOver(format!(
                "{what} (no checkpoint: it stopped before its copy began)"
            )));
        }
        Some(cp) if !cp.resumable => {
            return Ok(Decision::StartOver(format!(
                "{what} (it ran without --resume, so its change stream ended with it)"
            )));
        }
        Some(cp) => cp,
    };
    if let Some(why) = left.stream_gone {
        return Ok(Decision::StartOver(format!(
            "{what} (its change stream cannot be continued: {why})"
        )));
    }
    let cleanup = format!("wraith cleanup --dsn '{dsn}' --table {target}");
    if cp.fingerprint != fingerprint {
        return Err(bad_input(format!(
            "an interrupted migration of {target} with a different ALTER or transforms is waiting to \
             be resumed ({}): resume it with the spec it started with, or remove it with `{cleanup}`",
            cp.describe()
        )));
    }
    if !opts.resume {
        if !opts.execute {
            return Ok(Decision::Resume(cp));
        }
        return Err(bad_input(format!(
            "an interrupted migration of {target} is waiting to be resumed ({}); continue it by \
             running the same command with --resume, or remove it with `{cleanup}`",
            cp.describe()
        )));
    }
    Ok(Decision::Resume(cp))
}

/// What preflight made of an earlier run's leftovers.
#[derive(Debug, Default)]
pub struct Settled {
    /// For the plan: what waits, and what a real run does about it.
    pub warning: Option<String>,
    /// The interrupted run to continue.
    pub resume: Option<Checkpoint>,
    /// `remove` ran: nothing of the earlier run is left.
    pub removed: bool,
}

/// [`decide`], then acts on it: a leftover that cannot be continued is removed
/// by a real run (`remove` lists what it dropped) and named in a dry run's plan.
pub async fn settle(
    left: Leftover,
    spec: &MigrationSpec,
    opts: &BackendOptions,
    target: &str,
    remove: impl AsyncFnOnce() -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<Settled> {
    Ok(
        match decide(left, opts, &spec.fingerprint(), target, &spec.dsn)? {
            Decision::Fresh => Settled::default(),
            Decision::Resume(cp) => Settled {
                warning: Some(format!(
                    "an interrupted migration is waiting to be resumed ({}): --execute --resume continues it",
                    cp.describe()
                )),
                resume: Some(cp),
                removed: false,
            },
            Decision::StartOver(what) if opts.execute => {
                let removed = remove().await?;
                tracing::warn!(
                    "removed what an earlier attempt left behind on {target}: {}; starting over ({what})",
                    removed.join(", ")
                );
                Settled {
                    removed: true,
                    ..Settled::default()
                }
            }
            Decision::StartOver(what) => Settled {
                warning: Some(format!(
                    "an earlier attempt that did not finish left {what}: --execute removes them and starts over"
                )),
                ..Settled::default()
            },
        },
    )
}

/// A resumed run's shadow must have the shape the checkpoint was saved for.
pub fn check_shape(cp: &Checkpoint, plan: &Plan, target: &str) -> anyhow::Result<()> {
    if cp.shape != shape_digest(plan) {
        return Err(bad_input(format!(
            "the interrupted migration of {target} cannot be resumed: the table's columns changed \
             since it started, so its shadow no longer fits; remove it with `wraith cleanup` and \
             start again"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(cp: Option<&Checkpoint>) -> Leftover {
        Leftover {
            found: vec!["shadow table t_new".into()],
            checkpoint: cp.map(Checkpoint::to_json),
            stream_gone: None,
        }
    }

    #[test]
    fn leftovers_resume_refuse_or_start_over() {
        let run = RunOptions {
            execute: true,
            ..RunOptions::for_engine(crate::Engine::Postgres)
        };
        let plain = run.backend(Default::default());
        let resume = BackendOptions {
            resume: true,
            ..plain.clone()
        };
        let cp = Checkpoint {
            resumable: true,
            fingerprint: "f".into(),
            ..Checkpoint::default()
        };
        let dsn = Dsn::parse("postgres://u:pw@h/db").unwrap();
        let d = |l, o: &BackendOptions, f: &str| decide(l, o, f, "public.t", &dsn);
        assert!(matches!(
            d(Leftover::default(), &plain, "f").unwrap(),
            Decision::Fresh
        ));
        assert!(matches!(
            d(left(Some(&cp)), &resume, "f").unwrap(),
            Decision::Resume(_)
        ));
        let refused = d(left(Some(&cp)), &plain, "f").unwrap_err().to_string();
        assert!(refused.contains("--resume") && refused.contains("wraith cleanup"));
        assert!(!refused.contains("pw"), "the password is not shown");
        assert!(d(left(Some(&cp)), &resume, "other").is_err());
        assert!(matches!(
            d(left(None), &resume, "f").unwrap(),
            Decision::StartOver(_)
        ));
        let mut gone = left(Some(&cp));
        gone.stream_gone = Some("binary log purged".into());
        assert!(matches!(
            d(gone, &plain, "f").unwrap(),
            Decision::StartOver(_)
        ));
        let not_resumable = Checkpoint {
            resumable: false,
            ..cp.clone()
        };
        assert!(matches!(
            d(left(Some(&not_resumable)), &plain, "f").unwrap(),
            Decision::StartOver(_)
        ));
    }
}
