//! Where a connection's credentials and defaults come from besides its text, the
//! way DBAs keep them: PostgreSQL's `PG*` variables and password file, MySQL's
//! `MYSQL_PWD` and `[client]` option file, and a password typed at a prompt.
//! What the text says wins; these fill only what it leaves out.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::bad_input;

/// The variables wraith reads, as libpq and the mysql client do.
const VARS: [&str; 12] = [
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "MYSQL_PWD",
    "USER",
];

/// What fills a connection string's gaps.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The environment variables above that are set.
    pub env: BTreeMap<String, String>,
    /// The home directory (`~/.pgpass`, `~/.my.cnf`).
    pub home: Option<PathBuf>,
    /// `--defaults-file`: the one MySQL option file read instead of `~/.my.cnf`.
    pub defaults_file: Option<PathBuf>,
    /// `--ask-pass`: the password typed at the prompt, used above every other.
    pub password: Option<String>,
    /// TLS flags (`--sslmode`, `--ssl-ca`...): for every connection string that
    /// does not say otherwise.
    pub tls_flags: Vec<(String, String)>,
}

/// Where a connection's password came from, for the warning about `ps`; never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    None,
    /// The connection string itself.
    Text,
    Prompt,
    Env(&'static str),
    File(PathBuf),
}

impl Sources {
    /// This process's environment and home.
    pub fn from_process() -> Sources {
        Sources {
            env: VARS
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                .collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            defaults_file: None,
            password: None,
            tls_flags: Vec::new(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The PostgreSQL password file: `PGPASSFILE`, else `~/.pgpass`.
    fn pgpass_path(&self) -> Option<PathBuf> {
        match self.var("PGPASSFILE") {
            Some(p) => Some(PathBuf::from(p)),
            None => self.home.as_ref().map(|h| h.join(".pgpass")),
        }
    }

    /// The password `.pgpass` holds for this connection (`host` is the host name,
    /// or `localhost` for a socket in the default directory), and the file.
    /// A file others may read is ignored with a warning, as libpq does.
    pub fn pgpass(&self, host: &str, port: u16, db: &str, user: &str) -> Option<(String, PathBuf)> {
        let path = self.pgpass_path()?;
        let meta = std::fs::metadata(&path).ok()?;
        if meta.permissions().mode() & 0o077 != 0 {
            warn_once(&format!(
                "password file {} has group or world access and is ignored (as libpq does); \
                 chmod 0600 it",
                path.display()
            ));
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let port = port.to_string();
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(pgpass_fields)
            .find(|f| {
                f.len() == 5
                    && [host, port.as_str(), db, user]
                        .iter()
                        .zip(f)
                        .all(|(want, have)| have == "*" || have == want)
            })
            .map(|mut f| (f.remove(4), path))
    }

    /// The `[client]` section of the MySQL option file: `--defaults-file`, which
    /// must be readable, else `~/.my.cnf` when it exists.
    pub fn mysql_client_options(&self) -> anyhow::Result<Vec<(String, String)>> {
        let path = match (&self.defaults_file, &self.home) {
            (Some(p), _) => p.clone(),
            (None, Some(h)) if h.join(".my.cnf").exists() => h.join(".my.cnf"),
            _ => return Ok(Vec::new()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            bad_input(format!(
                "cannot read the option file {}: {e}; fix its permissions or name another with \
                 --defaults-file",
                path.display()
            ))
        })?;
        Ok(client_section(&text))
    }
}

/// One `.pgpass` line's fields, with `\:` and `\\` unescaped.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

/// `key = value` lines of the `[client]` section (quotes removed; a bare key is `true`).
fn client_section(text: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == "client";
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line, "true"),
        };
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.push((key.replace('_', "-"), value.to_string()));
    }
    out
}

/// Logs `msg` once per process (a warning about a file, not per session).
pub fn warn_once(msg: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|m| m == msg) {
        seen.push(msg.to_string());
        tracing::warn!("{msg}");
    }
}

/// The OS user name, libpq's default user.
pub fn os_user(sources: &Sources) -> Option<String> {
    if let Some(u) = sources.var("USER") {
        return Some(u.to_string());
    }
    // SAFETY: getuid(2) cannot fail; getpwuid's result is read before any other call.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// libpq's default socket directory on Debian, when it exists.
pub fn default_socket_dir() -> Option<&'static Path> {
    let dir = Path::new("/var/run/postgresql");
    dir.is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_matches_wildcards_and_escapes_and_refuses_loose_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:bob:nope\ndb:*:app:bob:s3\\:cret\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Sources {
            env: [("PGPASSFILE".to_string(), file.display().to_string())].into(),
            ..Sources::default()
        };
        assert_eq!(s.pgpass("db", 5433, "app", "bob").unwrap().0, "s3:cret");
        assert_eq!(s.pgpass("x", 1, "y", "z").unwrap().0, "fallback");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(s.pgpass("db", 5433, "app", "bob").is_none());
    }

    #[test]
    fn option_files_give_the_client_section() {
        let opts = client_section(
            "[mysqld]\npassword=server\n[client]\nuser = bob\npassword=\"s3 cret\"\nssl_mode=REQUIRED\n# x\n[mysql]\nuser=other\n",
        );
        assert_eq!(
            opts,
            vec![
                ("user".to_string(), "bob".to_string()),
                ("password".to_string(), "s3 cret".to_string()),
                ("ssl-mode".to_string(), "REQUIRED".to_string()),
            ]
        );
        let missing = Sources {
            defaults_file: Some("/nonexistent/my.cnf".into()),
            ..Sources::default()
        };
        let e = missing.mysql_client_options().unwrap_err().to_string();
        assert!(e.contains("--defaults-file"), "{e}");
    }
}
