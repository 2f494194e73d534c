//! Hooks: a shell command per migration event, with the migration's facts in
//! `WRAITH_*` environment variables (as gh-ost's hooks).
//!
//! A hook that fails before the swap (start, copy-done, verified, before-cutover)
//! stops the run cleanly: it is how an operator says "not now". The success and
//! failure hooks only report; their failure is logged.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::engine::Stats;

/// The moments a hook can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookEvent {
    Start,
    CopyDone,
    Verified,
    BeforeCutover,
    Success,
    Failure,
}

impl HookEvent {
    pub const ALL: [HookEvent; 6] = [
        HookEvent::Start,
        HookEvent::CopyDone,
        HookEvent::Verified,
        HookEvent::BeforeCutover,
        HookEvent::Success,
        HookEvent::Failure,
    ];

    /// The name in `--hook-<name>` and in `WRAITH_HOOK`.
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::Start => "start",
            HookEvent::CopyDone => "copy-done",
            HookEvent::Verified => "verified",
            HookEvent::BeforeCutover => "before-cutover",
            HookEvent::Success => "success",
            HookEvent::Failure => "failure",
        }
    }
}

/// The commands to run, by event.
/// Variables that may hold a password, kept out of hooks' environment.
const SECRET_VARS: [&str; 3] = ["PGPASSWORD", "MYSQL_PWD", "WRAITH_DSN"];

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    commands: BTreeMap<HookEvent, String>,
    /// Facts every hook gets: database, table, engine.
    facts: Vec<(String, String)>,
}

impl Hooks {
    pub fn set(&mut self, event: HookEvent, command: String) {
        self.commands.insert(event, command);
    }

    /// Adds `WRAITH_<name>=value` to every hook's environment.
    pub fn fact(&mut self, name: &str, value: impl Into<String>) {
        self.facts.push((format!("WRAITH_{name}"), value.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Runs the hook for `event`, if any, and waits for it. `error` is the failure's
    /// message for the failure hook. Fails when the command exits non-zero.
    pub async fn run(
        &self,
        event: HookEvent,
        stats: &Stats,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let Some(command) = self.commands.get(&event) else {
            return Ok(());
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(command).kill_on_drop(true);
        // A hook is someone else's program: it gets the migration's facts, not
        // the credentials wraith was given.
        for secret in SECRET_VARS {
            cmd.env_remove(secret);
        }
        cmd.envs(self.facts.iter().map(|(k, v)| (k, v)));
        cmd.env("WRAITH_HOOK", event.name())
            .env("WRAITH_PHASE", stats.phase().to_string())
            .env(
                "WRAITH_ROWS_COPIED",
                stats.rows_copied.load(Relaxed).to_string(),
            )
            .env(
                "WRAITH_ROWS_ESTIMATE",
                stats.rows_estimate.load(Relaxed).to_string(),
            )
            .env(
                "WRAITH_KEYS_APPLIED",
                stats.keys_applied.load(Relaxed).to_string(),
            )
            .env("WRAITH_ELAPSED_SECS", stats.elapsed().as_secs().to_string());
        if let Some(e) = error {
            cmd.env("WRAITH_ERROR", e);
        }
        tracing::info!(hook = event.name(), "running hook");
        let status = cmd
            .status()
            .await
            .map_err(|e| anyhow::anyhow!("hook {}: cannot run `{command}`: {e}", event.name()))?;
        if !status.success() {
            anyhow::bail!("hook {} (`{command}`) failed: {status}", event.name());
        }
        Ok(())
    }

    /// Runs a reporting hook: a failure is logged, never fatal.
    pub async fn report(&self, event: HookEvent, stats: &Stats, error: Option<&str>) {
        if let Err(e) = self.run(event, stats, error).await {
            tracing::warn!("{e:#}");
        }
    }
}
