//! The PostgreSQL versions beside Debian's 15 (16, 17, 18, which `scripts/setup.sh`
//! installs): on each, a migration under the mirrored `items` workload (inserts,
//! updates with key moves, deletes) through copy, capture, verification and
//! cutover equals the mirror, and nothing of wraith's is left.

mod common;

use common::env::Env;
use common::ops::*;
use common::*;
use wraith::sandbox::{PgOptions, other_versions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_installed_version_migrates_under_load_exactly() {
    let versions = other_versions();
    let majors: Vec<u32> = versions.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        majors,
        vec![16, 17, 18],
        "scripts/setup.sh installs PostgreSQL 16, 17 and 18 under /opt/wraith-servers"
    );
    for (major, bin) in versions {
        let mut env = Env::Pg(
            db_with(PgOptions {
                bin: Some(bin),
                ..PgOptions::default()
            })
            .await,
        );
        let Env::Pg(db) = &env else { unreachable!() };
        assert_eq!(
            scalar_i64(
                &db.client,
                "SELECT current_setting('server_version_num')::bigint / 10000"
            )
            .await,
            major as i64
        );
        let load = Load::start(&mut env, 5_000, true).await;
        let out = wraith_async(items_migrate_args(&env)).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "PostgreSQL {major}: {}",
            show(&out)
        );
        load.stop().await;
        assert_equals_mirror(&mut env).await;
        assert!(env.leftovers().await.is_empty(), "PostgreSQL {major}");
    }
}
