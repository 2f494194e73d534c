//! The servers a sandbox can start, by the names the test matrix
//! (`WRAITH_TEST_SERVERS`) and `wraith demo`/`bench --server` use: `pg15`
//! (Debian's PostgreSQL, whatever its major), `pg16`–`pg18` and `mysql9.7` (which
//! `scripts/setup.sh` installs under `WRAITH_SERVERS`, default
//! `/opt/wraith-servers`), and `mariadb10.11` (Debian's MariaDB).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, anyhow};

use super::{MyServer, PgOptions, other_versions};
use crate::Engine;

/// One server of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `pg16`, `mariadb10.11`, `mysql9.7`.
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL from this `bin` directory (`None`: Debian's, found as the sandbox does).
    Postgres(Option<PathBuf>),
    MySql(MyServer),
}

impl Server {
    /// Every server installed here: Debian's PostgreSQL and MariaDB, then what
    /// `scripts/setup.sh` added.
    pub fn installed() -> Vec<Server> {
        let mut all = Vec::new();
        if let Some(major) = debian_pg_major() {
            all.push(Server {
                name: format!("pg{major}"),
                kind: Kind::Postgres(None),
            });
        }
        for (major, bin) in other_versions() {
            all.push(Server {
                name: format!("pg{major}"),
                kind: Kind::Postgres(Some(bin)),
            });
        }
        if let Some(series) = mariadb_series() {
            all.push(Server {
                name: format!("mariadb{series}"),
                kind: Kind::MySql(MyServer::MariaDb),
            });
        }
        for (series, bin) in mysql_versions() {
            all.push(Server {
                name: format!("mysql{series}"),
                kind: Kind::MySql(MyServer::MySql { bin }),
            });
        }
        all
    }

    /// The installed server called `name`; `postgres`, `mariadb` and `mysql` name
    /// Debian's PostgreSQL, Debian's MariaDB and the newest MySQL installed.
    pub fn find(name: &str) -> Result<Server> {
        let installed = Server::installed();
        let found = match name {
            "postgres" | "postgresql" => installed
                .iter()
                .find(|s| s.kind == Kind::Postgres(None))
                .cloned(),
            "mariadb" => installed
                .iter()
                .find(|s| s.kind == Kind::MySql(MyServer::MariaDb))
                .cloned(),
            "mysql" => installed
                .iter()
                .rfind(|s| matches!(s.kind, Kind::MySql(MyServer::MySql { .. })))
                .cloned(),
            _ => installed.iter().find(|s| s.name == name).cloned(),
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = installed.iter().map(|s| s.name.as_str()).collect();
            anyhow!(
                "server {name:?} is not installed here (installed: {}); `scripts/setup.sh` \
                 installs PostgreSQL 15–18, MariaDB and MySQL 9.7",
                names.join(", ")
            )
        })
    }

    /// `PostgreSQL 16`, `MariaDB 10.11`, `MySQL 9.7`.
    pub fn title(&self) -> String {
        let (product, prefix) = match &self.kind {
            Kind::Postgres(_) => ("PostgreSQL", "pg"),
            Kind::MySql(MyServer::MariaDb) => ("MariaDB", "mariadb"),
            Kind::MySql(MyServer::MySql { .. }) => ("MySQL", "mysql"),
        };
        let version = self.name.strip_prefix(prefix).unwrap_or(&self.name);
        format!("{product} {version}")
    }

    /// Whether `name` could name a server (an alias or `pg`/`mariadb`/`mysql`
    /// and a version), installed or not: for checking flags before starting anything.
    pub fn is_name(name: &str) -> bool {
        let versioned = |prefix: &str| {
            name.strip_prefix(prefix).is_some_and(|v| {
                !v.is_empty()
                    && v.split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            })
        };
        matches!(name, "postgres" | "postgresql" | "mariadb" | "mysql")
            || versioned("pg")
            || versioned("mariadb")
            || versioned("mysql")
    }

    pub fn engine(&self) -> Engine {
        match self.kind {
            Kind::Postgres(_) => Engine::Postgres,
            Kind::MySql(_) => Engine::MySql,
        }
    }

    /// The PostgreSQL sandbox options that start this server (`None` for MySQL).
    pub fn pg_options(&self) -> Option<PgOptions> {
        match &self.kind {
            Kind::Postgres(bin) => Some(PgOptions {
                bin: bin.clone(),
                ..PgOptions::default()
            }),
            Kind::MySql(_) => None,
        }
    }

    /// The MySQL-protocol server this is (`None` for PostgreSQL).
    pub fn my_server(&self) -> Option<MyServer> {
        match &self.kind {
            Kind::MySql(server) => Some(server.clone()),
            Kind::Postgres(_) => None,
        }
    }
}

/// The major of Debian's PostgreSQL, the one the sandbox starts by default.
fn debian_pg_major() -> Option<u32> {
    let bin = super::postgres::find_pg_bin().ok()?;
    // /usr/lib/postgresql/<major>/bin, or a bin directory whose postgres says it.
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    version_after(&String::from_utf8_lossy(&out.stdout), "(PostgreSQL) ")
        .and_then(|v| v.split('.').next()?.parse().ok())
}

/// `10.11` of Debian's `mariadbd`.
fn mariadb_series() -> Option<String> {
    let out = Command::new("mariadbd").arg("--version").output().ok()?;
    let version = version_after(&String::from_utf8_lossy(&out.stdout), "Ver ")?;
    Some(series(&version))
}

/// The MySQL servers `scripts/setup.sh` installed, as (series, `bin` directory).
fn mysql_versions() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(super::postgres::servers_root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let series = e.file_name().to_str()?.strip_prefix("mysql")?.to_string();
            let bin = e.path().join("bin");
            bin.join("mysqld").is_file().then_some((series, bin))
        })
        .collect();
    found.sort();
    found
}

/// The version word after `marker` in a `--version` line.
fn version_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// `10.11` of `10.11.19`.
fn series(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_off_version_lines() {
        let pg = "postgres (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)\n";
        assert_eq!(version_after(pg, "(PostgreSQL) ").as_deref(), Some("15.19"));
        let maria = "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu";
        assert_eq!(
            version_after(maria, "Ver ").map(|v| series(&v)).as_deref(),
            Some("10.11")
        );
        assert_eq!(version_after("nothing here", "Ver "), None);
    }

    #[test]
    fn server_names() {
        for ok in [
            "postgres",
            "pg16",
            "mariadb",
            "mariadb10.11",
            "mysql",
            "mysql9.7",
        ] {
            assert!(Server::is_name(ok), "{ok}");
        }
        for bad in ["oracle", "pg", "mysql9.", "pg1x", "postgresql16", ""] {
            assert!(!Server::is_name(bad), "{bad}");
        }
    }
}
