//! The MySQL/MariaDB engine (in progress): so far the binary log reader's event
//! handling ([`binlog`]). The sandbox lives in [`crate::sandbox::MariaDbSandbox`].

pub mod binlog;
