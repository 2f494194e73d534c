//! Shape changes and how columns are filled: int -> bigint, json -> jsonb, a
//! rename, an added column with a default, a dropped column, a text -> enum
//! conversion where a `--transform` cleans the data; sequences (SERIAL and
//! identity) keep counting on the new table, also once the old one is dropped.

mod common;

use common::*;
use wraith::engine::migration::Outcome;
use wraith::sandbox::PgOptions;

async fn column_types(c: &tokio_postgres::Client, table: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn types_rename_add_drop_and_transform(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE TABLE shapes (
                id serial PRIMARY KEY,
                small int NOT NULL,
                doc json,
                old_name text,
                gone text,
                feeling text NOT NULL,
                created timestamptz NOT NULL DEFAULT now()
             );
             INSERT INTO shapes (small, doc, old_name, gone, feeling)
             SELECT g, json_build_object('b', g, 'a', 'x'), CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END,
                    'bye', (ARRAY[' Happy', 'SAD ', 'happy', 'sad'])[g % 4 + 1]
             FROM generate_series(1, 3000) g;",
        )
        .await
        .unwrap();
    let alter = "ALTER COLUMN id TYPE bigint, ALTER COLUMN small TYPE bigint, \
                 ALTER COLUMN doc TYPE jsonb USING doc::jsonb, ADD COLUMN added int NOT NULL DEFAULT 7, \
                 DROP COLUMN gone, ALTER COLUMN feeling TYPE mood USING feeling::mood; \
                 ALTER TABLE shapes RENAME COLUMN old_name TO new_name";
    let outcome = migrate(spec(
        &db.dsn,
        "shapes",
        alter,
        &[("feeling", "lower(trim(feeling))::mood")],
        execute(),
    ))
    .await
    .expect("migration succeeds");
    assert!(matches!(outcome, Outcome::Migrated(..)));

    assert_eq!(
        column_types(&db.client, "shapes").await,
        vec![
            ("id".into(), "bigint".into()),
            ("small".into(), "bigint".into()),
            ("doc".into(), "jsonb".into()),
            ("new_name".into(), "text".into()),
            ("feeling".into(), "mood".into()),
            ("created".into(), "timestamp with time zone".into()),
            ("added".into(), "integer".into()),
        ]
    );
    let diff = wraith::bench::workload::diff_count(
        &db.client,
        "SELECT id::bigint, small::bigint, doc::jsonb, old_name, lower(trim(feeling))::mood, created, 7 FROM _shapes_old",
        "SELECT id, small, doc, new_name, feeling, created, added FROM shapes",
    )
    .await
    .unwrap();
    assert_eq!(diff, 0);
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM shapes").await,
        3000
    );

    // The SERIAL sequence now belongs to the new table: dropping the old one keeps it.
    db.client
        .batch_execute("DROP TABLE _shapes_old")
        .await
        .unwrap();
    let id = scalar_i64(
        &db.client,
        "INSERT INTO shapes (small, feeling) VALUES (1, 'sad') RETURNING id",
    )
    .await;
    assert_eq!(id, 3001);
    assert!(leftovers(&db.client).await.is_empty());
}

async fn identity_column_continues_after_the_swap(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client
        .batch_execute(
            "CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
             INSERT INTO ident (v) SELECT 'v' || g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    migrate(spec(
        &db.dsn,
        "ident",
        "ADD COLUMN w int DEFAULT 0",
        &[],
        execute(),
    ))
    .await
    .expect("migration succeeds");
    let id = scalar_i64(
        &db.client,
        "INSERT INTO ident (v) VALUES ('next') RETURNING id::int8",
    )
    .await;
    assert_eq!(id, 501, "identity continues from the old table");
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM ident WHERE w = 0").await,
        501
    );
}

async fn composite_key_and_empty_table(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client
        .batch_execute(
            "CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
             INSERT INTO pairs SELECT g % 50, 'k' || (g / 50), g FROM generate_series(0, 4999) g;
             CREATE TABLE empty (id int PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
    let mut opts = execute();
    opts.initial_chunk_rows = 100;
    migrate(spec(
        &db.dsn,
        "pairs",
        "ALTER COLUMN v TYPE bigint",
        &[],
        opts,
    ))
    .await
    .expect("composite key migration");
    let diff = wraith::bench::workload::diff_count(
        &db.client,
        "SELECT a, b, v::bigint FROM _pairs_old",
        "SELECT a, b, v FROM pairs",
    )
    .await
    .unwrap();
    assert_eq!(diff, 0);
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM pairs").await,
        5000
    );

    migrate(spec(&db.dsn, "empty", "ADD COLUMN w int", &[], execute()))
        .await
        .expect("empty table migration");
    assert!(scalar_bool(&db.client, "SELECT to_regclass('_empty_old') IS NOT NULL").await);
    assert!(leftovers(&db.client).await.is_empty());
}

async fn a_self_reference_added_by_the_alter_points_at_the_new_table(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client
        .batch_execute(
            "CREATE TABLE chain (id int PRIMARY KEY, ref int NOT NULL);
             INSERT INTO chain SELECT g, g - (g - 1) % 4 FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();
    migrate(spec(
        &db.dsn,
        "chain",
        "ADD CONSTRAINT chain_ref_fkey FOREIGN KEY (ref) REFERENCES chain (id) NOT VALID",
        &[],
        execute(),
    ))
    .await
    .expect("migration succeeds");
    assert!(
        scalar_bool(
            &db.client,
            "SELECT confrelid = 'chain'::regclass AND convalidated FROM pg_constraint WHERE conname = 'chain_ref_fkey' \
             AND conrelid = 'chain'::regclass"
        )
        .await,
        "the foreign key references the new table and is validated"
    );
    assert!(
        db.client
            .batch_execute("INSERT INTO chain VALUES (5000, 4999)")
            .await
            .is_err()
    );
    db.client
        .batch_execute("DROP TABLE _chain_old")
        .await
        .expect("nothing depends on the old table");
}

async fn the_alter_can_drop_the_tables_own_foreign_keys(opts: PgOptions) {
    let db = db_with(opts).await;
    db.client
        .batch_execute(
            "CREATE TABLE parent (id int PRIMARY KEY);
             INSERT INTO parent SELECT generate_series(1, 10);
             CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id), other_id int REFERENCES parent (id));
             INSERT INTO child SELECT g, g % 10 + 1, g % 10 + 1 FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    migrate(spec(
        &db.dsn,
        "child",
        "DROP CONSTRAINT child_parent_id_fkey, DROP COLUMN other_id",
        &[],
        execute(),
    ))
    .await
    .expect("migration succeeds");
    let fks = scalar_i64(
        &db.client,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'child'::regclass AND contype = 'f'",
    )
    .await;
    assert_eq!(fks, 0, "both foreign keys are gone with the ALTER");
    assert_eq!(
        scalar_i64(&db.client, "SELECT count(*) FROM child").await,
        500
    );
}

on_postgres_versions!(
    types_rename_add_drop_and_transform,
    identity_column_continues_after_the_swap,
    composite_key_and_empty_table,
    a_self_reference_added_by_the_alter_points_at_the_new_table,
    the_alter_can_drop_the_tables_own_foreign_keys,
);
