//! Moving rows into the shadow: copy chunks (server-side `INSERT ... SELECT`,
//! rows never travel through wraith) and the re-read of dirty keys.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::engine::{Applied, Key, KeyRange};
use crate::pg::conn::{DbResult, is_transient};
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

/// Copies the rows of `range` the shadow lacks; returns the rows inserted.
///
/// No apply touches a range while its chunk is in flight, so a plain INSERT is
/// safe when the shadow holds nothing in the range yet (the common case, and the
/// fastest); otherwise the copy skips the keys the apply already wrote.
pub async fn copy_range(c: &Client, sql: &RowSql, range: &KeyRange) -> anyhow::Result<u64> {
    let mut params: Vec<Param> = range
        .after
        .as_ref()
        .map(|a| key_params(a).collect())
        .unwrap_or_default();
    params.extend(key_params(&range.upto));
    let lower = range.after.is_some();
    retry_transient(|| async {
        let merge: bool = c
            .query_one(sql.shadow_has.pick(lower), &params)
            .await
            .db("looking for rows already applied in the chunk")?
            .get(0);
        let copy = if merge {
            sql.copy_merge.pick(lower)
        } else {
            sql.copy.pick(lower)
        };
        c.execute(copy, &params).await.db("copying a chunk")
    })
    .await
}

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
    let (keys, held) = split_in_flight(c, sql, keys, in_flight).await?;
    if keys.is_empty() {
        return Ok(Applied { keys: 0, held });
    }
    let columns = by_column(&keys);
    let params: Vec<Param> = columns.iter().map(|c| c as Param).collect();
    let statements = || async {
        c.execute(&sql.apply_delete, &params)
            .await
            .db("deleting re-read rows from the shadow")?;
        c.execute(&sql.apply_upsert, &params)
            .await
            .db("re-reading changed rows into the shadow")
    };
    if in_txn {
        statements().await?;
    } else {
        retry_transient(|| async {
            c.batch_execute("BEGIN")
                .await
                .db("starting an apply transaction")?;
            match statements().await {
                Ok(_) => c
                    .batch_execute("COMMIT")
                    .await
                    .db("committing an apply transaction"),
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
        .await?;
    }
    Ok(Applied {
        keys: keys.len() as u64,
        held,
    })
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
