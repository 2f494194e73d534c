//! Reading the user's ALTER text.
//!
//! The text is applied to the shadow table verbatim (the database is the judge of
//! what is valid). wraith only needs two things from it: the statements split so
//! each can be pointed at the shadow, and the `USING` expressions of type changes,
//! which also fill the column during copy and apply. A `USING` clause wraith cannot
//! read is an error, never silently ignored.

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::bad_input;

/// The ALTER text, split and inspected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlterText {
    /// One action list per statement (what follows `ALTER TABLE <name>`), verbatim.
    pub actions: Vec<String>,
    /// `(column, expression)` for every `ALTER COLUMN c TYPE t USING expr`.
    pub usings: Vec<(String, String)>,
}

/// Splits `text` into statements and reads their `USING` expressions.
/// `table` is the table being migrated: a statement that names another table is refused.
pub fn parse(text: &str, table: &str) -> anyhow::Result<AlterText> {
    let mut out = AlterText::default();
    for stmt in split_top_level(text, ';') {
        let stmt = stmt.trim();
        if stmt.is_empty() {
            continue;
        }
        let actions = strip_alter_table_prefix(stmt, table)?;
        if actions.trim().is_empty() {
            return Err(bad_input(format!(
                "the ALTER statement {stmt:?} has no action"
            )));
        }
        out.usings.extend(usings_of(actions)?);
        out.actions.push(actions.trim().to_string());
    }
    if out.actions.is_empty() {
        return Err(bad_input(
            "--alter is empty: give the change, e.g. --alter \"ALTER COLUMN id TYPE bigint\"",
        ));
    }
    Ok(out)
}

/// `ALTER TABLE [IF EXISTS] [ONLY] name <actions>` -> `<actions>`; bare actions pass through.
fn strip_alter_table_prefix<'a>(stmt: &'a str, table: &str) -> anyhow::Result<&'a str> {
    let mut rest = stmt;
    let Some(r) = eat_word(rest, "ALTER") else {
        return Ok(stmt);
    };
    let Some(r) = eat_word(r, "TABLE") else {
        return Ok(stmt);
    };
    rest = r;
    if let Some(r) = eat_word(rest, "IF").and_then(|r| eat_word(r, "EXISTS")) {
        rest = r;
    }
    if let Some(r) = eat_word(rest, "ONLY") {
        rest = r;
    }
    let (name, r) = take_qualified_name(rest).ok_or_else(|| {
        bad_input(format!(
            "could not read the table name in the ALTER statement {stmt:?}"
        ))
    })?;
    if name != table {
        return Err(bad_input(format!(
            "the ALTER statement names table {name:?} but the table being migrated is {table:?}: \
             give the actions only (e.g. \"ALTER COLUMN id TYPE bigint\") or name the same table"
        )));
    }
    Ok(r)
}

fn eat_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let s = s.trim_start();
    let head = s.get(..word.len())?;
    let after = &s[word.len()..];
    let boundary = after
        .chars()
        .next()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'));
    (head.eq_ignore_ascii_case(word) && boundary).then_some(after)
}

/// Reads `a`, `"A"`, `` `A` ``, `s.t`, `"s"."T"`; returns the last part, unquoted names folded as PostgreSQL does.
fn take_qualified_name(s: &str) -> Option<(String, &str)> {
    let mut rest = s.trim_start();
    let mut last;
    loop {
        // `"A"` (PostgreSQL) or `` `A` `` (MySQL): quoted, kept as written.
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '`');
        if let Some(quote) = quote {
            let r = &rest[1..];
            let mut name = String::new();
            let mut chars = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == quote {
                    if r[i + 1..].starts_with(quote) {
                        name.push(quote);
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            last = name;
            rest = &r[end?..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(rest.len());
            if len == 0 {
                return None;
            }
            last = rest[..len].to_lowercase();
            rest = &rest[len..];
        }
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => return Some((last, rest)),
        }
    }
}

/// The `USING` expressions in one action list.
fn usings_of(actions: &str) -> anyhow::Result<Vec<(String, String)>> {
    let sql = format!("ALTER TABLE wraith_probe {actions}");
    match Parser::parse_sql(&PostgreSqlDialect {}, &sql) {
        Ok(stmts) => {
            let mut found = Vec::new();
            for stmt in stmts {
                if let Statement::AlterTable(at) = stmt {
                    for op in at.operations {
                        if let AlterTableOperation::AlterColumn {
                            column_name,
                            op:
                                AlterColumnOperation::SetDataType {
                                    using: Some(expr), ..
                                },
                        } = op
                        {
                            let name = match column_name.quote_style {
                                Some(_) => column_name.value.clone(),
                                None => column_name.value.to_lowercase(),
                            };
                            found.push((name, expr.to_string()));
                        }
                    }
                }
            }
            Ok(found)
        }
        Err(_) if has_top_level_word(actions, "USING") => Err(bad_input(format!(
            "wraith could not read the USING expression in {actions:?}; \
             leave USING out of --alter and pass it as --transform column=EXPRESSION"
        ))),
        // The database validates the text; without USING there is nothing wraith needs from it.
        Err(_) => Ok(Vec::new()),
    }
}

fn has_top_level_word(text: &str, word: &str) -> bool {
    split_top_level(text, '\u{0}').iter().any(|part| {
        part.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w.eq_ignore_ascii_case(word))
    })
}

/// Splits at `sep` outside quotes, dollar quotes, comments and parentheses.
/// With a separator that never occurs it returns the text with quoted parts blanked.
pub fn split_top_level(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                // Copy the quoted part; doubled quotes stay inside it.
                let q = c;
                let start = i;
                i += 1;
                while i < chars.len() {
                    if chars[i] == q {
                        if chars.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                let end = (i + 1).min(chars.len());
                if sep == '\u{0}' {
                    cur.push(q);
                    cur.push(q);
                } else {
                    cur.extend(&chars[start..end]);
                }
                i = end;
                continue;
            }
            '$' => {
                // $tag$ ... $tag$
                let tag_end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '$')
                    .map(|p| i + 1 + p);
                if let Some(te) = tag_end {
                    let tag: String = chars[i..=te].iter().collect();
                    if chars[i + 1..te]
                        .iter()
                        .all(|c| c.is_alphanumeric() || *c == '_')
                    {
                        let body: String = chars[te + 1..].iter().collect();
                        if let Some(close) = body.find(&tag) {
                            let close_chars = body[..close].chars().count();
                            let end = te + 1 + close_chars + tag.chars().count();
                            if sep != '\u{0}' {
                                cur.extend(&chars[i..end]);
                            }
                            i = end;
                            continue;
                        }
                    }
                }
                cur.push(c);
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            _ if c == sep && depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
        i += 1;
    }
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_using_and_keeps_text_verbatim() {
        let a = parse(
            "ALTER COLUMN order_id TYPE bigint, ALTER COLUMN args TYPE jsonb USING args::jsonb",
            "orders",
        )
        .unwrap();
        assert_eq!(
            a.actions,
            vec![
                "ALTER COLUMN order_id TYPE bigint, ALTER COLUMN args TYPE jsonb USING args::jsonb"
            ]
        );
        assert_eq!(
            a.usings,
            vec![("args".to_string(), "args::JSONB".to_string())]
        );
    }

    #[test]
    fn strips_alter_table_prefix_and_splits_statements() {
        let a = parse(
            "ALTER TABLE public.orders RENAME COLUMN a TO b; alter table only \"orders\" add column c int default 1;",
            "orders",
        )
        .unwrap();
        assert_eq!(
            a.actions,
            vec!["RENAME COLUMN a TO b", "add column c int default 1"]
        );
    }

    #[test]
    fn refuses_other_tables_and_empty_text() {
        let e = parse("ALTER TABLE customers ADD COLUMN x int", "orders").unwrap_err();
        assert!(e.to_string().contains("\"customers\""), "{e}");
        assert!(parse("  ;  ", "orders").is_err());
    }

    #[test]
    fn semicolons_in_strings_do_not_split() {
        let a = parse(
            "ADD COLUMN c text DEFAULT 'a;b', ADD COLUMN d text DEFAULT $$x;y$$",
            "t",
        )
        .unwrap();
        assert_eq!(a.actions.len(), 1);
        assert!(a.actions[0].contains("'a;b'"));
        assert!(a.actions[0].contains("$$x;y$$"));
    }

    #[test]
    fn quoted_using_column_keeps_case() {
        let a = parse(
            "ALTER COLUMN \"Amount\" TYPE numeric USING \"Amount\"::numeric / 100",
            "t",
        )
        .unwrap();
        assert_eq!(a.usings[0].0, "Amount");
    }
}
