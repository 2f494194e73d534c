//! The MariaDB and MySQL sandboxes: a private server with the binary log in ROW format and full
//! row images, whose row events a binlog stream reads back, every event of which
//! the reader knows how to handle.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::BinlogStreamRequest;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use wraith::sandbox::{MyOptions, MyServer, MySqlSandbox};

async fn sandbox_logs_rows_that_a_binlog_stream_reads_back(server: MyServer) {
    let db = MySqlSandbox::start_opts(MyOptions {
        server: server.clone(),
        ..MyOptions::default()
    })
    .await
    .expect("start the sandbox");
    db.create_database("app").await.unwrap();
    let mut c = db.connect("app").await.unwrap();
    let (format, image, log_bin): (String, String, i64) = c
        .query_first("SELECT @@binlog_format, @@binlog_row_image, @@log_bin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (format.as_str(), image.as_str(), log_bin),
        ("ROW", "FULL", 1)
    );

    c.query_drop("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    // SHOW MASTER STATUS, or SHOW BINARY LOG STATUS on MySQL 8.4 and later.
    let (file, pos) = wraith::mysql::capture::position(&mut c).await.unwrap();
    let reader = db.connect("app").await.unwrap();
    let mut stream = reader
        .get_binlog_stream(
            BinlogStreamRequest::new(4242)
                .with_filename(file.as_bytes())
                .with_pos(pos),
        )
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 'a'), (2, NULL), (3, 'c')")
        .await
        .unwrap();

    let mut rows = 0;
    let read = async {
        while let Some(event) = stream.next().await {
            let event = event.unwrap();
            // Every event a real server sends is one the reader knows.
            wraith::mysql::binlog::handling(&event).expect("a known event");
            if let Some(EventData::RowsEvent(ev)) = event.read_data().unwrap() {
                assert!(matches!(
                    ev,
                    RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_)
                ));
                let tme = stream
                    .get_tme(ev.table_id())
                    .expect("table map before rows");
                assert_eq!(tme.table_name(), "t");
                rows += ev.rows(tme).count();
                if rows >= 3 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the three rows arrive through the binlog");
    assert_eq!(rows, 3);
    db.stop().await;
}

on_mysql_servers!(sandbox_logs_rows_that_a_binlog_stream_reads_back,);
