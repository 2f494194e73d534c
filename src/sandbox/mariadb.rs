//! A throwaway MariaDB server built from the installed Debian binaries.
//!
//! [`MariaDbSandbox`] runs `mariadb-install-db` and `mariadbd` inside a fresh
//! temporary directory (data, socket, binary logs and `mariadb.log` all live
//! there), listening on a free port on 127.0.0.1 with the binary log on in ROW
//! format with full row images, as wraith needs. Like the PostgreSQL sandbox it
//! never touches the system service (`--no-defaults`: no /etc/mysql config, no
//! shared socket, no fixed port) and never outlives its owner: dropping it kills
//! the server and removes the directory. As root, the server runs as `mysql`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mysql_async::prelude::Queryable;
use tempfile::TempDir;

use super::process::{Owner, chown_tree, command, free_port, lookup_user, tail, temp_dir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_WAIT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

/// A running throwaway MariaDB server; killed and deleted on drop.
#[derive(Debug)]
pub struct MariaDbSandbox {
    // Dropped in order: the server before its directory.
    server: Option<Child>,
    port: u16,
    log_path: PathBuf,
    /// mariadbd's arguments, for a restart.
    args: Vec<String>,
    /// It offers TLS: its own sessions use it (it may require it).
    tls: bool,
    _dir: TempDir,
}

/// How the sandbox server is configured.
#[derive(Debug, Clone)]
pub struct MyOptions {
    /// A binary log in ROW format with full row images.
    pub log_bin: bool,
    /// TLS with this certificate.
    pub tls: Option<super::ServerTls>,
    /// Every connection must use TLS (`require_secure_transport`).
    pub tls_only: bool,
}

impl Default for MyOptions {
    fn default() -> Self {
        MyOptions {
            log_bin: true,
            tls: None,
            tls_only: false,
        }
    }
}

impl MariaDbSandbox {
    /// Creates a data directory in a new temporary directory and starts a server on
    /// it, returning once it accepts connections as `root` over TCP.
    pub async fn start() -> Result<MariaDbSandbox> {
        MariaDbSandbox::start_with(true).await
    }

    /// Like [`MariaDbSandbox::start`]; `log_bin: false` starts it without a binary
    /// log (to see wraith refuse such a server).
    pub async fn start_with(log_bin: bool) -> Result<MariaDbSandbox> {
        MariaDbSandbox::start_opts(MyOptions {
            log_bin,
            ..MyOptions::default()
        })
        .await
    }

    /// A server configured by `opts`.
    pub async fn start_opts(opts: MyOptions) -> Result<MariaDbSandbox> {
        let log_bin = opts.log_bin;
        let owner = server_owner()?;
        let dir = temp_dir("wraith-mariadb-")?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("mariadb.log");
        // Root may log in over TCP from 127.0.0.1 without a password (names are not resolved).
        let init = dir.path().join("init.sql");
        fs::write(
            &init,
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n",
        )
        .context("writing the sandbox init file")?;
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        if let Some(owner) = owner {
            chown_tree(dir.path(), owner)?;
        }
        install_db(dir.path(), &data_dir, owner).await?;

        let port = free_port()?;
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", data_dir.display()),
            format!("--socket={}", dir.path().join("mysqld.sock").display()),
            format!("--pid-file={}", dir.path().join("mysqld.pid").display()),
            format!("--init-file={}", init.display()),
            // Its own temp dir: internal temporary tables never meet another server's.
            format!("--tmpdir={}", dir.path().display()),
            format!("--port={port}"),
        ];
        args.extend(
            [
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--server-id=1",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                // Sized like a server whose working set fits: a benchmark's table and its
                // shadow stay in memory (the pool is only touched as it fills).
                "--innodb-buffer-pool-size=1G",
                "--max-connections=500",
                // Shows who holds a table's metadata lock: the cutover's blocker check.
                "--plugin-load-add=metadata_lock_info",
            ]
            .map(String::from),
        );
        if log_bin {
            args.push(format!("--log-bin={}", dir.path().join("binlog").display()));
        }
        if let Some(tls) = &opts.tls {
            for (flag, file, name) in [
                ("--ssl-cert", &tls.cert, "server.crt"),
                ("--ssl-key", &tls.key, "server.key"),
                ("--ssl-ca", &tls.ca, "ca.crt"),
            ] {
                let to = dir.path().join(name);
                fs::copy(file, &to).with_context(|| format!("copying {}", file.display()))?;
                if let Some(owner) = owner {
                    chown_tree(&to, owner)?;
                }
                args.push(format!("{flag}={}", to.display()));
            }
        }
        if opts.tls_only {
            args.push("--require-secure-transport=ON".into());
        }
        if owner.is_some() {
            args.push("--user=mysql".into());
        }
        let mut sandbox = MariaDbSandbox {
            server: None,
            port,
            log_path,
            args,
            tls: opts.tls.is_some(),
            _dir: dir,
        };
        sandbox.spawn()?;
        sandbox.wait_ready().await?;
        tracing::debug!(port, "mariadb sandbox ready");
        Ok(sandbox)
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for database `db` as `root`.
    pub fn dsn(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its connection string.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let mut c = self.connect("mysql").await?;
        c.query_drop(format!("CREATE DATABASE `{}`", name.replace('`', "``")))
            .await
            .with_context(|| format!("creating database {name:?} in the sandbox"))?;
        c.disconnect().await.ok();
        Ok(self.dsn(name))
    }

    /// Connects to database `db` as `root`.
    pub async fn connect(&self, db: &str) -> Result<mysql_async::Conn> {
        let opts = mysql_async::Opts::from_url(&self.dsn(db))
            .with_context(|| format!("the sandbox's connection string for {db:?}"))?;
        let ssl = self
            .tls
            .then(|| mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true));
        let opts = mysql_async::OptsBuilder::from_opts(opts).ssl_opts(ssl);
        mysql_async::Conn::new(opts)
            .await
            .with_context(|| format!("connecting to sandbox database {db:?}"))
    }

    /// The server's unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self._dir.path().join("mysqld.sock")
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    fn spawn(&mut self) -> Result<()> {
        let log = File::options()
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut cmd = command(Path::new("mariadbd"), self._dir.path(), None);
        let child = cmd
            .args(&self.args)
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log)
            .spawn()
            .context("starting mariadbd")?;
        self.server = Some(child);
        Ok(())
    }

    /// Restarts the server on the same port and data (clients are disconnected),
    /// as a server restart in production would.
    pub async fn restart(&mut self) -> Result<()> {
        self.shutdown().await;
        self.spawn()?;
        self.wait_ready().await
    }

    /// Stops the server (a normal shutdown) and removes the temporary directory.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(mut child) = self.server.take() {
            signal(&child, libc::SIGTERM);
            let deadline = Instant::now() + STOP_WAIT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.server.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "mariadbd exited during startup ({status}):\n{}",
                    self.log_tail()
                );
            }
            match self.connect("mysql").await {
                Ok(c) => {
                    c.disconnect().await.ok();
                    return Ok(());
                }
                Err(e) if started.elapsed() > READY_TIMEOUT => {
                    return Err(e.context(format!(
                        "mariadbd did not accept connections within {READY_TIMEOUT:?}:\n{}",
                        self.log_tail()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn log_tail(&self) -> String {
        tail(
            &fs::read_to_string(&self.log_path).unwrap_or_default(),
            LOG_TAIL_LINES,
        )
    }
}

impl Drop for MariaDbSandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // A sandbox is thrown away: no need for a clean shutdown.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// As root the server runs as the `mysql` system user (created by the Debian package).
fn server_owner() -> Result<Option<Owner>> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    lookup_user(&passwd, "mysql").map(Some).ok_or_else(|| {
        anyhow!(
            "running as root, but there is no `mysql` system user to run the sandbox server as; \
             install the server with `apt-get install -y mariadb-server`, which creates it"
        )
    })
}

/// Bootstraps the data directory. Bootstraps running side by side have been seen to
/// fail here, so they run one at a time in this process, and a failed one is
/// retried on a fresh directory.
async fn install_db(cwd: &Path, data_dir: &Path, owner: Option<Owner>) -> Result<()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut attempt = 1;
    loop {
        match install_db_once(cwd, data_dir, owner).await {
            Err(e) if attempt < 3 => {
                tracing::warn!(attempt, "{e:#}; retrying");
                let _ = fs::remove_dir_all(data_dir);
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn install_db_once(cwd: &Path, data_dir: &Path, owner: Option<Owner>) -> Result<()> {
    let mut cmd = command(Path::new("mariadb-install-db"), cwd, None);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data_dir.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if owner.is_some() {
        cmd.arg("--user=mysql");
    }
    let out = tokio::process::Command::from(cmd).output().await.context(
        "running mariadb-install-db (install it with `apt-get install -y mariadb-server`)",
    )?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(owner) = owner {
        chown_tree(data_dir, owner)?;
    }
    Ok(())
}
