//! Preflight: read-only checks that every later phase relies on, each failure a
//! clear error that names the fix, before anything is created. The shadow is
//! built and thrown away inside a rolled-back transaction to validate the ALTER,
//! the mapping and every statement.

use tokio_postgres::Client;

use crate::engine::checkpoint::{self, Checkpoint, Leftover};
use crate::engine::definition::Definition;
use crate::error::bad_input;
use crate::pg::catalog::{self, Table};
use crate::pg::conn::DbResult;
use crate::pg::definition;
use crate::pg::dependents::{self, Dependents};
use crate::pg::names::Names;
use crate::pg::shadow::{self, Shape};
use crate::pg::{checks, cleanup};
use crate::plan::alter::AlterText;
use crate::plan::instant::{Instant, pg_scanning_action, spec_needs_copy};
use crate::plan::{BackendOptions, MigrationSpec, Plan};

/// The plan's note when the ALTER changes the key's collation.
const KEY_ORDER_WARNING: &str = "the ALTER changes the collation of a key column, so the two \
     tables sort keys differently: copy chunks look for applied rows key by key, and verification \
     compares the tables in one range instead of many in parallel";

/// Oldest server wraith supports: logical messages in pgoutput need 14.
const MIN_VERSION: i32 = 140000;

pub struct Checked {
    pub table: Table,
    /// The table's definition before anything was built from it.
    pub definition: Definition,
    pub deps: Dependents,
    pub shape: Shape,
    pub plan: Plan,
    pub server_version: i32,
    /// The interrupted run this one continues (`--resume`).
    pub resume: Option<Checkpoint>,
}

pub async fn run(
    c: &Client,
    spec: &MigrationSpec,
    opts: &BackendOptions,
    names: &Names,
    alter: &AlterText,
) -> anyhow::Result<Checked> {
    let server = server_checks(c).await?;
    let table = catalog::table(c, &names.schema, &names.table).await?;
    privileges(c, names).await?;
    let definition = definition::read(c, names, table.oid).await?;
    let earlier = leftovers(c, spec, opts, names).await?;
    let shape = shadow::bounded(
        c,
        names,
        &table,
        alter,
        spec,
        opts,
        // A dry run leaves an earlier attempt's shadow alone: it is only out of the
        // way inside the transaction, which is rolled back.
        shadow::Outcome::RollBack {
            set_aside: earlier.shadow,
        },
    )
    .await?;
    let deps = dependents::read(c, names, &table, &shape.mapping, server.0).await?;
    let findings = checks::run(c, names, &table, &spec.checks).await?;
    let mut warnings = deps.warnings.clone();
    warnings.extend(earlier.warning);
    if shape.key.order_differs() {
        warnings.push(KEY_ORDER_WARNING.to_string());
    }
    // Slot creation would wait for them, up to the slot creation timeout.
    warnings.extend(
        crate::pg::capture::prepared_transactions(c)
            .await?
            .into_iter()
            .map(|p| format!("creating the replication slot will wait for {p}")),
    );

    let mut cutover_steps = cutover_steps(names, &table, &deps);
    if opts.revertible {
        let back = Names::back(&names.schema, &names.table)?;
        let n = cutover_steps.len();
        cutover_steps.insert(
            1,
            format!(
                "the way back (--revertible): CREATE PUBLICATION {} FOR TABLE {}; a persistent \
                 slot {}; its record in {}",
                crate::pg::sql::ident(&back.publication),
                names.shadow_q(),
                back.slot,
                back.checkpoint_q()
            ),
        );
        cutover_steps.insert(
            n,
            format!(
                "the way back: the triggers and references to itself of {} are set aside; a \
                 marker in the stream, from whose commit the way back's slot starts",
                names.old_q()
            ),
        );
    }
    let plan = Plan {
        target: format!("{}.{}", names.schema, names.table),
        server: format!("PostgreSQL {}", server.1),
        estimated_rows: table.estimated_rows,
        key_columns: table.key.clone(),
        source_steps: vec![
            format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                crate::pg::sql::ident(&names.publication),
                names.src()
            ),
            format!(
                "SELECT pg_create_logical_replication_slot('{}', 'pgoutput', temporary => {})",
                names.slot, !opts.resume
            ),
        ],
        shadow_ddl: shape.ddl.clone(),
        mapping: shape.mapping.clone(),
        copy_sql: shape.sql.copy.next.clone(),
        apply_sql: vec![
            shape.sql.apply_delete.clone(),
            shape.sql.apply_insert.clone(),
        ],
        cutover_steps,
        warnings,
        findings,
        completed: None,
        fingerprint: spec.fingerprint(),
        instant: instant(spec, names, alter, &shape),
        reverse: opts
            .revertible
            .then(|| reverse(&table, &shape, spec))
            .transpose()?,
    };
    if let Some(cp) = &earlier.resume {
        checkpoint::check_shape(cp, &plan, &plan.target)?;
    }
    Ok(Checked {
        table,
        definition,
        deps,
        shape,
        plan,
        server_version: server.0,
        resume: earlier.resume,
    })
}

/// Whether the ALTER is metadata-only here, and the statements that apply it so.
fn instant(spec: &MigrationSpec, names: &Names, alter: &AlterText, shape: &Shape) -> Instant {
    let why = spec_needs_copy(spec)
        .or_else(|| alter.actions.iter().find_map(|a| pg_scanning_action(a)))
        .or_else(|| shape.rewritten.clone());
    if let Some(why) = why {
        return Instant::Rewrites(why);
    }
    let mut stmts = spec.prepare.clone();
    stmts.extend(
        alter
            .actions
            .iter()
            .map(|a| format!("ALTER TABLE {} {a}", names.src())),
    );
    Instant::MetadataOnly(stmts)
}

pub(crate) fn cutover_steps(names: &Names, table: &Table, deps: &Dependents) -> Vec<String> {
    let mut steps = vec![
        "wait until the change backlog is small".to_string(),
        format!(
            "BEGIN; SET LOCAL lock_timeout; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE (retried with backoff when not granted)",
            names.src()
        ),
        "fence: another session commits pg_logical_emit_message(true, 'wraith', <id>) with synchronous_commit = on".to_string(),
        "read the change stream up to the fence and apply every key under the lock".to_string(),
        format!("ALTER TABLE {} RENAME TO {}", names.src(), crate::pg::sql::ident(&names.old)),
        format!("ALTER TABLE {} RENAME TO {}", names.shadow_q(), crate::pg::sql::ident(&names.table)),
    ];
    for (seq, col, identity) in &table.sequences {
        steps.push(if *identity {
            format!("continue the identity of column {col} from {seq}")
        } else {
            format!("ALTER SEQUENCE {seq} OWNED BY the new table's column {col}")
        });
    }
    steps.push("give the new table's indexes the original names".to_string());
    steps.extend(deps.plan());
    steps.push(
        "COMMIT; validate re-pointed foreign keys; drop the replication slot and publication"
            .to_string(),
    );
    steps
}

/// Version, wal_level and a free replication slot. Returns (version_num, version text).
async fn server_checks(c: &Client) -> anyhow::Result<(i32, String)> {
    let r = c
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
                    current_setting('wal_level'), current_setting('max_replication_slots')::int, \
                    (SELECT count(*)::int FROM pg_replication_slots)",
            &[],
        )
        .await
        .db("reading server settings")?;
    let (num, version, wal_level, max_slots, used): (i32, String, String, i32, i32) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    if num < MIN_VERSION {
        return Err(bad_input(format!(
            "PostgreSQL {version} is too old: wraith needs 14 or newer"
        )));
    }
    if wal_level != "logical" {
        let fix = match managed(c).await? {
            Some(Managed::Rds) => "set rds.logical_replication = 1 in the DB parameter group (the \
                 cluster parameter group on Aurora), then reboot the instance"
                .to_string(),
            Some(Managed::CloudSql) => "set the database flag cloudsql.logical_decoding = on \
                 (gcloud sql instances patch INSTANCE --database-flags=cloudsql.logical_decoding=on), \
                 which restarts the instance"
                .to_string(),
            Some(Managed::Azure) => "set the server parameter wal_level = logical (Azure portal or \
                 az postgres flexible-server parameter set --name wal_level --value logical), then \
                 restart the server"
                .to_string(),
            None => "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (on a managed \
                 service, its own setting: rds.logical_replication, cloudsql.logical_decoding, or \
                 Azure's wal_level parameter)"
                .to_string(),
        };
        return Err(bad_input(format!(
            "wal_level is '{wal_level}', but wraith follows changes through logical decoding, which \
             needs wal_level = logical. Fix: {fix}"
        )));
    }
    if used >= max_slots {
        return Err(bad_input(format!(
            "no free replication slot: max_replication_slots = {max_slots} and {used} are in use. \
             Drop an unused slot (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots \
             (needs a restart)"
        )));
    }
    Ok((num, version))
}

/// The managed service a server belongs to, known by the settings each adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Managed {
    /// Amazon RDS or Aurora.
    Rds,
    CloudSql,
    Azure,
}

async fn managed(c: &Client) -> anyhow::Result<Option<Managed>> {
    // Each service's own settings; `current_setting(.., true)` is NULL where unknown.
    let r = c
        .query_one(
            "SELECT COALESCE(current_setting('rds.extensions', true), \
                             current_setting('rds.logical_replication', true)) IS NOT NULL, \
                    COALESCE(current_setting('cloudsql.logical_decoding', true), \
                             current_setting('cloudsql.iam_authentication', true)) IS NOT NULL, \
                    current_setting('azure.extensions', true) IS NOT NULL",
            &[],
        )
        .await
        .db("looking for a managed service's settings")?;
    Ok(match (r.get(0), r.get(1), r.get(2)) {
        (true, _, _) => Some(Managed::Rds),
        (_, true, _) => Some(Managed::CloudSql),
        (_, _, true) => Some(Managed::Azure),
        _ => None,
    })
}

async fn privileges(c: &Client, names: &Names) -> anyhow::Result<()> {
    let r = c
        .query_one(
            // RDS grants replication through a role, not the attribute.
            "SELECT current_user::text, r.rolsuper OR r.rolreplication OR \
                    COALESCE((SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles \
                              WHERE rolname = 'rds_replication'), false), \
                    pg_has_role(current_user, t.relowner, 'MEMBER'), \
                    has_schema_privilege($1, 'CREATE'), \
                    has_database_privilege(current_database(), 'CREATE'), \
                    pg_get_userbyid(t.relowner)::text, row_security_active(t.oid), \
                    t.relforcerowsecurity \
             FROM pg_roles r, pg_class t \
             WHERE r.rolname = current_user AND t.oid = $2::text::regclass",
            &[&names.schema, &names.src()],
        )
        .await
        .db("checking privileges")?;
    let (user, replication, owner, create_schema, create_db, table_owner): (
        String,
        bool,
        bool,
        bool,
        bool,
        String,
    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    let (row_security, forced): (bool, bool) = (r.get(6), r.get(7));
    let mut missing = Vec::new();
    if row_security {
        // Every session would see only the rows the policies let it see: the copy,
        // the apply and verification would agree on a subset and the rest would be
        // left behind in the old table.
        missing.push(format!(
            "BYPASSRLS: row-level security policies restrict what {user} sees of {}{}, so wraith \
             could not read every row. Run wraith as a role the policies do not restrict (a superuser, \
             or one given BYPASSRLS: ALTER ROLE {user} BYPASSRLS)",
            names.src(),
            if forced {
                " (FORCE ROW LEVEL SECURITY applies them to the owner too)"
            } else {
                ""
            },
        ));
    }
    if !replication {
        missing.push(match managed(c).await? {
            Some(Managed::Rds) => format!(
                "replication (to create a replication slot): on RDS and Aurora, GRANT \
                 rds_replication TO {user}"
            ),
            _ => {
                format!("REPLICATION (to create a replication slot): ALTER ROLE {user} REPLICATION")
            }
        });
    }
    if !owner {
        missing.push(format!(
            "ownership of the table (to swap it): GRANT {table_owner} TO {user}"
        ));
    }
    if !create_schema {
        missing.push(format!(
            "CREATE on schema {} (for the shadow table): GRANT CREATE ON SCHEMA {} TO {user}",
            names.schema, names.schema
        ));
    }
    if !create_db {
        missing.push(format!(
            "CREATE on the database (for the publication): GRANT CREATE ON DATABASE <db> TO {user}"
        ));
    }
    if !missing.is_empty() {
        return Err(bad_input(format!(
            "role {user} lacks privileges wraith needs:\n  - {}",
            missing.join("\n  - ")
        )));
    }
    Ok(())
}

/// What an earlier attempt left behind.
struct Leftovers {
    /// For the plan: what was found and what `--execute` does about it.
    warning: Option<String>,
    /// wraith's marked shadow table is among them.
    shadow: bool,
    /// They are an interrupted resumable run: its last checkpoint.
    resume: Option<Checkpoint>,
}

/// A shadow, slot, publication or checkpoint from an earlier attempt, or an old
/// table in the way. The caller holds the table's run lock, so no live run owns
/// them. An interrupted `--resume` run is continued under `--resume` and refused
/// without it; anything else a real run removes before starting over, and a dry
/// run lists. A slot still in use by some session is never touched.
async fn leftovers(
    c: &Client,
    spec: &MigrationSpec,
    opts: &BackendOptions,
    names: &Names,
) -> anyhow::Result<Leftovers> {
    let r = c
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, \
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $3), \
                    EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $3), \
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $3 AND active), \
                    obj_description(to_regclass($4), 'pg_class') = $5",
            &[
                &names.shadow_q(),
                &names.old_q(),
                &names.slot,
                &names.checkpoint_q(),
                &names.checkpoint_comment(),
            ],
        )
        .await
        .db("looking for leftovers of an earlier run")?;
    let (shadow, old, slot, publication, slot_busy): (bool, bool, bool, bool, bool) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let has_checkpoint = r.get::<_, Option<bool>>(5) == Some(true);
    let marked = shadow && cleanup::is_marked_shadow(c, names).await?;
    if shadow && !marked {
        return Err(bad_input(format!(
            "table {} exists but is not a wraith shadow (no wraith marker comment); wraith builds \
             its shadow under that name: rename or drop that table first",
            names.shadow_q()
        )));
    }
    let mut found = Vec::new();
    if shadow {
        found.push(format!("shadow table {}", names.shadow_q()));
    }
    if slot {
        found.push(format!("replication slot {}", names.slot));
    }
    if publication {
        found.push(format!("publication {}", names.publication));
    }
    let saved = if has_checkpoint {
        found.push(format!("checkpoint table {}", names.checkpoint_q()));
        c.query_opt(
            &format!("SELECT state FROM {} WHERE id = 1", names.checkpoint_q()),
            &[],
        )
        .await
        .db("reading the earlier run's checkpoint")?
        .map(|r| r.get::<_, String>(0))
    } else {
        None
    };
    if slot_busy {
        return Err(bad_input(format!(
            "replication slot {} of an earlier wraith run on {}.{} is still in use by a session; \
             end that session, then run again (or: wraith cleanup --dsn '{}' --table {}.{})",
            names.slot, names.schema, names.table, spec.dsn, names.schema, names.table
        )));
    }
    if old {
        return Err(bad_input(format!(
            "table {} already exists (the original kept by an earlier migration?); \
             wraith renames the original to that name at cutover: drop or rename it first",
            names.old_q()
        )));
    }
    let stream_gone = if !slot {
        Some("its replication slot is gone".to_string())
    } else if !publication || !marked {
        Some("its publication or shadow table is gone".to_string())
    } else {
        None
    };
    let target = format!("{}.{}", names.schema, names.table);
    let left = Leftover {
        found,
        checkpoint: saved,
        stream_gone,
    };
    let remove = async || cleanup::remove(c, names, cleanup::ActiveSlot::Refuse, false).await;
    let settled = checkpoint::settle(left, spec, opts, &target, remove).await?;
    Ok(Leftovers {
        warning: settled.warning,
        shadow: marked && !settled.removed,
        resume: settled.resume,
    })
}

/// The way back after the swap (`--revertible`), from the forward mapping and the
/// table's own columns.
fn reverse(
    table: &Table,
    shape: &Shape,
    spec: &MigrationSpec,
) -> anyhow::Result<crate::plan::reverse::Reverse> {
    use crate::plan::reverse::{self, OldColumn};
    let old: Vec<OldColumn> = table
        .columns
        .iter()
        .map(|c| OldColumn {
            name: c.name.clone(),
            type_name: c.type_name.clone(),
            required: c.not_null && !c.has_default,
            generated: c.generated,
        })
        .collect();
    reverse::derive(&shape.mapping, &old, &spec.reverse_transforms)
}
