//! A throwaway PostgreSQL server built from the installed Debian binaries.
//!
//! [`PgSandbox`] runs `initdb` and `postgres` inside a fresh temporary directory
//! (data directory, unix socket directory and `postgres.log` all live there) and
//! listens on a free port on 127.0.0.1 with `trust` authentication and
//! `wal_level=logical`. It promises never to touch the system PostgreSQL service
//! (no `pg_ctlcluster`, no shared socket directory, no fixed port) and never to
//! outlive its owner: dropping the sandbox, including during a panic unwind, stops
//! the server and removes the directory.
//!
//! PostgreSQL refuses to run as root, so when the effective uid is 0 the server
//! runs as the `postgres` system user and the temporary directory is handed to it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::process::{Owner, chown_tree, command, free_port, lookup_user, tail, temp_dir};
use tempfile::TempDir;
use tokio_postgres::NoTls;

/// Where Debian installs one directory per server major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// Overrides the binary discovery with an explicit `bin` directory.
const PG_BIN_ENV: &str = "WRAITH_PG_BIN";
/// A lost race for the free port is the only start failure worth retrying.
const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(50);
/// Bound on the immediate shutdown done by `Drop` before escalating to SIGKILL.
const DROP_WAIT: Duration = Duration::from_secs(10);
/// Bound on the fast shutdown done by [`PgSandbox::stop`].
const STOP_WAIT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

/// How the sandbox server is configured.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Durable writes. Off by default: a sandbox is thrown away, and fsync only costs time.
    pub fsync: bool,
    /// Extra `name = value` settings passed as `-c` after the defaults, so they can override them.
    pub extra_conf: Vec<(String, String)>,
    /// `shared_buffers`, e.g. `"256MB"`; the server default when `None`.
    pub shared_buffers: Option<String>,
    /// TLS with this certificate (`ssl = on`).
    pub tls: Option<super::ServerTls>,
    /// TCP connections must use TLS (`hostssl` lines only).
    pub tls_only: bool,
    /// TCP connections must show a client certificate the CA signed, for their user.
    pub client_certs: bool,
    /// The server's `bin` directory (default: `WRAITH_PG_BIN`, else Debian's newest).
    pub bin: Option<PathBuf>,
    /// Roles that must give their password over TCP (scram-sha-256).
    pub password_roles: Vec<String>,
}

/// A running throwaway PostgreSQL server; stopped and deleted on drop.
#[derive(Debug)]
pub struct PgSandbox {
    // Field order matters: fields drop in declaration order, so the server is
    // stopped before its directory is removed.
    server: Option<Postmaster>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    bin: PathBuf,
    owner: Option<Owner>,
    opts: PgOptions,
    _dir: TempDir,
}

impl PgSandbox {
    /// Starts a sandbox with [`PgOptions::default`].
    pub async fn start() -> Result<PgSandbox> {
        Self::start_with(PgOptions::default()).await
    }

    /// Creates a cluster in a new temporary directory and starts a server on it,
    /// returning once it accepts connections.
    pub async fn start_with(opts: PgOptions) -> Result<PgSandbox> {
        let bin = match &opts.bin {
            Some(bin) => bin.clone(),
            None => find_pg_bin()?,
        };
        let owner = server_owner()?;

        let dir = temp_dir("wraith-pg-")?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        let log_path = dir.path().join("postgres.log");
        fs::create_dir(&socket_dir)
            .with_context(|| format!("creating {}", socket_dir.display()))?;
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        if let Some(owner) = owner {
            chown_tree(dir.path(), owner)?;
        }

        run_initdb(&bin, dir.path(), &data_dir, owner, opts.fsync).await?;
        configure_access(&data_dir, &opts, owner)?;

        let mut last_err = None;
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port()?;
            let server = spawn_postmaster(
                &bin,
                dir.path(),
                &data_dir,
                &socket_dir,
                &log_path,
                port,
                owner,
                &opts,
            )?;
            match wait_ready(server, &socket_dir, port, &log_path).await {
                Ok(server) => {
                    tracing::debug!(port, dir = %dir.path().display(), "postgres sandbox ready");
                    return Ok(PgSandbox {
                        server: Some(server),
                        port,
                        data_dir,
                        log_path,
                        bin,
                        owner,
                        opts,
                        _dir: dir,
                    });
                }
                Err(StartError::PortTaken(err)) if attempt < START_ATTEMPTS => {
                    tracing::debug!(port, attempt, "sandbox port was taken, retrying");
                    last_err = Some(err);
                }
                Err(StartError::PortTaken(err)) | Err(StartError::Fatal(err)) => return Err(err),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("postgres sandbox did not start")))
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for database `db` as the `postgres` superuser.
    pub fn dsn(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            percent_encode(db)
        )
    }

    /// Creates database `name` and returns its connection string.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .with_context(|| format!("creating database {name:?} in the sandbox"))?;
        Ok(self.dsn(name))
    }

    /// Connects to database `db` as `postgres`; the connection is driven by a spawned task.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) = self
            .config(db)
            .connect(NoTls)
            .await
            .with_context(|| format!("connecting to sandbox database {db:?}"))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "sandbox connection ended with an error");
            }
        });
        Ok(client)
    }

    /// The directory of the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self._dir.path().join("socket")
    }

    /// The server's log (its stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// The cluster's data directory; it is deleted when the sandbox is stopped or dropped.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Restarts the server on the same port and data (clients are disconnected),
    /// as a server restart in production would.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(server) = self.server.take() {
            server.shutdown_fast().await;
        }
        let cwd = self
            .data_dir
            .parent()
            .unwrap_or(&self.data_dir)
            .to_path_buf();
        let server = spawn_postmaster(
            &self.bin,
            &cwd,
            &self.data_dir,
            &cwd.join("socket"),
            &self.log_path,
            self.port,
            self.owner,
            &self.opts,
        )?;
        let server = wait_ready(
            server,
            &self._dir.path().join("socket"),
            self.port,
            &self.log_path,
        )
        .await
        .map_err(|e| match e {
            StartError::PortTaken(e) | StartError::Fatal(e) => e,
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// Stops the server with a fast shutdown (clients are disconnected, a clean
    /// checkpoint is written) and removes the temporary directory.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_fast().await;
        }
        // Dropping `self` removes the temporary directory.
    }

    /// Over the unix socket, which `trust` admits whatever TCP requires.
    fn config(&self, db: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self._dir.path().join("socket"))
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect_timeout(Duration::from_secs(5));
        config
    }
}

/// The postmaster child process. Dropping it performs an immediate shutdown so a
/// server can never outlive whatever owns it, even on an early error in `start`.
#[derive(Debug)]
struct Postmaster {
    child: Child,
    /// Set once the child has been waited for; its pid may then be reused, so no more signals.
    reaped: bool,
}

impl Postmaster {
    fn signal(&self, sig: libc::c_int) {
        if self.reaped {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory-safety preconditions; the pid belongs to our
        // own unreaped child, so it cannot have been recycled for another process.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Whether the child has exited (reaping it if so).
    fn exited(&mut self) -> bool {
        if self.reaped {
            return true;
        }
        // An error here means the child is already gone from our point of view.
        self.reaped = !matches!(self.child.try_wait(), Ok(None));
        self.reaped
    }

    fn wait_blocking(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.exited() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    async fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.exited() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    async fn shutdown_fast(mut self) {
        self.signal(libc::SIGINT);
        if !self.wait(STOP_WAIT).await {
            tracing::warn!("postgres sandbox ignored a fast shutdown; killing it");
        }
        // Drop escalates if the server is still running.
    }

    fn kill_now(&mut self) {
        if self.exited() {
            return;
        }
        self.signal(libc::SIGQUIT);
        if !self.wait_blocking(DROP_WAIT) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        self.kill_now();
    }
}

enum StartError {
    /// The server could not bind its port, most likely lost to another process.
    PortTaken(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Where `scripts/setup.sh` installs the servers Debian lacks: `WRAITH_SERVERS`,
/// default `/opt/wraith-servers`.
pub(super) fn servers_root() -> PathBuf {
    std::env::var_os("WRAITH_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/wraith-servers"))
}

/// The PostgreSQL versions `scripts/setup.sh` installs beside Debian's, as
/// (major, `bin` directory), under [`servers_root`].
pub fn other_versions() -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir(servers_root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.strip_prefix("pg")?.parse().ok()?;
            let bin = e.path().join("native").join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found
}

/// Finds a `bin` directory holding `initdb` and `postgres`: `$WRAITH_PG_BIN`, or
/// the newest `/usr/lib/postgresql/<version>/bin`.
pub(super) fn find_pg_bin() -> Result<PathBuf> {
    let has_binaries = |bin: &Path| bin.join("initdb").is_file() && bin.join("postgres").is_file();
    if let Some(bin) = std::env::var_os(PG_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if has_binaries(&bin) {
            return Ok(bin);
        }
        bail!(
            "{PG_BIN_ENV}={} does not contain initdb and postgres; point it at a PostgreSQL \
             bin directory or install the server with `apt-get install -y postgresql`",
            bin.display()
        );
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir(DEBIAN_PG_ROOT) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_version) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_binaries(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries not found in {DEBIAN_PG_ROOT}/<version>/bin \
             (and {PG_BIN_ENV} is not set); install them with `apt-get install -y postgresql`"
        )
    })
}

/// Parses a version directory name such as `15` or `9.6`.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Who the server runs as: the `postgres` user when we are root, since PostgreSQL
/// refuses to run as root; otherwise ourselves (`None`).
fn server_owner() -> Result<Option<Owner>> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    lookup_user(&passwd, "postgres").map(Some).ok_or_else(|| {
        anyhow!(
            "running as root, but there is no `postgres` system user to run the sandbox server \
             as (PostgreSQL refuses to run as root); install the server with \
             `apt-get install -y postgresql`, which creates it, or run as a normal user"
        )
    })
}

async fn run_initdb(
    bin: &Path,
    cwd: &Path,
    data_dir: &Path,
    owner: Option<Owner>,
    fsync: bool,
) -> Result<()> {
    // C.UTF-8 gives UTF-8 character semantics with C collation; fall back to the
    // plain C locale on systems that lack it.
    let mut failures = Vec::new();
    for locale_arg in ["--locale=C.UTF-8", "--no-locale"] {
        let mut cmd = command(&bin.join("initdb"), cwd, owner);
        cmd.arg("-D").arg(data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            locale_arg,
        ]);
        if !fsync {
            cmd.arg("--no-sync");
        }
        let output = tokio::process::Command::from(cmd)
            .output()
            .await
            .with_context(|| format!("running {}", bin.join("initdb").display()))?;
        if output.status.success() {
            return Ok(());
        }
        failures.push(format!(
            "initdb {locale_arg} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
        // initdb cleans up after itself on failure, but make sure the retry starts fresh.
        if data_dir.exists() {
            fs::remove_dir_all(data_dir)
                .with_context(|| format!("removing {}", data_dir.display()))?;
        }
    }
    bail!("{}", failures.join("\n"))
}

/// Writes pg_hba.conf (the socket is always trusted; TCP is trusted, with TLS
/// only when `tls_only`, except for the password roles) and puts the TLS
/// certificate where the server reads it.
fn configure_access(data_dir: &Path, opts: &PgOptions, owner: Option<Owner>) -> Result<()> {
    let tcp = if opts.tls_only || opts.client_certs {
        "hostssl"
    } else {
        "host"
    };
    let auth = if opts.client_certs { "cert" } else { "trust" };
    let mut hba = String::from("local all all trust\n");
    for role in &opts.password_roles {
        hba.push_str(&format!("{tcp} all {role} 127.0.0.1/32 scram-sha-256\n"));
    }
    hba.push_str(&format!("{tcp} all all 127.0.0.1/32 {auth}\n"));
    hba.push_str(&format!("{tcp} replication all 127.0.0.1/32 trust\n"));
    fs::write(data_dir.join("pg_hba.conf"), hba).context("writing pg_hba.conf")?;
    if let Some(tls) = &opts.tls {
        use std::os::unix::fs::PermissionsExt;
        for (from, to) in [
            (&tls.cert, "server.crt"),
            (&tls.key, "server.key"),
            (&tls.ca, "ca.crt"),
        ] {
            let to = data_dir.join(to);
            fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600))?;
            if let Some(owner) = owner {
                chown_tree(&to, owner)?;
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn spawn_postmaster(
    bin: &Path,
    cwd: &Path,
    data_dir: &Path,
    socket_dir: &Path,
    log_path: &Path,
    port: u16,
    owner: Option<Owner>,
    opts: &PgOptions,
) -> Result<Postmaster> {
    // Truncate: each attempt's log should explain that attempt only.
    let log = File::create(log_path).with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log.try_clone()?;

    let on_off = |b: bool| if b { "on" } else { "off" };
    let mut settings: Vec<(String, String)> = vec![
        ("port".into(), port.to_string()),
        ("listen_addresses".into(), "127.0.0.1".into()),
        (
            "unix_socket_directories".into(),
            socket_dir.display().to_string(),
        ),
        ("wal_level".into(), "logical".into()),
        ("max_replication_slots".into(), "10".into()),
        ("max_wal_senders".into(), "10".into()),
        ("max_connections".into(), "100".into()),
        ("fsync".into(), on_off(opts.fsync).into()),
        // Torn pages only matter for crash recovery, which needs fsync anyway.
        ("full_page_writes".into(), on_off(opts.fsync).into()),
        ("logging_collector".into(), "off".into()),
    ];
    if let Some(shared_buffers) = &opts.shared_buffers {
        settings.push(("shared_buffers".into(), shared_buffers.clone()));
    }
    if opts.tls.is_some() {
        settings.push(("ssl".into(), "on".into()));
        settings.push(("ssl_cert_file".into(), "server.crt".into()));
        settings.push(("ssl_key_file".into(), "server.key".into()));
        settings.push(("ssl_ca_file".into(), "ca.crt".into()));
    }
    settings.extend(opts.extra_conf.iter().cloned());

    let mut cmd = command(&bin.join("postgres"), cwd, owner);
    cmd.arg("-D").arg(data_dir);
    for (name, value) in &settings {
        cmd.arg("-c").arg(format!("{name}={value}"));
    }
    cmd.stdout(log).stderr(log_err);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.join("postgres").display()))?;
    Ok(Postmaster {
        child,
        reaped: false,
    })
}

/// Polls until the server accepts a connection; on failure the server is stopped
/// (by dropping it) and the error carries the tail of its log.
async fn wait_ready(
    mut server: Postmaster,
    socket_dir: &Path,
    port: u16,
    log_path: &Path,
) -> Result<Postmaster, StartError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if server.exited() {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            let err = anyhow!(
                "postgres sandbox server exited during startup; end of {}:\n{}",
                log_path.display(),
                tail(&log, LOG_TAIL_LINES)
            );
            let port_taken =
                log.contains("could not bind") || log.contains("Address already in use");
            return Err(if port_taken {
                StartError::PortTaken(err)
            } else {
                StartError::Fatal(err)
            });
        }
        if config.connect(NoTls).await.is_ok() {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            drop(server);
            let log = fs::read_to_string(log_path).unwrap_or_default();
            return Err(StartError::Fatal(anyhow!(
                "postgres sandbox server did not accept connections within {}s; end of {}:\n{}",
                READY_TIMEOUT.as_secs(),
                log_path.display(),
                tail(&log, LOG_TAIL_LINES)
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Encodes a database name for the path of a connection URL.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
