//! A throwaway MariaDB or MySQL server.
//!
//! [`MySqlSandbox`] bootstraps a data directory (`mariadb-install-db`, or
//! `mysqld --initialize-insecure`) and starts the server inside a fresh temporary
//! directory (data, socket, binary logs and `mysqld.log` all live there),
//! listening on a free port on 127.0.0.1 with the binary log on in ROW format with
//! full row images, as wraith needs. MariaDB is Debian's; MySQL is the `mysqld`
//! that `scripts/setup.sh` installs (see [`super::Server`]). Like the PostgreSQL
//! sandbox it never touches the system service (`--no-defaults`: no /etc/mysql
//! config, no shared socket, no fixed port) and never outlives its owner: dropping
//! it kills the server and removes the directory. As root, the server runs as `mysql`.

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

/// A running throwaway MariaDB or MySQL server; killed and deleted on drop.
#[derive(Debug)]
pub struct MySqlSandbox {
    // Dropped in order: the server before its directory.
    server: Option<Child>,
    port: u16,
    log_path: PathBuf,
    /// The server binary and its arguments, for a restart.
    program: PathBuf,
    args: Vec<String>,
    /// It offers TLS: its own sessions use it (it may require it).
    tls: bool,
    _dir: TempDir,
}

/// Which server a sandbox runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MyServer {
    /// Debian's `mariadbd`, from `PATH`.
    MariaDb,
    /// MySQL: the `mysqld` in this directory.
    MySql { bin: PathBuf },
}

impl MyServer {
    fn label(&self) -> &'static str {
        match self {
            MyServer::MariaDb => "mariadbd",
            MyServer::MySql { .. } => "mysqld",
        }
    }
}

/// How the sandbox server is configured.
#[derive(Debug, Clone)]
pub struct MyOptions {
    /// MariaDB or MySQL.
    pub server: MyServer,
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
            server: MyServer::MariaDb,
            log_bin: true,
            tls: None,
            tls_only: false,
        }
    }
}

impl MySqlSandbox {
    /// Creates a data directory in a new temporary directory and starts a server on
    /// it, returning once it accepts connections as `root` over TCP.
    pub async fn start() -> Result<MySqlSandbox> {
        MySqlSandbox::start_with(true).await
    }

    /// Like [`MySqlSandbox::start`]; `log_bin: false` starts it without a binary
    /// log (to see wraith refuse such a server).
    pub async fn start_with(log_bin: bool) -> Result<MySqlSandbox> {
        MySqlSandbox::start_opts(MyOptions {
            log_bin,
            ..MyOptions::default()
        })
        .await
    }

    /// A server configured by `opts`.
    pub async fn start_opts(opts: MyOptions) -> Result<MySqlSandbox> {
        let log_bin = opts.log_bin;
        let owner = server_owner()?;
        let dir = temp_dir("wraith-mysql-")?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("mysqld.log");
        // Root may log in over TCP from 127.0.0.1 without a password (names are not resolved).
        let init = dir.path().join("init.sql");
        fs::write(
            &init,
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n",
        )
        .context("writing the sandbox init file")?;
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        // MySQL reads and writes files only under secure-file-priv, which must exist.
        let files = dir.path().join("files");
        fs::create_dir(&files).context("creating the sandbox's secure-file-priv directory")?;
        if let Some(owner) = owner {
            chown_tree(dir.path(), owner)?;
        }
        install_db(&opts.server, dir.path(), &data_dir, &files, owner).await?;

        let port = free_port()?;
        let program = match &opts.server {
            MyServer::MariaDb => PathBuf::from("mariadbd"),
            MyServer::MySql { bin } => bin.join("mysqld"),
        };
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
            ]
            .map(String::from),
        );
        match &opts.server {
            MyServer::MariaDb => args.extend(
                [
                    // Shows who holds a table's metadata lock: the cutover's blocker check.
                    "--plugin-load-add=metadata_lock_info",
                    // Tests generate rows with recursive CTEs on either server.
                    "--max-recursive-iterations=10000000",
                ]
                .map(String::from),
            ),
            MyServer::MySql { .. } => {
                args.extend(
                    [
                        "--cte-max-recursion-depth=10000000",
                        "--mysqlx=OFF",
                        "--innodb-redo-log-capacity=268435456",
                    ]
                    .map(String::from),
                );
                args.push(format!("--secure-file-priv={}", files.display()));
            }
        }
        if log_bin {
            args.push(format!("--log-bin={}", dir.path().join("binlog").display()));
        } else if matches!(opts.server, MyServer::MySql { .. }) {
            // MySQL logs by default.
            args.push("--skip-log-bin".into());
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
        if opts.tls.is_none() && matches!(opts.server, MyServer::MySql { .. }) {
            // MySQL offers TLS with certificates it generates; like MariaDB's, the
            // sandbox offers it only when given a certificate.
            args.push("--tls-version=".into());
        }
        if opts.tls_only {
            args.push("--require-secure-transport=ON".into());
        }
        if owner.is_some() {
            args.push("--user=mysql".into());
        }
        let mut sandbox = MySqlSandbox {
            server: None,
            port,
            program,
            log_path,
            args,
            tls: opts.tls.is_some(),
            _dir: dir,
        };
        sandbox.spawn()?;
        sandbox.wait_ready().await?;
        tracing::debug!(port, server = opts.server.label(), "sandbox ready");
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
        let mut cmd = command(&self.program, self._dir.path(), None);
        let child = cmd
            .args(&self.args)
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
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
                    "{} exited during startup ({status}):\n{}",
                    self.program.display(),
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
                        "{} did not accept connections within {READY_TIMEOUT:?}:\n{}",
                        self.program.display(),
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

impl Drop for MySqlSandbox {
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
async fn install_db(
    server: &MyServer,
    cwd: &Path,
    data_dir: &Path,
    files: &Path,
    owner: Option<Owner>,
) -> Result<()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut attempt = 1;
    loop {
        match install_db_once(server, cwd, data_dir, files, owner).await {
            Err(e) if attempt < 3 => {
                tracing::warn!(attempt, "{e:#}; retrying");
                let _ = fs::remove_dir_all(data_dir);
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn install_db_once(
    server: &MyServer,
    cwd: &Path,
    data_dir: &Path,
    files: &Path,
    owner: Option<Owner>,
) -> Result<()> {
    let (program, install) = match server {
        MyServer::MariaDb => (
            PathBuf::from("mariadb-install-db"),
            "`apt-get install -y mariadb-server`",
        ),
        MyServer::MySql { bin } => (bin.join("mysqld"), "`scripts/setup.sh`"),
    };
    let mut cmd = command(&program, cwd, None);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data_dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match server {
        MyServer::MariaDb => cmd.args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]),
        MyServer::MySql { .. } => cmd
            .arg("--initialize-insecure")
            .arg(format!("--secure-file-priv={}", files.display())),
    };
    if owner.is_some() {
        cmd.arg("--user=mysql");
    }
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .with_context(|| format!("running {} (install it with {install})", program.display()))?;
    if !out.status.success() {
        bail!(
            "bootstrapping the data directory with {} failed ({}):\n{}{}",
            program.display(),
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
