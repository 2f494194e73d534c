//! Ctrl-C (SIGINT) in the middle of the copy: wraith stops, drops its slot,
//! publication and shadow table, and the original table is untouched.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn sigint_mid_copy_leaves_nothing_behind() {
    let db = db().await;
    db.client
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, v text);
             INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 50000) g;",
        )
        .await
        .unwrap();
    let before = table_fingerprint(&db.client, "big").await;

    // A slow copy (about 25 s) so the interrupt lands in the middle of it.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
        .args([
            "migrate",
            "--dsn",
            &db.dsn,
            "--table",
            "big",
            "--alter",
            "ALTER COLUMN id TYPE bigint",
            "--execute",
            "--max-rows-per-sec",
            "2000",
            "--chunk-time",
            "100ms",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start wraith");

    let started = Instant::now();
    // Wait until the shadow exists and the copy has put rows in it.
    loop {
        let copied = scalar_i64(
            &db.client,
            "SELECT CASE WHEN to_regclass('_big_new') IS NULL THEN 0 \
             ELSE (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM _big_new', false, true, '')))[1]::text::int8 END",
        )
        .await;
        if copied > 1000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the copy never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !leftovers(&db.client).await.is_empty(),
        "the run is under way"
    );

    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "wraith did not stop after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("aborted"), "stderr: {stderr}");

    assert!(
        leftovers(&db.client).await.is_empty(),
        "{:?}",
        leftovers(&db.client).await
    );
    assert_eq!(
        table_fingerprint(&db.client, "big").await,
        before,
        "original untouched"
    );
    assert!(scalar_bool(&db.client, "SELECT to_regclass('_big_old') IS NULL").await);
}
