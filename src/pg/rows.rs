//! Moving rows into the shadow: copy chunks (server-side `INSERT ... SELECT`,
//! rows never travel through wraith) and the re-read of dirty keys.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::engine::{Applied, Copied};
use crate::key::{Key, KeyRange};
use crate::pg::conn::{DbError, DbResult, db_error, describe, is_transient, sqlstate};
use crate::pg::sql::RowSql;

type Param<'a> = &'a (dyn ToSql + Sync);

/// Attempts for a statement that fails with a deadlock or serialization failure.
const TRANSIENT_ATTEMPTS: u32 = 5;

fn key_params(k: &Key) -> impl Iterator<Item = Param<'_>> {
    k.iter().map(|v| v as Param)
}

/// The next chunk of about `rows` rows after `after`, never past `end`.
pub async fn next_chunk(
    c: &Client,
    sql: &RowSql,
    after: Option<&Key>,
    end: &Key,
    rows: u64,
) -> anyhow::Result<KeyRange> {
    let offset = rows.saturating_sub(1) as i64;
    let mut params: Vec<Param> = after.map(|a| key_params(a).collect()).unwrap_or_default();
    params.extend(key_params(end));
    params.push(&offset);
    let upto = c
        .query_opt(sql.bound.pick(after.is_some()), &params)
        .await
        .db("finding the chunk's last key")?
        .map(|r| (0..end.len()).map(|i| r.get::<_, String>(i)).collect())
        .unwrap_or_else(|| end.clone());
    Ok(KeyRange {
        after: after.cloned(),
        upto,
    })
}

/// Copies the rows of `range` the shadow lacks.
///
/// No apply touches a range while its chunk is in flight, so a plain INSERT is
/// safe when the shadow holds nothing in the range yet (the common case, and the
/// fastest); otherwise the copy skips the keys the apply already wrote. A chunk
/// whose rows conflict under a unique or exclusion constraint with older versions
/// of other keys (rows that moved keys since) copies nothing: its keys go through
/// the apply, which resolves such conflicts.
pub async fn copy_range(c: &Client, sql: &RowSql, range: &KeyRange) -> anyhow::Result<Copied> {
    let mut params: Vec<Param> = range
        .after
        .as_ref()
        .map(|a| key_params(a).collect())
        .unwrap_or_default();
    params.extend(key_params(&range.upto));
    let lower = range.after.is_some();
    let copied = retry_transient(|| async {
        let merge = sql.always_merge
            || c.query_one(sql.shadow_has.pick(lower), &params)
                .await
                .db("looking for rows already applied in the chunk")?
                .get::<_, bool>(0);
        let copy = if merge {
            sql.copy_merge.pick(lower)
        } else {
            sql.copy.pick(lower)
        };
        c.execute(copy, &params).await.db("copying a chunk")
    })
    .await;
    match copied {
        Ok(rows) => Ok(Copied {
            rows,
            recheck: Vec::new(),
        }),
        Err(e) if is_conflict(&e) => {
            let recheck: Vec<Key> = c
                .query(sql.chunk_keys.pick(lower), &params)
                .await
                .db("listing the keys of a chunk that conflicts")?
                .iter()
                .map(|r| {
                    (0..range.upto.len())
                        .map(|i| r.get::<_, String>(i))
                        .collect()
                })
                .collect();
            tracing::debug!(
                keys = recheck.len(),
                "{e:#}; the chunk's keys go through the apply"
            );
            Ok(Copied { rows: 0, recheck })
        }
        Err(e) => Err(e),
    }
}

/// A unique or exclusion constraint violation.
fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<DbError>().is_some_and(|d| {
            matches!(
                d.code.as_deref(),
                Some(UNIQUE_VIOLATION | EXCLUSION_VIOLATION)
            )
        })
    })
}

const UNIQUE_VIOLATION: &str = "23505";
const EXCLUSION_VIOLATION: &str = "23P01";

/// Splits `keys` into those outside every range in `in_flight` and those inside one.
async fn split_in_flight(
    c: &Client,
    sql: &RowSql,
    keys: Vec<Key>,
    in_flight: &[KeyRange],
) -> anyhow::Result<(Vec<Key>, Vec<Key>)> {
    if in_flight.is_empty() || keys.is_empty() {
        return Ok((keys, Vec::new()));
    }
    let columns = by_column(&keys);
    let mut inside: HashSet<Key> = HashSet::new();
    for range in in_flight {
        let mut params: Vec<Param> = columns.iter().map(|c| c as Param).collect();
        if let Some(a) = &range.after {
            params.extend(key_params(a));
        }
        params.extend(key_params(&range.upto));
        let q = sql.in_range.pick(range.after.is_some());
        for r in c
            .query(q, &params)
            .await
            .db("checking keys against copy chunks in flight")?
        {
            inside.insert(
                (0..range.upto.len())
                    .map(|i| r.get::<_, String>(i))
                    .collect(),
            );
        }
    }
    Ok(keys.into_iter().partition(|k| !inside.contains(k)))
}

fn by_column(keys: &[Key]) -> Vec<Vec<&str>> {
    let width = keys.first().map(Vec::len).unwrap_or(0);
    (0..width)
        .map(|i| {
            keys.iter()
                .map(|k| k.get(i).map(String::as_str).unwrap_or_default())
                .collect()
        })
        .collect()
}

/// Makes the shadow rows of `keys` match the source: delete them, then insert what
/// the source has now. Keys inside a copy chunk in flight are left out and
/// returned as held. `in_txn`: the caller's transaction is open (cutover);
/// otherwise each attempt runs in its own transaction.
pub async fn apply_keys(
    c: &Client,
    sql: &RowSql,
    keys: Vec<Key>,
    in_txn: bool,
    in_flight: &[KeyRange],
) -> anyhow::Result<Applied> {
    let (mut keys, mut held) = split_in_flight(c, sql, keys, in_flight).await?;
    let (refused, refused_why) = leave_out_inexact(c, sql, &mut keys, in_txn).await?;
    if in_txn && !refused.is_empty() {
        // Under the cutover's lock nothing may be left behind.
        return Err(crate::plan::reverse::cannot_carry(&refused, &refused_why));
    }
    if keys.is_empty() {
        return Ok(Applied {
            keys: 0,
            held,
            refused,
            refused_why,
        });
    }
    let written = if in_txn {
        write_keys(c, sql, keys.clone(), in_flight).await?
    } else {
        retry_transient(|| async {
            c.batch_execute("BEGIN")
                .await
                .db("starting an apply transaction")?;
            match write_keys(c, sql, keys.clone(), in_flight).await {
                Ok(Written::Done) => {
                    c.batch_execute("COMMIT")
                        .await
                        .db("committing an apply transaction")?;
                    Ok(Written::Done)
                }
                Ok(Written::Held) => {
                    c.batch_execute("ROLLBACK")
                        .await
                        .db("rolling back an apply transaction")?;
                    Ok(Written::Held)
                }
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
        .await?
    };
    match written {
        Written::Done => Ok(Applied {
            keys: keys.len() as u64,
            held,
            refused,
            refused_why,
        }),
        Written::Held if !in_txn => {
            held.extend(keys);
            Ok(Applied {
                keys: 0,
                held,
                refused,
                refused_why,
            })
        }
        Written::Held => {
            anyhow::bail!("a re-read conflicts with a copy chunk in flight under the cutover lock")
        }
    }
}

/// What [`write_keys`] did.
enum Written {
    Done,
    /// Nothing: a re-read row conflicts with a row a copy chunk in flight wrote; the
    /// keys wait until it commits (DESIGN 2.C).
    Held,
}

/// Rounds of conflict resolution before giving up (each round adds keys).
const CONFLICT_ROUNDS: usize = 32;

/// Deletes and re-inserts `keys` in the open transaction. A re-read row that
/// conflicts under a unique or exclusion constraint with the shadow row of another
/// key meets an older version of that key (the source holds both rows at once
/// only if the constraint does not hold for the source's data): that key is
/// re-read in the same statement, which brings its current version. A conflict
/// no other key explains is the constraint not holding: the run stops.
async fn write_keys(
    c: &Client,
    sql: &RowSql,
    mut keys: Vec<Key>,
    in_flight: &[KeyRange],
) -> anyhow::Result<Written> {
    if !sql.conflicts.is_empty() {
        // Deferred constraints would only complain at COMMIT, past the savepoint.
        c.batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
            .await
            .db("checking constraints at once")?;
    }
    for _ in 0..CONFLICT_ROUNDS {
        let columns = by_column(&keys);
        let params: Vec<Param> = columns.iter().map(|c| c as Param).collect();
        if !sql.apply_delete.is_empty() {
            c.execute(&sql.apply_delete, &params)
                .await
                .db("deleting re-read rows from the shadow")?;
        }
        if sql.conflicts.is_empty() {
            c.execute(&sql.apply_insert, &params)
                .await
                .db("re-reading changed rows into the shadow")?;
            return Ok(Written::Done);
        }
        c.batch_execute("SAVEPOINT wraith_apply")
            .await
            .db("starting a re-read")?;
        let e = match c.execute(&sql.apply_insert, &params).await {
            Ok(_) => {
                c.batch_execute("RELEASE SAVEPOINT wraith_apply")
                    .await
                    .db("ending a re-read")?;
                return Ok(Written::Done);
            }
            Err(e) if matches!(sqlstate(&e), Some(UNIQUE_VIOLATION | EXCLUSION_VIOLATION)) => e,
            Err(e) => return Err(db_error(e, "re-reading changed rows into the shadow")),
        };
        c.batch_execute("ROLLBACK TO SAVEPOINT wraith_apply")
            .await
            .db("undoing a conflicting re-read")?;
        let mut older: Vec<Key> = Vec::new();
        for conflict in &sql.conflicts {
            for r in c
                .query(&conflict.find, &params)
                .await
                .db("looking for older versions a re-read conflicts with")?
            {
                let k: Key = (0..r.len()).map(|i| r.get::<_, String>(i)).collect();
                if !older.contains(&k) {
                    older.push(k);
                }
            }
        }
        if older.is_empty() {
            let shown: Vec<String> = keys
                .iter()
                .take(10)
                .map(|k| format!("({})", k.join(", ")))
                .collect();
            return Err(anyhow::anyhow!(
                "constraint {} of the new table does not hold for the rewritten rows (re-reading keys {}{}): \
                 {}; nothing was swapped",
                e.as_db_error().and_then(|d| d.constraint()).unwrap_or("?"),
                shown.join(" "),
                if keys.len() > 10 { " ..." } else { "" },
                describe(&e)
            ));
        }
        let (outside, inside) = split_in_flight(c, sql, older, in_flight).await?;
        if !inside.is_empty() {
            return Ok(Written::Held);
        }
        keys.extend(outside);
    }
    anyhow::bail!(
        "re-reading changed rows into the shadow: conflicts with older versions of other keys kept \
         coming after {CONFLICT_ROUNDS} rounds ({} keys); nothing was swapped",
        keys.len()
    )
}

/// The keys of `keys` whose rows would not come out the same in the shadow's
/// types ([`RowSql::guard`]), and why (found one by one when the check itself
/// fails, as a cast that overflows does). Runs in `c`'s open transaction.
async fn inexact(c: &Client, guard: &str, keys: &[Key]) -> anyhow::Result<(Vec<Key>, String)> {
    let check = |keys: Vec<Key>| async move {
        let columns = by_column(&keys);
        let params: Vec<Param> = columns.iter().map(|c| c as Param).collect();
        c.batch_execute("SAVEPOINT wraith_guard")
            .await
            .db("starting the check of values cast back")?;
        let found = c.query(guard, &params).await;
        let end = if found.is_ok() {
            "RELEASE SAVEPOINT wraith_guard"
        } else {
            "ROLLBACK TO SAVEPOINT wraith_guard"
        };
        c.batch_execute(end)
            .await
            .db("ending the check of values cast back")?;
        anyhow::Ok(found.map(|rows| {
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect::<Key>())
                .collect::<Vec<Key>>()
        }))
    };
    Ok(match check(keys.to_vec()).await? {
        Ok(bad) => (bad, "it would not come back the same".to_string()),
        Err(e) => {
            let why = describe(&e);
            let mut bad = Vec::new();
            for k in keys {
                if !matches!(check(vec![k.clone()]).await?, Ok(b) if b.is_empty()) {
                    bad.push(k.clone());
                }
            }
            (bad, why)
        }
    })
}

/// Leaves out of `keys` those the shadow's types cannot hold ([`RowSql::guard`]),
/// returned with why. In the caller's transaction (`in_txn`), or a short one.
async fn leave_out_inexact(
    c: &Client,
    sql: &RowSql,
    keys: &mut Vec<Key>,
    in_txn: bool,
) -> anyhow::Result<(Vec<Key>, String)> {
    let Some(guard) = &sql.guard else {
        return Ok((Vec::new(), String::new()));
    };
    if !in_txn {
        c.batch_execute("BEGIN")
            .await
            .db("starting the check of values cast back")?;
    }
    let found = inexact(c, guard, keys).await;
    if !in_txn {
        c.batch_execute("ROLLBACK")
            .await
            .db("ending the check of values cast back")?;
    }
    let (bad, why) = found?;
    keys.retain(|k| !bad.contains(k));
    Ok((bad, why))
}

/// Runs `f` again after a deadlock or serialization failure, a few times.
async fn retry_transient<T, F, Fut>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < TRANSIENT_ATTEMPTS && is_transient(&e) => {
                tracing::warn!(attempt, "{e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
