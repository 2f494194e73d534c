//! Passwords the way DBAs keep them, on real servers whose role must give one:
//! PostgreSQL's PGPASSWORD and password file (its 0600 rule), MySQL's MYSQL_PWD
//! and option file. A wrong one is bad input naming the user; the password
//! never appears in anything wraith prints, and one in --dsn is warned about.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::os::unix::fs::PermissionsExt;
use wraith::sandbox::MyServer;
use wraith::sandbox::PgOptions;

const PASSWORD: &str = "Tr0ub4dor-and-3";

/// Runs wraith with `vars` set and the rest of the environment cleared of
/// credentials, so only what the test gives counts.
async fn run(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let args = args.iter().map(|s| s.to_string()).collect();
    let mut vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !vars.iter().any(|(k, _)| k == "HOME") {
        vars.push(("HOME".into(), "/nonexistent".into()));
    }
    wraith_async_env(args, vars).await
}

fn never_shows_the_password(out: &std::process::Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passwords_from_the_environment_and_the_password_file() {
    let db = db_with(PgOptions {
        password_roles: vec!["mig".into()],
        ..PgOptions::default()
    })
    .await;
    db.client
        .batch_execute(&format!(
            "CREATE ROLE mig LOGIN SUPERUSER PASSWORD '{PASSWORD}';
             CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT g, g FROM generate_series(1, 2000) g;"
        ))
        .await
        .unwrap();
    let port = db.pg.port().to_string();
    let dsn = format!("postgres://mig@127.0.0.1:{port}/app");
    let migrate = |alter: &str, dsn: &str| migrate_args(dsn, "t", alter, &["--execute", "--json"]);

    // No password anywhere: refused, naming the user and where passwords come from.
    let args = migrate("ALTER COLUMN v TYPE bigint", &dsn);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mig") && stderr.contains("PGPASSWORD"),
        "{stderr}"
    );

    // A wrong one: refused naming the user, never the password tried.
    let out = run(&args, &[("PGPASSWORD", "not-the-password")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused user mig"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // PGPASSWORD; a hook gets the migration's facts, not the password.
    let hook_dir = tempfile::tempdir().unwrap();
    let env_file = hook_dir.path().join("env");
    let hook = format!("env > '{}'", env_file.display());
    let with_hook: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--hook-success", hook.as_str()])
        .collect();
    let out = run(&with_hook, &[("PGPASSWORD", PASSWORD)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    never_shows_the_password(&out);
    let hook_env = std::fs::read_to_string(&env_file).expect("the hook ran");
    assert!(hook_env.contains("WRAITH_TABLE=t"), "{hook_env}");
    assert!(!hook_env.contains(PASSWORD), "the hook saw the password");
    db.client.batch_execute("DROP TABLE _t_old").await.unwrap();

    // A password file, only when others cannot read it.
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{port}:app:mig:{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = migrate("ALTER COLUMN v TYPE numeric", &dsn);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let file = pgpass.display().to_string();
    let out = run(&args, &[("PGPASSFILE", &file)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 0600"),
        "{}",
        show(&out)
    );
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&args, &[("PGPASSFILE", &file)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    never_shows_the_password(&out);
    db.client.batch_execute("DROP TABLE _t_old").await.unwrap();

    // In --dsn it works, with a warning that `ps` shows it; still never printed.
    let inline = format!("postgres://mig:{PASSWORD}@127.0.0.1:{port}/app");
    let args = migrate("ALTER COLUMN v TYPE bigint", &inline);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`ps` shows"),
        "{}",
        show(&out)
    );
    never_shows_the_password(&out);
    assert!(leftovers(&db.client).await.is_empty());

    // A libpq key=value string over the unix socket (trusted there).
    db.client.batch_execute("DROP TABLE _t_old").await.unwrap();
    let socket = format!(
        "host={} port={port} user=postgres dbname=app",
        db.pg.socket_dir().display()
    );
    let out = run(
        &[
            "migrate",
            "--dsn",
            &socket,
            "--table",
            "t",
            "--alter",
            "ADD COLUMN w int",
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "over the socket: {}",
        show(&out)
    );

    // --ask-pass: typed at a terminal (a pty from `script`) once the prompt shows.
    let command = format!(
        "{} migrate --dsn '{dsn}' --table t --alter 'ALTER COLUMN v TYPE numeric' --execute --ask-pass",
        env!("CARGO_BIN_EXE_wraith")
    );
    let out = tokio::task::spawn_blocking(move || typed_at_the_prompt(&command))
        .await
        .unwrap();
    assert!(out.contains("Password for mig@127.0.0.1"), "{out}");
    assert!(out.contains("Migration done"), "{out}");
    assert!(
        !out.contains(PASSWORD),
        "the password was echoed or printed:\n{out}"
    );
}

/// Runs `command` on a pseudo-terminal, types the password once the prompt is
/// shown, and returns everything the terminal showed.
fn typed_at_the_prompt(command: &str) -> String {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("HOME", "/nonexistent")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Password for") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // A person types after the prompt, by which time echo is off: so do we.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{PASSWORD}").unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    drop(stdin);
    child.wait().unwrap();
    String::from_utf8_lossy(&seen).into_owned()
}

async fn mysql_passwords_from_the_environment_and_an_option_file(server: MyServer) {
    let (server, _, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE USER 'mig'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL ON *.* TO 'mig'@'127.0.0.1';
         CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT seq, seq FROM {};",
        seq(2000)
    ))
    .await
    .unwrap();
    let dsn = format!("mysql://mig@127.0.0.1:{}/app", server.port());
    let args = |alter: &str| migrate_args(&dsn, "t", alter, &["--execute", "--json"]);

    let a = args("MODIFY v bigint NOT NULL");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = run(&a, &[("MYSQL_PWD", "not-it")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mig") && stderr.contains("MYSQL_PWD"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-it"), "{stderr}");
    let out = run(&a, &[("MYSQL_PWD", PASSWORD)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    never_shows_the_password(&out);
    c.query_drop("DROP TABLE t_wraith_old").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cnf = dir.path().join("my.cnf");
    std::fs::write(&cnf, format!("[client]\npassword=\"{PASSWORD}\"\n")).unwrap();
    let mut a = args("MODIFY v int NOT NULL");
    a.extend(["--defaults-file".to_string(), cnf.display().to_string()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = run(&a, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    never_shows_the_password(&out);

    // ~/.my.cnf when no --defaults-file is given.
    c.query_drop("DROP TABLE t_wraith_old").await.unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".my.cnf"),
        format!("[client]\npassword={PASSWORD}\n"),
    )
    .unwrap();
    let a = args("MODIFY v bigint NOT NULL");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let h = home.path().display().to_string();
    let out = run(&a, &[("HOME", &h)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    never_shows_the_password(&out);

    // Without SUPER: the database's privileges and the binary log's are enough.
    c.query_drop(format!(
        "DROP TABLE t_wraith_old;
         CREATE USER 'lim'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL ON app.* TO 'lim'@'127.0.0.1';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'lim'@'127.0.0.1';"
    ))
    .await
    .unwrap();
    let lim = format!("mysql://lim@127.0.0.1:{}/app", server.port());
    let a = [
        "migrate",
        "--dsn",
        &lim,
        "--table",
        "t",
        "--alter",
        "MODIFY v bigint NULL",
        "--execute",
    ];
    let out = run(&a, &[("MYSQL_PWD", PASSWORD)]).await;
    assert_eq!(out.status.code(), Some(0), "without SUPER: {}", show(&out));

    // Over the unix socket, logs as JSON: the password shows nowhere.
    c.query_drop(format!(
        "DROP TABLE t_wraith_old;
         CREATE USER 'mig'@'localhost' IDENTIFIED BY '{PASSWORD}';
         GRANT ALL ON *.* TO 'mig'@'localhost';"
    ))
    .await
    .unwrap();
    let socket = format!(
        "mysql://mig@localhost/app?socket={}",
        server.socket_path().display()
    );
    let a = [
        "--log-format",
        "json",
        "migrate",
        "--dsn",
        &socket,
        "--table",
        "t",
        "--alter",
        "MODIFY v int NOT NULL",
        "--execute",
        "--json",
    ];
    let out = run(&a, &[("MYSQL_PWD", PASSWORD)]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "over the socket: {}",
        show(&out)
    );
    never_shows_the_password(&out);

    // An option file that cannot be read is bad input naming it.
    let mut a = args("MODIFY v bigint NOT NULL");
    a.extend([
        "--defaults-file".to_string(),
        "/nonexistent/my.cnf".to_string(),
    ]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = run(&a, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/my.cnf"));
    assert_eq!(
        my_tables(&mut c).await,
        vec!["t".to_string(), "t_wraith_old".to_string()]
    );
    drop(c);
    server.stop().await;
}

on_mysql_servers!(mysql_passwords_from_the_environment_and_an_option_file,);
