//! Keys as every part of wraith sees them: each key column's value in the
//! database's text form, and ranges of them. Neutral ground: the phase machine,
//! both backends and verification share these types without depending on each other.

/// A primary-key value: each key column's value in the database's text form.
pub type Key = Vec<String>;

/// Keys after `after` (exclusive; `None`: from the start) up to `upto` (inclusive).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyRange {
    pub after: Option<Key>,
    pub upto: Key,
}
