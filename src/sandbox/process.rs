//! What the sandbox servers share about processes: the user a server runs as,
//! files handed to it, commands run as it, a free port, and a log's tail.

use std::fs;
use std::os::unix::fs::lchown;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// A system user a server process runs as.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

pub(super) fn lookup_user(passwd: &str, name: &str) -> Option<Owner> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Owner { uid, gid })
    })
}

/// Hands `path` and everything below it to `owner` (symlinks are not followed).
pub(super) fn chown_tree(path: &Path, owner: Owner) -> Result<()> {
    lchown(path, Some(owner.uid), Some(owner.gid))
        .with_context(|| format!("changing the owner of {}", path.display()))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

/// A command that runs as `owner` (when set) from `cwd`, so it never depends on
/// being able to read the caller's working directory.
pub(super) fn command(program: &Path, cwd: &Path, owner: Option<Owner>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).stdin(Stdio::null());
    if let Some(owner) = owner {
        cmd.uid(owner.uid).gid(owner.gid);
    }
    cmd
}

/// A port that was free a moment ago; losing it to a race is handled by retrying.
pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding 127.0.0.1:0 to pick a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of `text` (a server log, for error messages).
pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A fresh temporary directory for one server, removed when dropped.
pub(super) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating the sandbox temporary directory")
}
