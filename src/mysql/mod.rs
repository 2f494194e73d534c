//! The MySQL/MariaDB engine (in progress): connections with wraith's session
//! settings ([`conn`]), the read-only preflight ([`preflight`]) and the binary log
//! reader's event handling ([`binlog`]). The sandbox is
//! [`crate::sandbox::MariaDbSandbox`].

pub mod binlog;
pub mod conn;
pub mod preflight;

use crate::error::bad_input;
use crate::plan::MigrationSpec;

/// What `wraith migrate` can do on MySQL/MariaDB in this version: the preflight.
/// Returns its report; the migration itself is refused, changing nothing.
pub async fn preflight_only(spec: &MigrationSpec) -> anyhow::Result<String> {
    let from_dsn = conn::opts(&spec.dsn)?.db_name().map(str::to_string);
    let Some(schema) = spec.schema.clone().or(from_dsn) else {
        return Err(bad_input(
            "name the database in the connection string (mysql://user@host/db) or the table as db.table",
        ));
    };
    let mut c = conn::connect(&spec.dsn, "control").await?;
    let (server, table) = preflight::run(&mut c, &schema, &spec.table).await?;
    Ok(format!(
        "{schema}.{} on {} ({:?}): preflight passed; about {} rows, key ({})",
        spec.table,
        server.version,
        server.flavor,
        table.estimated_rows,
        table.key.join(", ")
    ))
}
