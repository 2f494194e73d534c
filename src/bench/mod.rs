//! Load generation and measurement, used by `wraith bench`, `wraith demo` and the
//! oracle tests.
//!
//! - [`workload`]: a write workload on a table of the `items` shape that also
//!   writes every effect to a mirror table in the same transaction, so the result
//!   of a migration can be checked row for row.
//! - [`mysql_workload`]: the same on MySQL/MariaDB.
//! - [`mysql_bench`]: `wraith bench`'s MySQL/MariaDB data and baselines.
//! - [`report`]: `wraith bench`: the measurements and the JSON report.
//! - [`print`]: the report as text.
//! - [`child`]: each migration run as a child `wraith migrate`.
//! - [`dependents`]: what moving triggers and foreign keys adds to the cutover.

pub mod child;
pub mod dependents;
pub mod mysql_bench;
pub mod mysql_workload;
pub mod print;
pub mod report;
pub mod workload;
