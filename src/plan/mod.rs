//! What the user asked for and what wraith will do about it.
//!
//! - [`spec`]: the migration spec (from flags or a TOML file): what a run does.
//! - [`options`]: how it runs (pacing, throttling, cutover), and what a backend gets of that.
//! - [`alter`]: reading the user's ALTER text (it is applied verbatim; wraith only
//!   looks inside it for `USING` expressions).
//! - [`instant`]: whether the server can apply the ALTER as a metadata-only change.
//! - [`mapping`]: how each column of the new table is filled from the old one.
//! - [`report`]: the dry-run plan printed before anything is created.

pub mod alter;
pub mod instant;
pub mod mapping;
pub mod options;
pub mod report;
pub mod reverse;
pub mod spec;

pub use mapping::{ColumnMap, Fill, Mapping, SourceColumn, TargetColumn};
pub use options::{BackendOptions, RunOptions, ThrottleOptions};
pub use report::{Finding, Plan};
pub use spec::{
    Check, CheckAction, MigrationSpec, SpecFile, Transform, fnv1a, parse_duration, split_table_name,
};
