//! wraith: online, verified table rewrites for PostgreSQL and MySQL/MariaDB.
//!
//! The CLI (`main.rs`) is a thin layer over this library:
//! - [`plan`]: what the user asked for (spec, ALTER text, transforms) and the column mapping.
//! - [`engine`]: the phase state machine shared by every database: copy, apply, cutover.
//! - [`pg`]: the PostgreSQL backend (catalog, preflight, pgoutput capture, apply, cutover).
//! - [`mysql`]: the MySQL/MariaDB backend (preflight, binary log capture, apply, sentry cutover).
//! - [`verify`]: checksums of key ranges, narrowed to the keys that differ.
//! - [`ctl`]: the control socket of a running migration and the `wraith ctl` client.
//! - [`dsn`]: connection strings, parsed once and shown without their passwords.
//! - [`database`]: the [`Engine`] a DSN names and what differs by engine outside the phases.
//! - [`key`]: keys and key ranges, shared by every part.
//! - [`sandbox`]: throwaway database servers for tests, the demo and benchmarks.

pub mod bench;
pub mod ctl;
pub mod database;
pub mod demo;
pub mod dsn;
pub mod engine;
pub mod error;
pub mod key;
pub mod mysql;
pub mod pg;
pub mod plan;
pub mod sandbox;
pub mod scenario;
pub mod verify;

pub use database::Engine;
