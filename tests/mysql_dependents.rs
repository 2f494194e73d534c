//! What moves with the table on MySQL/MariaDB: its triggers, its own foreign keys (a
//! reference to itself included) and other tables' keys that reference it. A
//! fixture like PostgreSQL's dependents test is migrated while a workload,
//! mirrored in the same transactions, adds and removes parents, children and
//! cascading grandchildren; afterwards every key and trigger is on the new table
//! under its name and enforced, the audit table holds exactly the application's
//! rows, and the old table holds nothing. What the new shape cannot hold is
//! refused in the dry run, and wraith killed at each cutover point leaves one
//! complete table (killed between the RENAME and the moves, `wraith cleanup`
//! completes the new one).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;
use wraith::Engine;
use wraith::engine::faults::{self, Point};
use wraith::engine::migration::Outcome;
use wraith::sandbox::MyServer;

const ORDERS: i64 = 6_000;
const ALTER: &str = "MODIFY note varchar(200)";
const TABLES: [&str; 6] = [
    "customers",
    "order_items",
    "orders",
    "orders_audit",
    "orders_mirror",
    "orders_view",
];

/// customers <- orders (and orders <- orders) <- order_items ON DELETE CASCADE;
/// orders has an audit trigger for inserts and deletes, a BEFORE UPDATE trigger
/// that counts updates, and a view; orders_mirror is what orders must equal.
fn fixture() -> String {
    format!(
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT seq FROM {customers};
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, parent_id int NULL,
                              note varchar(20), touched int NOT NULL DEFAULT 0,
                              CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
                              CONSTRAINT orders_parent FOREIGN KEY (parent_id) REFERENCES orders (id));
         CREATE TABLE order_items (id int AUTO_INCREMENT PRIMARY KEY, order_id int NOT NULL,
                              CONSTRAINT items_order FOREIGN KEY (order_id) REFERENCES orders (id)
                              ON DELETE CASCADE);
         CREATE TABLE orders_audit (n int AUTO_INCREMENT PRIMARY KEY, order_id int, what varchar(10));
         CREATE TRIGGER orders_ai AFTER INSERT ON orders FOR EACH ROW
             INSERT INTO orders_audit (order_id, what) VALUES (NEW.id, 'insert');
         CREATE TRIGGER orders_ad AFTER DELETE ON orders FOR EACH ROW
             INSERT INTO orders_audit (order_id, what) VALUES (OLD.id, 'delete');
         CREATE TRIGGER orders_bu BEFORE UPDATE ON orders FOR EACH ROW
             SET NEW.touched = OLD.touched + 1;
         CREATE TRIGGER orders_bu2 BEFORE UPDATE ON orders FOR EACH ROW FOLLOWS orders_bu
             SET NEW.touched = NEW.touched * 1;
         INSERT INTO orders SELECT seq, 1 + seq % 500, IF(seq > 10, 1 + seq % 10, NULL), 'old', 0
             FROM {orders};
         INSERT INTO order_items (order_id) SELECT seq FROM {orders};
         CREATE VIEW orders_view AS SELECT id, note FROM orders;
         CREATE TABLE orders_mirror (id int PRIMARY KEY, customer_id int NOT NULL, parent_id int,
                                     note varchar(200), touched int NOT NULL);
         INSERT INTO orders_mirror SELECT * FROM orders;
         DELETE FROM orders_audit;",
        customers = seq(500),
        orders = seq(ORDERS)
    )
}

/// What the workload did: inserts and deletes of orders (the audit trigger's
/// rows), and deadlocks and prepared-statement replans it retried.
#[derive(Debug, Default)]
struct Done {
    inserts: u64,
    deletes: u64,
    deadlocks: u64,
    replans: u64,
}

/// Adds a customer with an order (a child of a stable order) and an item, updates
/// an old order, and removes the previous order (its item cascades) and then its
/// customer. A deadlock with wraith's locking reads is retried, as an application
/// does, and so is MySQL's ER_NEED_REPREPARE (1615): a prepared statement whose
/// table was renamed under it while the server re-prepared it, which a plain
/// `RENAME TABLE` causes too. Any other error fails the test.
async fn writer(mut c: mysql_async::Conn, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> Done {
    let mut done = Done::default();
    let mut i = 0i64;
    while !stop.load(Relaxed) {
        i += 1;
        loop {
            match one_write(&mut c, i).await {
                Ok(()) => break,
                Err(mysql_async::Error::Server(e)) if e.code == 1213 => done.deadlocks += 1,
                Err(mysql_async::Error::Server(e)) if e.code == 1615 => done.replans += 1,
                Err(e) => panic!("the workload failed: {e}"),
            }
        }
        done.inserts += 1;
        done.deletes += u64::from(i % 2 == 0);
        count.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done
}

async fn one_write(c: &mut mysql_async::Conn, i: i64) -> Result<(), mysql_async::Error> {
    let mut tx = c.start_transaction(mysql_async::TxOpts::default()).await?;
    let (customer, order) = (10_000 + i, 100_000 + i);
    let old = (i * 7919) % ORDERS + 1;
    tx.exec_drop("UPDATE orders SET note = 'seen' WHERE id = ?", (old,))
        .await?;
    tx.exec_drop(
        "UPDATE orders_mirror SET note = 'seen', touched = touched + 1 WHERE id = ?",
        (old,),
    )
    .await?;
    if i % 2 == 0 {
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
            format!("INSERT INTO {t} VALUES (?, ?, ?, 'new', 0)"),
            (order, customer, 1 + i % 10),
        )
        .await?;
    }
    tx.exec_drop("INSERT INTO order_items (order_id) VALUES (?)", (order,))
        .await?;
    tx.commit().await
}

/// (name, table, referenced table) of the schema's foreign keys.
async fn foreign_keys(c: &mut mysql_async::Conn) -> Vec<(String, String, String)> {
    c.query(
        "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_NAME \
         FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = 'app' ORDER BY 1",
    )
    .await
    .unwrap()
}

/// (name, table, timing, event, order, definer) of the schema's triggers.
type TriggerRow = (String, String, String, String, i64, String);
async fn triggers(c: &mut mysql_async::Conn) -> Vec<TriggerRow> {
    c.query(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, \
                DEFINER \
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'app' ORDER BY 1",
    )
    .await
    .unwrap()
}

fn expected_keys(orders: &str) -> Vec<(String, String, String)> {
    [
        ("items_order", "order_items", orders),
        ("orders_customer", orders, "customers"),
        ("orders_parent", orders, orders),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .to_vec()
}

async fn count(c: &mut mysql_async::Conn, sql: &str) -> i64 {
    c.query_first(sql).await.unwrap().unwrap()
}

async fn dependents_move_with_the_swap(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    c.query_drop(fixture()).await.unwrap();
    let triggers_before = triggers(&mut c).await;
    assert_eq!(triggers_before.len(), 4);

    // The dry run says what moves and which other tables the cutover locks.
    let out = wraith_async(migrate_args(&dsn, "orders", ALTER, &[])).await;
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "`app`.`order_items` WRITE",
        "`app`.`customers` READ",
        "the triggers and foreign keys move to the new table",
        "`app`.`order_items`, are write-locked with it",
        "CREATE DEFINER=`root`@`localhost` TRIGGER `app`.`orders_ai` AFTER INSERT",
        "ALTER TABLE `app`.`order_items` ADD CONSTRAINT `items_order` FOREIGN KEY (`order_id`) \
         REFERENCES `app`.`orders` (`id`) ON DELETE CASCADE",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!(
        my_tables(&mut c).await,
        TABLES,
        "the dry run created nothing"
    );

    let load = Writer::start(db.connect("app").await.unwrap(), writer);
    let mut opts = execute_on(Engine::MySql);
    opts.max_rows_per_sec = Some(4_000);
    opts.initial_chunk_rows = 200;
    let outcome = migrate(spec(&dsn, "orders", ALTER, &[], opts)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (done, writes) = load.stop().await;
    eprintln!("workload: {writes} transactions, {done:?}");
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert!(writes > 100, "the workload ran during the run");

    // Rows, and the BEFORE UPDATE triggers fired once per application update.
    let columns = "id, customer_id, parent_id, note, touched";
    assert_eq!(
        my_mirror_differences(&mut c, "orders", "orders_mirror", columns).await,
        0,
        "orders equals its mirror"
    );
    // The audit trigger logged the application's writes, none of the copy's or apply's.
    let audit = |what: &str| format!("SELECT COUNT(*) FROM orders_audit WHERE what = '{what}'");
    assert_eq!(count(&mut c, &audit("insert")).await, done.inserts as i64);
    assert_eq!(count(&mut c, &audit("delete")).await, done.deletes as i64);
    // Every key on the new table under its name; the old one has none, either way.
    assert_eq!(foreign_keys(&mut c).await, expected_keys("orders"));
    assert_eq!(
        triggers(&mut c).await,
        triggers_before,
        "same names, timing, order, definer"
    );
    // Each cascaded item went with its order.
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM order_items i WHERE NOT EXISTS \
             (SELECT 1 FROM orders o WHERE o.id = i.order_id)"
        )
        .await,
        0
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM orders_view").await,
        count(&mut c, "SELECT COUNT(*) FROM orders").await,
        "the view reads the new table"
    );

    // Enforced on the new table, each way.
    for (sql, code) in [
        (
            "INSERT INTO orders VALUES (900001, 999999, NULL, 'x', 0)",
            "1452",
        ),
        (
            "INSERT INTO orders VALUES (900002, 1, 999999, 'x', 0)",
            "1452",
        ),
        ("INSERT INTO order_items (order_id) VALUES (999999)", "1452"),
        ("DELETE FROM customers WHERE id = 2", "1451"),
        ("DELETE FROM orders WHERE id = 1", "1451"),
    ] {
        let r = c.query_drop(sql).await;
        assert!(format!("{r:?}").contains(code), "{sql}: {r:?}");
    }
    let items = "SELECT COUNT(*) FROM order_items WHERE order_id = 500";
    assert_eq!(count(&mut c, items).await, 1);
    c.query_drop("DELETE FROM orders WHERE id = 500")
        .await
        .unwrap();
    assert_eq!(count(&mut c, items).await, 0, "the delete cascades");
    c.query_drop("INSERT INTO orders VALUES (900003, 1, NULL, 'x', 0)")
        .await
        .unwrap();
    c.query_drop("UPDATE orders SET note = 'y' WHERE id = 900003")
        .await
        .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM orders_audit WHERE order_id IN (500, 900003)"
        )
        .await,
        2,
        "each trigger fires once on the new table"
    );
    assert_eq!(
        count(&mut c, "SELECT touched FROM orders WHERE id = 900003").await,
        1
    );
    // The old table: no key, no trigger, and no other table's key points at it.
    c.query_drop("INSERT INTO orders_wraith_old VALUES (900004, 999999, 999999, 'x', 0)")
        .await
        .expect("the old table has no keys and no triggers left");
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM orders_audit WHERE order_id = 900004"
        )
        .await,
        0
    );
    db.stop().await;
}

async fn what_cannot_move_is_refused(server: MyServer) {
    let mariadb = server == MyServer::MariaDb;
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    c.query_drop(fixture()).await.unwrap();
    c.query_drop(
        "CREATE TABLE shipments (id int PRIMARY KEY, customer_id int,
                                 CONSTRAINT shipments_customer FOREIGN KEY (customer_id)
                                 REFERENCES customers (id) ON DELETE CASCADE);
         CREATE TABLE notes (id int PRIMARY KEY);
         CREATE TRIGGER notes_ai AFTER INSERT ON notes FOR EACH ROW
             INSERT INTO notes_wraith_old (id) VALUES (NEW.id);
         CREATE DATABASE other;
         CREATE TABLE other.refunds (id int PRIMARY KEY, order_id int,
                                     CONSTRAINT refunds_order FOREIGN KEY (order_id) REFERENCES app.orders (id));
         CREATE USER 'limited'@'127.0.0.1';
         GRANT ALL ON app.* TO 'limited'@'127.0.0.1';
         GRANT SELECT ON other.* TO 'limited'@'127.0.0.1';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'limited'@'127.0.0.1';",
    )
    .await
    .unwrap();
    let mut tables = TABLES.to_vec();
    tables.extend(["notes", "shipments"]);
    tables.sort();
    let limited = dsn.replace("root@", "limited@");
    let cases: [(&str, &str, &str, &[&str]); 6] = [
        (
            &dsn,
            "shipments",
            "ADD COLUMN x int",
            &[
                "foreign key shipments_customer (ON DELETE CASCADE",
                "binary log",
            ],
        ),
        (
            &dsn,
            "orders",
            "MODIFY customer_id bigint NOT NULL",
            &[
                "cannot keep foreign key orders_customer",
                "keep their names, types",
            ],
        ),
        (
            &dsn,
            "orders",
            "MODIFY id bigint, MODIFY parent_id bigint",
            &["cannot keep foreign key items_order of `app`.`order_items`"],
        ),
        (
            &dsn,
            "orders",
            "DROP COLUMN touched",
            &[
                "cannot take trigger orders_bu (BEFORE UPDATE)",
                "touched",
                "drop the trigger",
            ],
        ),
        (
            &dsn,
            "notes",
            "ADD COLUMN x int",
            &[
                "trigger notes_ai names `notes_wraith_old`, a table wraith creates",
                "Change the trigger",
            ],
        ),
        (
            &limited,
            "orders",
            "ADD COLUMN x int",
            &["`other`.`refunds`: GRANT ALTER, LOCK TABLES ON `other`.`refunds` TO limited@"],
        ),
    ];
    // The refund key is only in the last case's way.
    let refunds = c.query_drop("ALTER TABLE other.refunds DROP FOREIGN KEY refunds_order");
    refunds.await.unwrap();
    for (i, (dsn, table, alter, needles)) in cases.into_iter().enumerate() {
        // MySQL 9 logs what a CASCADE key does: the table's own are followed there.
        if i == 0 && !mariadb {
            continue;
        }
        if i == 5 {
            c.query_drop(
                "ALTER TABLE other.refunds ADD CONSTRAINT refunds_order FOREIGN KEY (order_id) \
                 REFERENCES app.orders (id)",
            )
            .await
            .unwrap();
        }
        for extra in [&[][..], &["--execute"][..]] {
            let out = wraith_async(migrate_args(dsn, table, alter, extra)).await;
            assert_refused(&out, &format!("{table}: {alter} {extra:?}"), needles);
            assert_eq!(my_tables(&mut c).await, tables, "nothing was created");
        }
    }
    db.stop().await;
}

/// Every key points at `orders` under its name, and its triggers are `before`.
async fn assert_in_place(c: &mut mysql_async::Conn, before: &[TriggerRow], case: &str) {
    assert_eq!(foreign_keys(c).await, expected_keys("orders"), "{case}");
    assert_eq!(triggers(c).await, before, "{case}");
}

/// wraith killed at each point of the cutover while the workload writes: before
/// the swap commits, the old table has its keys and triggers and every write;
/// after, the new table has them all. Killed between the RENAME and the moves
/// (no workload: until `wraith cleanup` the new table lacks them), cleanup moves them.
async fn killed_in_the_cutover(server: MyServer) {
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    for point in [
        Point::AfterCutoverLock,
        Point::AfterFence,
        Point::BeforeSwapCommit,
        Point::MidMoves,
        Point::AfterSwapCommit,
    ] {
        c.query_drop("DROP DATABASE app; CREATE DATABASE app; USE app")
            .await
            .unwrap();
        c.query_drop(fixture()).await.unwrap();
        let triggers_before = triggers(&mut c).await;
        let load = if point == Point::MidMoves {
            None
        } else {
            Some(Writer::start(db.connect("app").await.unwrap(), writer))
        };
        let vars = vec![(faults::ENV.to_string(), point.name().to_string())];
        let args = migrate_args(&dsn, "orders", ALTER, &["--execute"]);
        let out = wraith_async_env(args.clone(), vars).await;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{}: {}",
            point.name(),
            show(&out)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let done = match load {
            Some(load) => load.stop().await.0,
            None => Done::default(),
        };
        let tables = my_tables(&mut c).await;
        let swapped = tables.contains(&"orders_wraith_old".to_string())
            && !tables.contains(&"orders_wraith_new".to_string());
        let after_rename = matches!(point, Point::MidMoves | Point::AfterSwapCommit);
        assert_eq!(swapped, after_rename, "{}", point.name());
        let columns = "id, customer_id, parent_id, note, touched";
        assert_eq!(
            my_mirror_differences(&mut c, "orders", "orders_mirror", columns).await,
            0,
            "{}: orders equals its mirror",
            point.name()
        );
        if point == Point::MidMoves {
            let keys = foreign_keys(&mut c).await;
            assert_ne!(keys, expected_keys("orders"), "killed before the moves");
            let again = wraith_async(args.clone()).await;
            assert_refused(&again, "a rerun", &["wraith cleanup --table orders"]);
        } else {
            assert_in_place(&mut c, &triggers_before, point.name()).await;
        }
        let audit = count(&mut c, "SELECT COUNT(*) FROM orders_audit").await;
        assert_eq!(
            audit,
            (done.inserts + done.deletes) as i64,
            "{}",
            point.name()
        );
        let next = if swapped {
            vec![
                "cleanup".to_string(),
                "--dsn".into(),
                dsn.clone(),
                "--table".into(),
                "orders".into(),
            ]
        } else {
            args
        };
        let out = wraith_async(next).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            point.name(),
            show(&out)
        );
        assert_in_place(&mut c, &triggers_before, point.name()).await;
        assert!(
            !my_tables(&mut c)
                .await
                .contains(&"orders_wraith_log".to_string()),
            "{}: cleanup removed the changelog",
            point.name()
        );
    }
    db.stop().await;
}

/// The table's own ON DELETE CASCADE / SET NULL keys, on a server that logs what
/// they do (MySQL 9's SQL-layer foreign keys): parents deleted during the run
/// take their rows (or their references) with them in the new table too, and the
/// keys keep acting after the swap. MariaDB refuses such keys (above).
async fn own_cascading_keys_are_followed(server: MyServer) {
    const SHIPMENTS: i64 = 20_000;
    let (db, dsn, mut c) = my_sandbox_on(server).await;
    c.query_drop(format!(
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT seq FROM {customers};
         CREATE TABLE agents (id int PRIMARY KEY);
         INSERT INTO agents SELECT seq FROM {agents};
         CREATE TABLE shipments (id int PRIMARY KEY, customer_id int NOT NULL, agent_id int NULL,
                                 note varchar(20),
             CONSTRAINT shipments_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
                 ON DELETE CASCADE,
             CONSTRAINT shipments_agent FOREIGN KEY (agent_id) REFERENCES agents (id)
                 ON DELETE SET NULL);
         INSERT INTO shipments SELECT seq, 1 + seq % 500, 1 + seq % 200, 'x' FROM {shipments};",
        customers = seq(500),
        agents = seq(200),
        shipments = seq(SHIPMENTS)
    ))
    .await
    .unwrap();
    // Deletes customers and agents one by one (each cascades), oldest first.
    let load = Writer::start(
        db.connect("app").await.unwrap(),
        |mut c: mysql_async::Conn, stop: Arc<AtomicBool>, count: Arc<AtomicU64>| async move {
            let mut deleted = 0i64;
            while !stop.load(Relaxed) && deleted < 150 {
                deleted += 1;
                c.exec_drop("DELETE FROM customers WHERE id = ?", (deleted,))
                    .await
                    .expect("deleting a customer");
                c.exec_drop("DELETE FROM agents WHERE id = ?", (deleted,))
                    .await
                    .expect("deleting an agent");
                count.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            deleted
        },
    );
    let mut opts = execute_on(Engine::MySql);
    opts.max_rows_per_sec = Some(10_000);
    opts.initial_chunk_rows = 200;
    let outcome = migrate(spec(
        &dsn,
        "shipments",
        "MODIFY note varchar(200)",
        &[],
        opts,
    ))
    .await;
    let (deleted, writes) = load.stop().await;
    assert!(matches!(outcome, Ok(Outcome::Migrated(..))), "{outcome:?}");
    assert!(writes > 10, "parents were deleted during the run");

    // Shipment s belongs to customer 1 + s % 500 and agent 1 + s % 200.
    let left = (1..=SHIPMENTS).filter(|s| s % 500 >= deleted).count() as i64;
    assert_eq!(count(&mut c, "SELECT COUNT(*) FROM shipments").await, left);
    let orphans = "SELECT COUNT(*) FROM shipments s WHERE NOT EXISTS                    (SELECT 1 FROM customers c WHERE c.id = s.customer_id)";
    assert_eq!(count(&mut c, orphans).await, 0, "every cascade followed");
    let unset = (1..=SHIPMENTS)
        .filter(|s| s % 500 >= deleted && s % 200 < deleted)
        .count() as i64;
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM shipments WHERE agent_id IS NULL"
        )
        .await,
        unset,
        "every SET NULL followed"
    );
    // The keys act on the new table.
    c.query_drop("DELETE FROM customers WHERE id = 499; DELETE FROM agents WHERE id = 199")
        .await
        .unwrap();
    let of = |what: &str| format!("SELECT COUNT(*) FROM shipments WHERE {what}");
    assert_eq!(count(&mut c, &of("customer_id = 499")).await, 0);
    assert_eq!(count(&mut c, &of("agent_id = 199")).await, 0);
    db.stop().await;
}

mod own_cascading_keys_are_followed {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mysql() {
        if let Some(s) = super::common::servers::selected("mysql") {
            super::own_cascading_keys_are_followed(s.my_server().expect("a MySQL server")).await;
        }
    }
}

on_mysql_servers!(dependents_move_with_the_swap, what_cannot_move_is_refused);

on_mysql_servers!(killed_in_the_cutover);
