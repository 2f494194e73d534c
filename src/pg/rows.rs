//! Moving rows into the shadow: copy chunks (server-side `INSERT ... SELECT`,
//! rows never travel through wraith) and the re-read of dirty keys.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::engine::{Chunk, Key};
use crate::pg::conn::DbResult;
use crate::pg::sql::RowSql;

type Param<'a> = &'a (dyn ToSql + Sync);

/// Copies up to `rows` rows after `after` and up to `end` (inclusive).
pub async fn copy_chunk(
    c: &Client,
    sql: &RowSql,
    after: Option<&Key>,
    end: &Key,
    rows: u64,
) -> anyhow::Result<Chunk> {
    let offset = rows.saturating_sub(1) as i64;
    let mut params: Vec<Param> = Vec::new();
    if let Some(a) = after {
        params.extend(a.iter().map(|v| v as Param));
    }
    params.extend(end.iter().map(|v| v as Param));
    let bound_sql = if after.is_some() {
        &sql.bound_next
    } else {
        &sql.bound_first
    };
    let mut bound_params = params.clone();
    bound_params.push(&offset);
    let hi: Option<Key> = c
        .query_opt(bound_sql, &bound_params)
        .await
        .db("finding the chunk's last key")?
        .map(|r| (0..end.len()).map(|i| r.get::<_, String>(i)).collect());
    let (hi, done) = match hi {
        Some(k) => {
            let done = &k == end;
            (k, done)
        }
        None => (end.clone(), true),
    };
    // Same parameters, with the chunk's last key as the upper bound.
    let lower = params.len() - end.len();
    let mut copy_params: Vec<Param> = params[..lower].to_vec();
    copy_params.extend(hi.iter().map(|v| v as Param));
    let copy_sql = if after.is_some() {
        &sql.copy_next
    } else {
        &sql.copy_first
    };
    let n = c
        .execute(copy_sql, &copy_params)
        .await
        .db("copying a chunk")?;
    Ok(Chunk {
        rows: n,
        last: hi,
        done,
    })
}

/// Makes the shadow rows of `keys` match the source: delete them, then insert what
/// the source has now (the upsert covers a copy chunk inserting concurrently).
/// `in_txn`: the caller's transaction is open (cutover); otherwise one is opened here.
pub async fn apply_keys(
    c: &Client,
    sql: &RowSql,
    keys: &[Key],
    in_txn: bool,
) -> anyhow::Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let width = keys[0].len();
    let columns: Vec<Vec<&str>> = (0..width)
        .map(|i| {
            keys.iter()
                .map(|k| k.get(i).map(String::as_str).unwrap_or_default())
                .collect()
        })
        .collect();
    let params: Vec<Param> = columns.iter().map(|c| c as Param).collect();
    if !in_txn {
        c.batch_execute("BEGIN")
            .await
            .db("starting an apply transaction")?;
    }
    let result = async {
        c.execute(&sql.apply_delete, &params)
            .await
            .db("deleting re-read rows from the shadow")?;
        let n = c
            .execute(&sql.apply_upsert, &params)
            .await
            .db("re-reading changed rows into the shadow")?;
        Ok::<u64, anyhow::Error>(n)
    }
    .await;
    if in_txn {
        return result;
    }
    match result {
        Ok(n) => {
            c.batch_execute("COMMIT")
                .await
                .db("committing an apply transaction")?;
            Ok(n)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}
