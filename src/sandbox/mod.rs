//! Throwaway database servers for integration tests, `wraith demo` and `wraith bench`.
//!
//! Each sandbox is a private server started from the installed binaries, living
//! entirely inside its own temporary directory and listening on a free loopback
//! port. It never touches a system database service, and it is shut down and its
//! directory removed when the sandbox is stopped or dropped (including during a
//! panic unwind).

mod mariadb;
mod postgres;

pub use mariadb::MariaDbSandbox;
pub use postgres::{PgOptions, PgSandbox};
