//! What differs between PostgreSQL 15 and 16–18 (which `scripts/setup.sh`
//! installs): the versions are there; generated columns, stored on every version
//! and virtual on 18 (where a bare `GENERATED ALWAYS AS` means virtual), keep
//! their kind and values through a run under writes; another tool's failover
//! slot (17+) is neither mistaken for wraith's nor touched.

mod common;

use common::*;
use wraith::engine::migration::Outcome;
use wraith::sandbox::{PgOptions, other_versions};

#[test]
fn setup_installed_postgres_16_to_18() {
    let majors: Vec<u32> = other_versions().iter().map(|(m, _)| *m).collect();
    assert_eq!(
        majors,
        vec![16, 17, 18],
        "scripts/setup.sh installs PostgreSQL 16, 17 and 18 under /opt/wraith-servers"
    );
}

async fn major(db: &Db) -> i64 {
    scalar_i64(
        &db.client,
        "SELECT current_setting('server_version_num')::bigint / 10000",
    )
    .await
}

/// Each generated column of `table` as (name, attgenerated).
async fn generated(db: &Db, table: &str) -> Vec<(String, String)> {
    db.client
        .query(
            "SELECT attname::text, attgenerated::text FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attgenerated <> '' ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn generated_columns_keep_their_kind_and_values(opts: PgOptions) {
    let db = db_with(opts).await;
    let virtual_columns = major(&db).await >= 18;
    let extra = if virtual_columns {
        ", tripled bigint GENERATED ALWAYS AS (v * 3) VIRTUAL"
    } else {
        ""
    };
    db.client
        .batch_execute(&format!(
            "CREATE TABLE g (id int PRIMARY KEY, v int NOT NULL,
                             doubled bigint GENERATED ALWAYS AS (v * 2) STORED{extra});
             INSERT INTO g (id, v) SELECT i, i FROM generate_series(1, 20000) i;"
        ))
        .await
        .unwrap();
    let before = generated(&db, "g").await;
    let writer = {
        let c = db.pg.connect("app").await.unwrap();
        tokio::spawn(async move {
            for i in 1..=400 {
                let sql = format!(
                    "UPDATE g SET v = v + 1 WHERE id = {}; \
                     INSERT INTO g (id, v) VALUES ({}, {i}) ON CONFLICT DO NOTHING",
                    i * 37 % 20000 + 1,
                    100_000 + i
                );
                c.batch_execute(&sql).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let mut options = execute();
    options.max_rows_per_sec = Some(20_000);
    let outcome = migrate(spec(
        &db.dsn,
        "g",
        "ALTER COLUMN id TYPE bigint, ADD COLUMN note text",
        &[],
        options,
    ))
    .await
    .expect("migration succeeds");
    writer.await.unwrap();
    assert!(matches!(outcome, Outcome::Migrated(..)), "{outcome:?}");
    assert_eq!(
        generated(&db, "g").await,
        before,
        "the generated columns keep their kind"
    );
    let wrong_stored =
        scalar_i64(&db.client, "SELECT count(*) FROM g WHERE doubled <> v * 2").await;
    assert_eq!(wrong_stored, 0, "stored values are right");
    if virtual_columns {
        let wrong = scalar_i64(&db.client, "SELECT count(*) FROM g WHERE tripled <> v * 3").await;
        assert_eq!(wrong, 0, "virtual values are right");
    }
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM g").await,
        20_400
    );
    assert!(leftovers(&db.client).await.is_empty());
}

/// PostgreSQL 17 slots may be failover slots; one that is not wraith's stays.
async fn another_tools_failover_slot_is_left_alone(opts: PgOptions) {
    let db = db_with(opts).await;
    let failover = major(&db).await >= 17;
    let create = if failover {
        "SELECT pg_create_logical_replication_slot('cdc_tool', 'pgoutput', false, false, true)"
    } else {
        "SELECT pg_create_logical_replication_slot('cdc_tool', 'pgoutput')"
    };
    db.client
        .batch_execute(&format!(
            "{create};
             CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO t SELECT i, i FROM generate_series(1, 2000) i;"
        ))
        .await
        .unwrap();
    let outcome = migrate(spec(
        &db.dsn,
        "t",
        "ALTER COLUMN v TYPE bigint",
        &[],
        execute(),
    ))
    .await
    .expect("migration succeeds");
    assert!(matches!(outcome, Outcome::Migrated(..)), "{outcome:?}");
    let slots: Vec<String> = db
        .client
        .query("SELECT slot_name::text FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        slots,
        vec!["cdc_tool"],
        "only the other tool's slot remains"
    );
    if failover {
        assert!(
            scalar_bool(
                &db.client,
                "SELECT failover FROM pg_replication_slots WHERE slot_name = 'cdc_tool'"
            )
            .await
        );
    }
}

on_postgres_versions!(
    generated_columns_keep_their_kind_and_values,
    another_tools_failover_slot_is_left_alone
);
