//! MySQL/MariaDB preflight against a sandbox MariaDB: a good table passes with its
//! key; each bad input is refused as bad input with a message that names the fix.

mod common;

use mysql_async::prelude::Queryable;
use wraith::error::exit_code;
use wraith::mysql::conn::connect;
use wraith::mysql::preflight;
use wraith::sandbox::{MyOptions, MyServer, MySqlSandbox};

/// Runs preflight on `table`; on failure returns the message, checking it is bad input.
async fn check(dsn: &str, table: &str) -> Result<Vec<String>, String> {
    let dsn = wraith::dsn::Dsn::parse(dsn).expect("a valid DSN");
    let mut c = connect(&dsn, "test").await.expect("connect");
    match preflight::run(&mut c, "app", table).await {
        Ok((_, t)) => Ok(t.key),
        Err(e) => {
            assert_eq!(exit_code(&e), 2, "not bad input: {e:#}");
            Err(format!("{e:#}"))
        }
    }
}

fn refused(r: Result<Vec<String>, String>, needles: &[&str]) {
    let msg = r.expect_err("refused");
    for n in needles {
        assert!(msg.contains(n), "{n:?} missing from: {msg}");
    }
}

async fn preflight_accepts_good_tables_and_names_the_fix_for_bad_ones(server: MyServer) {
    let db = MySqlSandbox::start_opts(MyOptions {
        server: server.clone(),
        ..MyOptions::default()
    })
    .await
    .expect("start the sandbox");
    let dsn = db.create_database("app").await.unwrap();
    let mut c = db.connect("app").await.unwrap();
    c.query_drop(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         CREATE TABLE u (a int NOT NULL, b varchar(10) NOT NULL, v text, UNIQUE KEY ab (a, b));
         CREATE TABLE nullable_unique (a int, UNIQUE KEY (a));
         CREATE TABLE old_engine (id int PRIMARY KEY) ENGINE = MyISAM;
         CREATE VIEW tv AS SELECT * FROM t;
         CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int,
                             CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id)
                             ON DELETE SET NULL);
         CREATE TABLE audited (id int PRIMARY KEY, n int);
         CREATE TRIGGER audited_bump BEFORE UPDATE ON audited FOR EACH ROW SET NEW.n = OLD.n + 1;",
    )
    .await
    .unwrap();

    assert_eq!(check(&dsn, "t").await, Ok(vec!["id".to_string()]));
    assert_eq!(
        check(&dsn, "u").await,
        Ok(vec!["a".to_string(), "b".to_string()])
    );
    refused(
        check(&dsn, "nullable_unique").await,
        &["no primary key", "ADD PRIMARY KEY"],
    );
    refused(
        check(&dsn, "old_engine").await,
        &["MyISAM", "ENGINE = InnoDB"],
    );
    refused(
        check(&dsn, "missing").await,
        &["app.missing does not exist"],
    );
    refused(check(&dsn, "tv").await, &["is a VIEW"]);
    // InnoDB's own foreign keys change rows without logging them; MySQL 9's
    // SQL-layer ones log them (tests/mysql_dependents.rs follows them).
    if server == MyServer::MariaDb {
        refused(
            check(&dsn, "child").await,
            &[
                "foreign key child_parent_fk (ON DELETE SET NULL",
                "without writing them to the binary log",
                "Drop the key for the migration",
            ],
        );
    } else {
        assert_eq!(check(&dsn, "child").await, Ok(vec!["id".to_string()]));
    }
    // Other tables' keys and triggers move with the swap (tests/mysql_dependents.rs).
    for carried in ["parent", "audited"] {
        assert_eq!(check(&dsn, carried).await, Ok(vec!["id".to_string()]));
    }

    // Binary log settings: a new session sees the global values.
    c.query_drop("SET GLOBAL binlog_format = 'MIXED'")
        .await
        .unwrap();
    refused(
        check(&dsn, "t").await,
        &["binlog_format is MIXED", "SET GLOBAL binlog_format = 'ROW'"],
    );
    c.query_drop("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'MINIMAL'")
        .await
        .unwrap();
    refused(
        check(&dsn, "t").await,
        &[
            "binlog_row_image is MINIMAL",
            "SET GLOBAL binlog_row_image = 'FULL'",
        ],
    );
    c.query_drop("SET GLOBAL binlog_row_image = 'FULL'")
        .await
        .unwrap();

    // A user that may change the table but not read the binary log.
    c.query_drop("CREATE USER 'app'@'127.0.0.1'; GRANT ALL ON app.* TO 'app'@'127.0.0.1';")
        .await
        .unwrap();
    let app = format!("mysql://app@127.0.0.1:{}/app", db.port());
    refused(
        check(&app, "t").await,
        &[
            "lacks privileges",
            "GRANT REPLICATION SLAVE",
            "GRANT REPLICATION CLIENT",
        ],
    );
    // REPLICATION CLIENT is BINLOG MONITOR's older name on MariaDB 10.5+.
    c.query_drop("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'app'@'127.0.0.1'")
        .await
        .unwrap();
    assert_eq!(check(&app, "t").await, Ok(vec!["id".to_string()]));

    // A dry run on a mysql:// DSN prints the plan and creates nothing; an ALTER the
    // server rejects is bad input, and nothing is left behind either.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
        .args([
            "migrate",
            "--dsn",
            &app,
            "--table",
            "t",
            "--alter",
            "MODIFY v varchar(20)",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Plan for app.t") && stdout.contains("Dry run"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RENAME TABLE `app`.`t` TO `app`.`t_wraith_old`"),
        "{stdout}"
    );
    for execute in [false, true] {
        let mut args = vec![
            "migrate",
            "--dsn",
            &app,
            "--table",
            "t",
            "--alter",
            "MODIFY nope int",
        ];
        if execute {
            args.push("--execute");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("the server rejected the ALTER") && stderr.contains("nope"),
            "{stderr}"
        );
    }
    // No way back on MySQL/MariaDB yet: --revertible and `wraith revert` are refused
    // as bad input, nothing created.
    for args in [
        vec![
            "migrate",
            "--dsn",
            &dsn,
            "--table",
            "t",
            "--alter",
            "MODIFY v longtext",
            "--revertible",
            "--execute",
        ],
        vec!["revert", "--dsn", &dsn, "--table", "t", "--execute"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("MySQL/MariaDB"), "{stderr}");
    }
    let tables: Vec<String> = c.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables.len(), 8, "{tables:?}");
    db.stop().await;
}

on_mysql_servers!(preflight_accepts_good_tables_and_names_the_fix_for_bad_ones,);
