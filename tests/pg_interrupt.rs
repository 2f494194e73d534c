//! Interrupted runs. Ctrl-C (SIGINT) in the middle of the copy: wraith stops, drops
//! its slot, publication and shadow table, and the original table is untouched.
//! A run killed outright (SIGKILL) leaves them; the next run removes them and starts
//! over by itself. Two runs on one table at once: the second is refused.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn sigint_mid_copy_leaves_nothing_behind() {
    let db = db().await;
    create_big(&db).await;
    let before = table_fingerprint(&db.client, "big").await;

    let child = start_slow_run(&db).await;
    assert!(
        !leftovers(&db.client).await.is_empty(),
        "the run is under way"
    );

    let mut child = child;
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

const ALTER: &str = "ALTER COLUMN id TYPE bigint";

/// Starts a migration of `big` whose copy takes about 25 s, and returns once the
/// shadow has rows.
async fn start_slow_run(db: &Db) -> std::process::Child {
    // A slow copy (about 25 s) so the interrupt lands in the middle of it.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wraith"))
        .args([
            "migrate",
            "--dsn",
            &db.dsn,
            "--table",
            "big",
            "--alter",
            ALTER,
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
    child
}

#[tokio::test]
async fn a_killed_run_is_cleaned_up_by_the_next_and_runs_never_overlap() {
    let db = db().await;
    create_big(&db).await;
    let before = table_fingerprint(&db.client, "big").await;
    let mut child = start_slow_run(&db).await;
    let base = [
        "migrate", "--dsn", &db.dsn, "--table", "big", "--alter", ALTER,
    ];

    // A second run on the same table, even a dry run, is refused while the first goes on.
    let second = wraith(&base);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another wraith run is migrating public.big"),
        "{stderr}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    // The server drops the temporary slot when it notices the session is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar_i64(&db.client, "SELECT count(*) FROM pg_replication_slots").await > 0 {
        assert!(Instant::now() < deadline, "the slot outlived its session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = leftovers(&db.client).await;
    assert!(left.iter().any(|l| l == "table _big_new"), "{left:?}");
    assert!(
        left.iter().any(|l| l.starts_with("publication ")),
        "{left:?}"
    );

    // A dry run says what it found and leaves it.
    let dry = wraith(&base);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        stdout.contains("an earlier attempt that did not finish left"),
        "{stdout}"
    );
    assert_eq!(leftovers(&db.client).await, left);

    // The next real run removes them and completes: no manual step.
    let mut args = base.to_vec();
    args.push("--execute");
    let out = wraith(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("removed what an earlier attempt left behind"),
        "{stderr}"
    );
    assert!(leftovers(&db.client).await.is_empty());
    assert_eq!(
        scalar_i64(
            &db.client,
            "SELECT count(*) FROM big WHERE pg_typeof(id) = 'bigint'::regtype"
        )
        .await,
        before.0
    );
}

async fn create_big(db: &Db) {
    db.client
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, v text);
             INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 50000) g;",
        )
        .await
        .unwrap();
}
