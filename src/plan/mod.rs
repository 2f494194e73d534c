//! What the user asked for and what wraith will do about it.
//!
//! - [`spec`]: the migration spec (from flags or a TOML file) and run options.
//! - [`alter`]: reading the user's ALTER text (it is applied verbatim; wraith only
//!   looks inside it for `USING` expressions).
//! - [`mapping`]: how each column of the new table is filled from the old one.
//! - [`report`]: the dry-run plan printed before anything is created.

pub mod alter;
pub mod mapping;
pub mod report;
pub mod spec;

pub use mapping::{ColumnMap, Fill, Mapping, SourceColumn, TargetColumn};
pub use report::{Finding, Plan};
pub use spec::{
    Check, CheckAction, FaultPoints, MigrationSpec, RunOptions, SpecFile, ThrottleOptions,
    Transform, fnv1a, parse_duration, split_table_name,
};
