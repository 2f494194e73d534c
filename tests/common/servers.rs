//! Which servers this run tests on: `WRAITH_TEST_SERVERS`, a comma-separated list
//! of matrix names (`pg15,pg16,pg17,pg18,mariadb10.11,mysql9.7`), the aliases
//! `postgres`, `mariadb` and `mysql` (Debian's PostgreSQL, Debian's MariaDB, the
//! newest MySQL installed), or `all`. Unset, it is `postgres,mariadb`;
//! `scripts/test.sh` runs `all`. A selected server that is not installed fails
//! the test: nothing is skipped silently.

use wraith::sandbox::Server;

const VAR: &str = "WRAITH_TEST_SERVERS";

/// The server in matrix slot `slot` (`postgres`, `pg16`, `mariadb`, `mysql`, …)
/// when this run tests on it; `None`, said on stderr, when it does not.
pub fn selected(slot: &str) -> Option<Server> {
    let list = std::env::var(VAR).unwrap_or_else(|_| "postgres,mariadb".into());
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    let found = Server::find(slot);
    let wanted = names.contains(&"all")
        || names.contains(&slot)
        || found
            .as_ref()
            .is_ok_and(|s| names.contains(&s.name.as_str()));
    if !wanted {
        eprintln!("not run: {slot} is not in {VAR}={list}");
        return None;
    }
    match found {
        Ok(server) => Some(server),
        Err(e) => panic!("{VAR} selects {slot}: {e:#}"),
    }
}

/// Runs each named `async fn(Env)` as one test per matrix slot in `slots`:
/// `<name>::postgres`, `<name>::mysql`, … each on a sandbox server of its own.
#[macro_export]
macro_rules! on_servers {
    ($slots:tt $($case:ident),+ $(,)?) => {$(
        $crate::on_servers!(@case $case $slots);
    )+};
    (@case $case:ident [$($slot:ident),+]) => {
        mod $case {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $slot() {
                    if let Some(env) = super::common::env::Env::on(stringify!($slot)).await {
                        super::$case(env).await;
                    }
                }
            )+
        }
    };
}

/// Each named `async fn(Env)` on Debian's PostgreSQL, MariaDB and MySQL 9.7.
#[macro_export]
macro_rules! on_both_engines {
    ($($case:ident),+ $(,)?) => {
        $crate::on_servers!([postgres, mariadb, mysql] $($case),+);
    };
}

/// Each named `async fn(Env)` on every server of the matrix: PostgreSQL 15–18,
/// MariaDB and MySQL.
#[macro_export]
macro_rules! on_every_server {
    ($($case:ident),+ $(,)?) => {
        $crate::on_servers!([postgres, pg16, pg17, pg18, mariadb, mysql] $($case),+);
    };
}

/// Each named `async fn(MyServer)` on MariaDB and MySQL.
#[macro_export]
macro_rules! on_mysql_servers {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mariadb() {
                if let Some(s) = super::common::servers::selected("mariadb") {
                    super::$case(s.my_server().expect("a MySQL-protocol server")).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mysql() {
                if let Some(s) = super::common::servers::selected("mysql") {
                    super::$case(s.my_server().expect("a MySQL-protocol server")).await;
                }
            }
        }
    )+};
}

/// Each named `async fn(PgOptions)` on PostgreSQL 15–18.
#[macro_export]
macro_rules! on_postgres_versions {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            $crate::on_postgres_versions!(@slot $case postgres);
            $crate::on_postgres_versions!(@slot $case pg16);
            $crate::on_postgres_versions!(@slot $case pg17);
            $crate::on_postgres_versions!(@slot $case pg18);
        }
    )+};
    (@slot $case:ident $slot:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $slot() {
            if let Some(s) = super::common::servers::selected(stringify!($slot)) {
                super::$case(s.pg_options().expect("a PostgreSQL server")).await;
            }
        }
    };
}
