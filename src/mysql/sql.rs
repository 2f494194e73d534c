//! The SQL text of the MySQL/MariaDB engine's copy, apply and verification
//! (statements over the key, built once per migration), and identifier quoting.
//! Identifiers are always backquoted; values travel as parameters.

use mysql_async::Value;

use crate::key::Key;

/// Quotes an identifier for MySQL/MariaDB.
pub fn q(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// The SQL of one migration's copy and apply.
#[derive(Debug, Clone)]
pub struct RowSql {
    pub src: String,
    pub shadow: String,
    /// Key columns, quoted: in the source and in the shadow.
    pub key_src: Vec<String>,
    pub key_dst: Vec<String>,
    /// The shadow's written columns and the source expressions that fill them.
    pub columns: String,
    pub exprs: String,
    /// `expr AS column` for each written column: the re-read rows as the shadow names them.
    new_rows: String,
    /// The shadow's collation of each key column where it differs from the source's.
    key_collations: Vec<Option<String>>,
    /// The shadow's unique keys other than the key: older versions of other keys may
    /// conflict under them with a re-read row.
    pub uniques: Vec<UniqueKey>,
}

/// A unique key of the shadow: its parts (column, prefix length, the column's
/// collation) as `SHOW INDEX` and `SHOW FULL COLUMNS` describe them.
#[derive(Debug, Clone)]
pub struct UniqueKey {
    pub name: String,
    pub parts: Vec<(String, Option<u64>, Option<String>)>,
}

/// `expr` as a value of a column with `collation` (a string in another character
/// set or collation compares as the column's values do), or `expr` itself.
fn as_collated(expr: &str, collation: Option<&str>) -> String {
    match collation {
        Some(c) => {
            let charset = c.split('_').next().unwrap_or(c);
            format!("CONVERT({expr} USING {charset}) COLLATE {c}")
        }
        None => expr.to_string(),
    }
}

/// `(a > ?) OR (a = ? AND b > ?)`: keys after a key (`strict`), or up to one
/// (`<`, then `<=` on the last column). Spelled out because not every server
/// uses an index for row-constructor comparisons.
pub fn key_cmp(cols: &[String], after: bool) -> String {
    let n = cols.len();
    let clauses: Vec<String> = (0..n)
        .map(|i| {
            let op = match (after, i + 1 == n) {
                (true, _) => ">",
                (false, false) => "<",
                (false, true) => "<=",
            };
            let mut parts: Vec<String> = cols[..i].iter().map(|c| format!("{c} = ?")).collect();
            parts.push(format!("{} {op} ?", cols[i]));
            format!("({})", parts.join(" AND "))
        })
        .collect();
    format!("({})", clauses.join(" OR "))
}

/// The parameters of [`key_cmp`] for `key`.
pub fn key_cmp_params(key: &Key) -> Vec<Value> {
    (0..key.len())
        .flat_map(|i| key[..=i].iter().map(|v| Value::from(v.as_str())))
        .collect()
}

/// `WHERE` text and parameters for keys in `(after, upto]`, either bound open.
pub fn range_filter(
    cols: &[String],
    after: Option<&Key>,
    upto: Option<&Key>,
) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut params = Vec::new();
    if let Some(a) = after {
        conds.push(key_cmp(cols, true));
        params.extend(key_cmp_params(a));
    }
    if let Some(u) = upto {
        conds.push(key_cmp(cols, false));
        params.extend(key_cmp_params(u));
    }
    if conds.is_empty() {
        conds.push("TRUE".into());
    }
    (conds.join(" AND "), params)
}

/// `k IN (?, ...)` or `(a, b) IN ((?, ?), ...)` for `n` keys.
pub fn key_in(cols: &[String], n: usize) -> String {
    if cols.len() == 1 {
        format!("{} IN ({})", cols[0], vec!["?"; n].join(", "))
    } else {
        let one = format!("({})", vec!["?"; cols.len()].join(", "));
        format!("({}) IN ({})", cols.join(", "), vec![one; n].join(", "))
    }
}

impl RowSql {
    pub fn new(
        src: String,
        shadow: String,
        key_src: &[String],
        key_dst: &[String],
        written: &[(String, String)],
        key_collations: Vec<Option<String>>,
        uniques: Vec<UniqueKey>,
    ) -> RowSql {
        RowSql {
            new_rows: written
                .iter()
                .map(|(t, e)| format!("{e} AS {}", q(t)))
                .collect::<Vec<_>>()
                .join(", "),
            key_collations,
            uniques,
            src,
            shadow,
            key_src: key_src.iter().map(|c| q(c)).collect(),
            key_dst: key_dst.iter().map(|c| q(c)).collect(),
            columns: written
                .iter()
                .map(|(t, _)| q(t))
                .collect::<Vec<_>>()
                .join(", "),
            exprs: written
                .iter()
                .map(|(_, e)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn keys_src(&self) -> String {
        self.key_src.join(", ")
    }

    pub fn last_key(&self) -> String {
        let order: Vec<String> = self.key_src.iter().map(|c| format!("{c} DESC")).collect();
        format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT 1",
            self.keys_src(),
            self.src,
            order.join(", ")
        )
    }

    /// The key `rows` keys after `after`, never past `end` (parameters: after, end).
    pub fn next_chunk(&self, after: bool, rows: u64) -> String {
        let mut conds = Vec::new();
        if after {
            conds.push(key_cmp(&self.key_src, true));
        }
        conds.push(key_cmp(&self.key_src, false));
        format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}",
            self.keys_src(),
            self.src,
            conds.join(" AND "),
            self.keys_src(),
            rows.saturating_sub(1)
        )
    }

    /// Copies the missing rows of a range (parameters: after, upto).
    pub fn copy(&self, after: bool) -> String {
        let mut conds = Vec::new();
        if after {
            conds.push(key_cmp(&self.key_src, true));
        }
        conds.push(key_cmp(&self.key_src, false));
        let k = &self.key_dst[0];
        format!(
            "INSERT INTO {sh} ({cols}) SELECT {exprs} FROM {src} WHERE {w} LOCK IN SHARE MODE \
             ON DUPLICATE KEY UPDATE {sh}.{k} = {sh}.{k}",
            sh = self.shadow,
            cols = self.columns,
            exprs = self.exprs,
            src = self.src,
            w = conds.join(" AND ")
        )
    }

    pub fn apply_delete(&self, n: usize) -> String {
        format!(
            "DELETE FROM {} WHERE {}",
            self.shadow,
            key_in(&self.key_dst, n)
        )
    }

    /// The keys of `(after, upto]` the shadow lacks after a copy chunk skipped rows
    /// (parameters: after, upto).
    pub fn missing(&self, after: bool) -> String {
        let mut conds = Vec::new();
        if after {
            conds.push(key_cmp(&self.key_src, true));
        }
        conds.push(key_cmp(&self.key_src, false));
        let same: Vec<String> = self
            .key_dst
            .iter()
            .zip(&self.key_src)
            .zip(&self.key_collations)
            .map(|((d, s), c)| format!("sh.{d} = {}", as_collated(&format!("s.{s}"), c.as_deref())))
            .collect();
        format!(
            "SELECT {} FROM {} s WHERE {} AND NOT EXISTS (SELECT 1 FROM {} sh WHERE {})",
            self.key_src
                .iter()
                .map(|k| format!("s.{k}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.src,
            conds.join(" AND "),
            self.shadow,
            same.join(" AND ")
        )
    }

    /// For `unique`: the shadow's keys, other than the `n` keys given (twice: for
    /// the shadow, then for the source), whose rows conflict under it with the
    /// source's rows of those keys.
    ///
    /// The shadow and the source appear under their own names: under `LOCK TABLES`
    /// (the cutover) a table may only be read by the name it was locked under.
    pub fn conflicting(&self, unique: &UniqueKey, n: usize) -> String {
        let part =
            |new_row: bool, (col, prefix, collation): &(String, Option<u64>, Option<String>)| {
                let value = if new_row {
                    as_collated(&format!("n.{}", q(col)), collation.as_deref())
                } else {
                    q(col)
                };
                match prefix {
                    Some(p) => format!("LEFT({value}, {p})"),
                    None => value,
                }
            };
        let on = |new_row: bool| {
            unique
                .parts
                .iter()
                .map(|p| part(new_row, p))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "SELECT {} FROM {} WHERE NOT ({}) AND ({}) IN (SELECT {} FROM (SELECT {} FROM {} WHERE {}) n)",
            self.key_dst.join(", "),
            self.shadow,
            key_in(&self.key_dst, n),
            on(false),
            on(true),
            self.new_rows,
            self.src,
            key_in(&self.key_src, n)
        )
    }

    /// How many of `n` keys the source holds (the apply's locking read holds them).
    pub fn count_source(&self, n: usize) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {}",
            self.src,
            key_in(&self.key_src, n)
        )
    }

    pub fn apply_insert(&self, n: usize) -> String {
        format!(
            "REPLACE INTO {} ({}) SELECT {} FROM {} WHERE {} LOCK IN SHARE MODE",
            self.shadow,
            self.columns,
            self.exprs,
            self.src,
            key_in(&self.key_src, n)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparisons_spell_out_composite_keys() {
        let cols = vec!["`a`".to_string(), "`b`".to_string()];
        assert_eq!(key_cmp(&cols, true), "((`a` > ?) OR (`a` = ? AND `b` > ?))");
        assert_eq!(
            key_cmp(&cols, false),
            "((`a` < ?) OR (`a` = ? AND `b` <= ?))"
        );
        let p = key_cmp_params(&vec!["1".into(), "2".into()]);
        assert_eq!(p.len(), 3);
        assert_eq!(key_in(&cols, 2), "(`a`, `b`) IN ((?, ?), (?, ?))");
        assert_eq!(key_in(&cols[..1], 3), "`a` IN (?, ?, ?)");
    }
}
