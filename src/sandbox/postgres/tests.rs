//! The PostgreSQL sandbox against a real server: it starts, serves, restarts and
//! cleans up after itself.

use super::*;

#[tokio::test]
async fn sandbox_starts_serves_and_cleans_up() {
    let sandbox = PgSandbox::start().await.expect("start sandbox");
    let data_dir = sandbox.data_dir().to_path_buf();
    assert!(data_dir.join("PG_VERSION").is_file());
    assert!(sandbox.log_path().is_file());

    let admin = sandbox.connect("postgres").await.expect("connect");
    let row = admin.query_one("SHOW wal_level", &[]).await.expect("show");
    assert_eq!(row.get::<_, String>(0), "logical");

    let dsn = sandbox
        .create_database("wraith_test")
        .await
        .expect("create db");
    assert_eq!(
        dsn,
        format!(
            "postgres://postgres@127.0.0.1:{}/wraith_test",
            sandbox.port()
        )
    );
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls)
        .await
        .expect("connect via dsn");
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_database(), 40 + 2", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "wraith_test");
    assert_eq!(row.get::<_, i32>(1), 42);

    sandbox.stop().await;
    assert!(!data_dir.exists(), "data dir should be removed by stop");
}

#[test]
fn parses_passwd_and_versions() {
    let passwd =
        "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n";
    let owner = lookup_user(passwd, "postgres").expect("postgres user");
    assert_eq!((owner.uid, owner.gid), (101, 104));
    assert!(lookup_user(passwd, "nobody").is_none());
    assert!(parse_version("9.6") < parse_version("15"));
    assert_eq!(parse_version("main"), None);
    assert_eq!(percent_encode("a b"), "a%20b");
}
