//! Managed-database preflight, on real servers dressed as one: a PostgreSQL with
//! the settings RDS or Cloud SQL add names that service's fix for logical
//! decoding and for the replication privilege; a MySQL/MariaDB server that keeps
//! binary logs for less than the run may take refuses a `--resume` run and warns
//! any other. Each refusal is bad input and creates nothing.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::sandbox::MyServer;
use wraith::sandbox::PgOptions;

fn conf(pairs: &[(&str, &str)]) -> PgOptions {
    PgOptions {
        extra_conf: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PgOptions::default()
    }
}

async fn dry_run(dsn: &str) -> std::process::Output {
    wraith_async(migrate_args(dsn, "t", "ADD COLUMN w int", &[])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_names_the_managed_services_fix() {
    for (setting, needle) in [
        (
            "rds.logical_replication",
            "rds.logical_replication = 1 in the DB parameter group",
        ),
        ("cloudsql.logical_decoding", "cloudsql.logical_decoding=on"),
        (
            "azure.extensions",
            "az postgres flexible-server parameter set",
        ),
    ] {
        let db = db_with(conf(&[("wal_level", "replica"), (setting, "off")])).await;
        db.client
            .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
            .await
            .unwrap();
        refused(&dry_run(&db.dsn).await, needle);
        assert!(leftovers(&db.client).await.is_empty());
    }

    // On RDS replication comes from the rds_replication role.
    let db = db_with(conf(&[("rds.extensions", "pg_stat_statements")])).await;
    db.client
        .batch_execute(
            "CREATE ROLE mig LOGIN; CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t OWNER TO mig;
             GRANT CREATE ON SCHEMA public TO mig; GRANT CREATE ON DATABASE app TO mig;",
        )
        .await
        .unwrap();
    let mig = db.dsn.replace("postgres@", "mig@");
    refused(&dry_run(&mig).await, "GRANT rds_replication TO mig");
    db.client
        .batch_execute("CREATE ROLE rds_replication; GRANT rds_replication TO mig")
        .await
        .unwrap();
    let out = dry_run(&mig).await;
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rds_replication"),
        "{}",
        show(&out)
    );
}

async fn mysql_binlog_retention_shorter_than_the_run(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server.clone()).await;
    c.query_drop(format!(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT seq, seq FROM {};
         SET GLOBAL binlog_expire_logs_seconds = 30",
        seq(1000)
    ))
    .await
    .unwrap();
    let out = dry_run(&dsn).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("binlog_expire_logs_seconds = 30"),
        "the plan warns: {}",
        show(&out)
    );
    let args = migrate_args(&dsn, "t", "ADD COLUMN w int", &["--execute", "--resume"]);
    let out = wraith_async(args.clone()).await;
    refused(&out, "binlog_expire_logs_seconds = 30");
    assert_eq!(my_tables(&mut c).await, vec!["t".to_string()]);
    // RDS: its configuration procedure, with the retention unset.
    c.query_drop(
        "SET GLOBAL binlog_expire_logs_seconds = 0;
         CREATE PROCEDURE mysql.rds_show_configuration()
           SELECT 'binlog retention hours' AS name, NULL AS value, 'hours' AS description",
    )
    .await
    .unwrap();
    let out = wraith_async(args).await;
    refused(&out, "rds_set_configuration('binlog retention hours', 24)");
    c.query_drop("DROP PROCEDURE mysql.rds_show_configuration")
        .await
        .unwrap();
    drop(c);
    db.stop().await;
}

/// Bad input (exit 2) whose message says `needle`.
fn refused(out: &std::process::Output, needle: &str) {
    assert_refused(out, "", &[needle]);
}

on_mysql_servers!(mysql_binlog_retention_shorter_than_the_run,);
