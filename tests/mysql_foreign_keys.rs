//! Foreign keys from the migrated table to others. On MySQL they move to the new
//! table under their own names within the cutover's lock, are enforced there and
//! gone from the old table, while a workload mirrored in the same transactions
//! adds and removes parents and children throughout (a parent delete never meets
//! a stale child row). On MariaDB, which renames in a second session, they are
//! refused. Keys with CASCADE / SET NULL actions and shapes that cannot hold a
//! key are refused in the dry run, with nothing created.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::Engine;
use wraith::engine::migration::Outcome;
use wraith::sandbox::MyServer;

const ORDERS: i64 = 8_000;

/// Adds a customer with an order, and removes an order and then its customer
/// when it was the last one: parents and children come and go while the shadow
/// has no keys. A deadlock with wraith's locking reads (InnoDB's answer to two
/// sessions locking rows in different orders) is retried, as an application
/// does; any other error fails the test. Returns the deadlocks retried.
async fn writer(mut c: mysql_async::Conn, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> u64 {
    let mut i = 0i64;
    let mut deadlocks = 0;
    while !stop.load(Relaxed) {
        i += 1;
        loop {
            match one_write(&mut c, i).await {
                Ok(()) => break,
                Err(mysql_async::Error::Server(e)) if e.code == 1213 => deadlocks += 1,
                Err(e) => panic!("the workload failed: {e}"),
            }
        }
        done.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    deadlocks
}

async fn one_write(c: &mut mysql_async::Conn, i: i64) -> Result<(), mysql_async::Error> {
    let mut tx = c.start_transaction(mysql_async::TxOpts::default()).await?;
    let (customer, order) = (10_000 + i, 100_000 + i);
    let old = (i * 7919) % ORDERS + 1;
    for t in ["orders", "orders_mirror"] {
        tx.exec_drop(format!("UPDATE {t} SET note = 'seen' WHERE id = ?"), (old,))
            .await?;
    }
    if i % 2 == 0 {
        // The previous order goes, then its customer, which has no other.
        for t in ["orders", "orders_mirror"] {
            tx.exec_drop(format!("DELETE FROM {t} WHERE id = ?"), (order - 1,))
                .await?;
        }
        tx.exec_drop("DELETE FROM customers WHERE id = ?", (customer - 1,))
            .await?;
    }
    tx.exec_drop("INSERT INTO customers VALUES (?)", (customer,))
        .await?;
    for t in ["orders", "orders_mirror"] {
        tx.exec_drop(
            format!("INSERT INTO {t} VALUES (?, ?, 'new')"),
            (order, customer),
        )
        .await?;
    }
    tx.commit().await
}

async fn foreign_keys_of(c: &mut mysql_async::Conn, table: &str) -> Vec<(String, String)> {
    c.exec(
        "SELECT CONSTRAINT_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = 'app' AND TABLE_NAME = ? ORDER BY 1",
        (table,),
    )
    .await
    .unwrap()
}

async fn child_keys_move_to_the_new_table(server: MyServer) {
    let mariadb = server == MyServer::MariaDb;
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    c.query_drop(format!(
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT seq FROM {};
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, note varchar(20),
                              CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id));
         INSERT INTO orders SELECT seq, 1 + seq % 500, 'old' FROM {};
         CREATE TABLE orders_mirror (id int PRIMARY KEY, customer_id int NOT NULL, note varchar(200));
         INSERT INTO orders_mirror SELECT * FROM orders;",
        seq(500),
        seq(ORDERS)
    ))
    .await
    .unwrap();

    let alter = "MODIFY note varchar(200)";
    // MariaDB renames in a second session: the keys could not move under the lock.
    if mariadb {
        let out = wraith_async(migrate_args(&dsn, "orders", alter, &[])).await;
        assert_refused(
            &out,
            "MariaDB",
            &[
                "orders_customer",
                "carries them on MySQL only",
                "Drop them for the migration",
            ],
        );
        assert_eq!(
            my_tables(&mut c).await,
            ["customers", "orders", "orders_mirror"]
        );
        db.stop().await;
        return;
    }
    // The dry run says where the key goes.
    let out = wraith_async(migrate_args(
        &dsn,
        "orders",
        "MODIFY note varchar(200)",
        &[],
    ))
    .await;
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("`app`.`customers` READ")
            && text.contains("under the same lock the foreign keys move to the new table")
            && text.contains("ADD CONSTRAINT `orders_customer` FOREIGN KEY (`customer_id`)"),
        "{text}"
    );
    assert_eq!(
        my_tables(&mut c).await,
        ["customers", "orders", "orders_mirror"]
    );

    let load = Writer::start(db.connect("app").await.unwrap(), writer);
    let mut opts = execute_on(Engine::MySql);
    opts.max_rows_per_sec = Some(4_000);
    opts.initial_chunk_rows = 200;
    let outcome = migrate(spec(&dsn, "orders", "MODIFY note varchar(200)", &[], opts)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (deadlocks, done) = load.stop().await;
    eprintln!("deadlocks retried by the workload: {deadlocks}");
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert!(done > 100, "the workload ran during the run");
    let diff =
        my_mirror_differences(&mut c, "orders", "orders_mirror", "id, customer_id, note").await;
    assert_eq!(diff, 0, "orders equals its mirror");
    assert_eq!(
        foreign_keys_of(&mut c, "orders").await,
        [("orders_customer".to_string(), "customers".to_string())],
        "the new table has the key under its name"
    );
    assert!(
        foreign_keys_of(&mut c, "orders_wraith_old")
            .await
            .is_empty(),
        "the old table has none left"
    );
    // Enforced on the new table, both ways.
    let orphan = c
        .query_drop("INSERT INTO orders VALUES (900000, 999999, 'x')")
        .await;
    assert!(
        format!("{orphan:?}").contains("1452"),
        "an orphan is refused: {orphan:?}"
    );
    let parent = c.query_drop("DELETE FROM customers WHERE id = 2").await;
    assert!(
        format!("{parent:?}").contains("1451"),
        "a referenced parent stays: {parent:?}"
    );
    db.stop().await;
}

async fn keys_wraith_cannot_carry_are_refused(server: MyServer) {
    // MariaDB refuses every key to another table, before it tries the shape.
    let cannot_keep = if server == MyServer::MariaDb {
        "carries them on MySQL only"
    } else {
        "cannot keep foreign key orders_customer"
    };
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    c.query_drop(format!(
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT seq FROM {};
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL,
                              CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id));
         INSERT INTO orders SELECT seq, seq FROM {};
         CREATE TABLE shipments (id int PRIMARY KEY, customer_id int,
                             CONSTRAINT shipments_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
                             ON DELETE CASCADE);",
        seq(100),
        seq(100)
    ))
    .await
    .unwrap();
    let cases = [
        (
            "shipments",
            "ADD COLUMN x int",
            &[
                "foreign key shipments_customer (ON DELETE CASCADE",
                "binary log",
            ][..],
        ),
        (
            "orders",
            "MODIFY customer_id bigint NOT NULL",
            &[cannot_keep, "orders_customer"][..],
        ),
        ("orders", "DROP COLUMN customer_id", &[cannot_keep][..]),
    ];
    for (table, alter, needles) in cases {
        for extra in [&[][..], &["--execute"][..]] {
            let out = wraith_async(migrate_args(&dsn, table, alter, extra)).await;
            assert_refused(&out, &format!("{table}: {alter} {extra:?}"), needles);
            assert_eq!(
                my_tables(&mut c).await,
                ["customers", "orders", "shipments"],
                "nothing was created"
            );
        }
    }
    db.stop().await;
}

on_mysql_servers!(
    child_keys_move_to_the_new_table,
    keys_wraith_cannot_carry_are_refused
);
