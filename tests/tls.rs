//! TLS on both engines against sandboxes that require it: a whole migration with
//! the strictest mode (certificate and host name checked) through the change
//! stream; a server without TLS, an untrusted CA and a certificate for another
//! name are each refused as bad input naming the fix, with nothing left behind.

mod common;

use common::certs::Certs;
use common::*;
use wraith::sandbox::{MyOptions, MyServer, MySqlSandbox, PgOptions};

/// `wraith migrate --execute` of `t` on `dsn`.
fn migrate_t(dsn: &str, alter: &str) -> std::process::Output {
    let args = migrate_args(dsn, "t", alter, &["--execute"]);
    wraith(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Row count and a sum over `t`: unchanged means untouched.
async fn t_sum(c: &mut mysql_async::Conn) -> (i64, i64) {
    use mysql_async::prelude::Queryable;
    c.query_first("SELECT COUNT(*), CAST(SUM(id * 7 + v) AS SIGNED) FROM t")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_verify_full_migrates_and_bad_tls_is_refused() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let db = db_with(PgOptions {
        tls: Some(certs.server.clone()),
        tls_only: true,
        ..PgOptions::default()
    })
    .await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT g, g FROM generate_series(1, 5000) g;",
        )
        .await
        .unwrap();
    let before = table_fingerprint(&db.client, "t").await;

    // Plain text is refused by the server; an unchecked or untrusted certificate by wraith.
    let plain = format!("{}?sslmode=disable", db.dsn);
    let out = migrate_t(&plain, "ALTER COLUMN v TYPE bigint");
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let other = Certs::new(&["localhost", "127.0.0.1"]);
    let wrong_ca = format!("{}?sslmode=verify-full&sslrootcert={}", db.dsn, other.ca());
    refused(
        &migrate_t(&wrong_ca, "ALTER COLUMN v TYPE bigint"),
        "not signed by a trusted root",
    );
    let no_root = format!("{}?sslmode=verify-full", db.dsn);
    refused(
        &migrate_t(&no_root, "ALTER COLUMN v TYPE bigint"),
        "sslrootcert=FILE",
    );
    assert!(leftovers(&db.client).await.is_empty());
    assert_eq!(table_fingerprint(&db.client, "t").await, before);

    let strict = format!("{}?sslmode=verify-full&sslrootcert={}", db.dsn, certs.ca());
    wraith_ok(&[
        "migrate",
        "--dsn",
        &strict,
        "--table",
        "t",
        "--alter",
        "ALTER COLUMN v TYPE bigint",
        "--execute",
    ]);
    let ty: String = db
        .client
        .query_one("SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'v'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "bigint");
    assert_eq!(table_fingerprint(&db.client, "t").await, before);
    assert!(leftovers(&db.client).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_names_and_missing_tls_are_refused() {
    // A certificate for another name: verify-full refuses, verify-ca accepts.
    let certs = Certs::new(&["db.example"]);
    let db = db_with(PgOptions {
        tls: Some(certs.server.clone()),
        ..PgOptions::default()
    })
    .await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 1)",
        )
        .await
        .unwrap();
    let full = format!("{}?sslmode=verify-full&sslrootcert={}", db.dsn, certs.ca());
    refused(
        &migrate_t(&full, "ADD COLUMN w int"),
        "does not name 127.0.0.1",
    );
    let ca_only = format!("{}?sslmode=verify-ca&sslrootcert={}", db.dsn, certs.ca());
    let out = migrate_t(&ca_only, "ADD COLUMN w int");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // TLS required of a server that has none.
    let plain = db_with(PgOptions::default()).await;
    let require = format!("{}?sslmode=require", plain.dsn);
    refused(
        &wraith(&[
            "migrate",
            "--dsn",
            &require,
            "--table",
            "t",
            "--alter",
            "ADD COLUMN w int",
        ]),
        "offers none",
    );
    assert!(leftovers(&plain.client).await.is_empty());
}

async fn mysql_verify_identity_migrates_and_bad_tls_is_refused(kind: MyServer) {
    use mysql_async::prelude::Queryable;
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let server = MySqlSandbox::start_opts(MyOptions {
        server: kind.clone(),
        tls: Some(certs.server.clone()),
        tls_only: true,
        ..MyOptions::default()
    })
    .await
    .unwrap();
    let dsn = server.create_database("app").await.unwrap();
    let mut c = server.connect("app").await.unwrap();
    c.query_drop(
        format!("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t SELECT seq, seq FROM {}", seq(5000)),
    )
    .await
    .unwrap();
    let before = t_sum(&mut c).await;

    let disabled = format!("{dsn}?ssl-mode=DISABLED");
    let out = migrate_t(&disabled, "MODIFY v bigint NOT NULL");
    refused(&out, "ssl-mode=REQUIRED");
    let other = Certs::new(&["localhost", "127.0.0.1"]);
    let wrong_ca = format!("{dsn}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", other.ca());
    refused(
        &migrate_t(&wrong_ca, "MODIFY v bigint NOT NULL"),
        "not signed by a trusted root",
    );
    refused(
        &migrate_t(
            &format!("{dsn}?require_ssl=true"),
            "MODIFY v bigint NOT NULL",
        ),
        "ssl-mode=REQUIRED",
    );
    assert_eq!(my_tables(&mut c).await, vec!["t".to_string()]);

    let strict = format!("{dsn}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", certs.ca());
    let out = migrate_t(&strict, "MODIFY v bigint NOT NULL");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let ty: String = c
        .query_first("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 't' AND COLUMN_NAME = 'v'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ty, "bigint");
    assert_eq!(t_sum(&mut c).await, before);
    assert_eq!(
        my_tables(&mut c).await,
        vec!["t".to_string(), "t_wraith_old".to_string()]
    );

    // A user that must show a client certificate the CA signed.
    c.query_drop(
        "DROP TABLE t_wraith_old;
         CREATE USER 'x509'@'127.0.0.1' REQUIRE X509; GRANT ALL ON *.* TO 'x509'@'127.0.0.1'",
    )
    .await
    .unwrap();
    let as_x509 = format!(
        "{}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        dsn.replace("root@", "x509@"),
        certs.ca()
    );
    let out = migrate_t(&as_x509, "MODIFY v int NOT NULL");
    assert_eq!(out.status.code(), Some(2), "no certificate: {}", show(&out));
    let (cert, key) = certs.client("x509");
    let out = migrate_t(
        &format!("{as_x509}&ssl-cert={cert}&ssl-key={key}"),
        "MODIFY v int NOT NULL",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "with its certificate: {}",
        show(&out)
    );

    // TLS required of a server that has none.
    let (_plain, plain_dsn, _) = my_sandbox_on(kind).await;
    refused(
        &wraith(&[
            "migrate",
            "--dsn",
            &format!("{plain_dsn}?ssl-mode=REQUIRED"),
            "--table",
            "t",
            "--alter",
            "MODIFY v bigint",
        ]),
        "offers none",
    );
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_client_certificates() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let db = db_with(PgOptions {
        tls: Some(certs.server.clone()),
        client_certs: true,
        ..PgOptions::default()
    })
    .await;
    db.client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 1)",
        )
        .await
        .unwrap();
    let base = format!("{}?sslmode=verify-full&sslrootcert={}", db.dsn, certs.ca());
    refused(&migrate_t(&base, "ADD COLUMN w int"), "sslcert=FILE");
    let (cert, key) = certs.client("postgres");
    let with_cert = format!("{base}&sslcert={cert}&sslkey={key}");
    let out = migrate_t(&with_cert, "ADD COLUMN w int");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(leftovers(&db.client).await.is_empty());
}

/// Bad input (exit 2) whose message says `needle`.
fn refused(out: &std::process::Output, needle: &str) {
    assert_refused(out, "", &[needle]);
}

on_mysql_servers!(mysql_verify_identity_migrates_and_bad_tls_is_refused,);
