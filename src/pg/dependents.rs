//! Everything bound to the table by OID, carried over the swap so that at COMMIT
//! the database is as before except for the table's new shape.
//!
//! - Before the lock (on the shadow): column privileges, row-level security
//!   policies, storage parameters. Table grants, owner and comments come with the
//!   shadow itself (see [`crate::pg::shadow`]).
//! - In the swap transaction: views and materialized views (dropped and recreated
//!   in dependency order with owners, grants, comments and options), triggers with
//!   their enabled state, foreign keys that reference the table (other tables' and
//!   the table's own, `NOT VALID`), publication membership, the original index names,
//!   RLS flags and replica identity.
//! - After commit: `VALIDATE CONSTRAINT` for the foreign keys re-added `NOT VALID`.
//!
//! What cannot move safely is refused in preflight, each object named.

use tokio_postgres::Client;

use crate::error::bad_input;
use crate::pg::catalog::Table;
use crate::pg::conn::DbResult;
use crate::pg::names::Names;
use crate::pg::sql::{ident, literal};
use crate::plan::{Fill, Mapping};

/// A view or materialized view over the table (or over such a view).
#[derive(Debug, Clone)]
pub struct View {
    /// Qualified, quoted name.
    pub name: String,
    pub materialized: bool,
    pub definition: String,
    pub options: Vec<String>,
    pub owner: String,
    pub comment: Option<String>,
    pub grants: Vec<String>,
    /// Index definitions (materialized views).
    pub indexes: Vec<String>,
}

/// A foreign key that references the table.
#[derive(Debug, Clone)]
pub struct InboundFk {
    /// The referencing table, qualified and quoted (the table itself for a self-reference).
    pub table: String,
    pub name: String,
    pub definition: String,
    pub validated: bool,
    pub self_reference: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Dependents {
    pub views: Vec<View>,
    pub fks: Vec<InboundFk>,
    /// (name, definition, enabled state) of user triggers.
    pub triggers: Vec<(String, String, String)>,
    pub publications: Vec<String>,
    /// `CREATE POLICY` bodies after `ON <table>`: (name, rest).
    pub policies: Vec<(String, String)>,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    /// (column, privilege, grantee, grantable).
    pub column_grants: Vec<(String, String, String, bool)>,
    pub reloptions: Vec<String>,
    /// 'd', 'f', 'i' or 'n'.
    pub replica_identity: String,
    /// The replica identity index, when `replica_identity` is 'i'.
    pub replica_index: Option<String>,
    pub warnings: Vec<String>,
}

/// `views(oid, depth)`: the views and materialized views over table `$1`, and over
/// those, with the depth of their longest path to the table (the order they are
/// recreated in).
pub const VIEWS_OVER: &str = "WITH RECURSIVE deps(oid, depth) AS ( \
       SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
          AND d.refobjid = $1 AND r.ev_class <> $1 \
       UNION \
       SELECT r.ev_class, deps.depth + 1 FROM deps \
         JOIN pg_depend d ON d.refobjid = deps.oid AND d.classid = 'pg_rewrite'::regclass \
          AND d.refclassid = 'pg_class'::regclass \
         JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> deps.oid AND deps.depth < 50), \
     views AS (SELECT oid, max(depth) AS depth FROM deps GROUP BY oid)";

/// Reads what depends on the table and refuses what cannot be carried over.
/// `mapping` is the new shape: objects using dropped or renamed columns are refused.
pub async fn read(
    c: &Client,
    names: &Names,
    table: &Table,
    mapping: &Mapping,
    server_version: i32,
) -> anyhow::Result<Dependents> {
    let oid = table.oid;
    let mut refused = Vec::new();

    // Row filters and column lists on publications exist from PostgreSQL 15.
    let publication_filters = if server_version >= 150000 {
        " UNION ALL \
         SELECT 'publication ' || p.pubname::text || ' (it has a row filter or column list for the table)' \
           FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid \
          WHERE pr.prrelid = $1 AND (pr.prqual IS NOT NULL OR pr.prattrs IS NOT NULL)"
    } else {
        ""
    };
    for r in c
        .query(
            &format!("SELECT 'rule ' || rulename::text FROM pg_rewrite WHERE ev_class = $1 AND rulename <> '_RETURN' \
             UNION ALL \
             SELECT 'event trigger ' || evtname::text || ' (it would fire on the swap''s DDL)' FROM pg_event_trigger \
              WHERE evtenabled <> 'D' \
             UNION ALL \
             SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname::text || ' of the table''s row type' \
               FROM pg_attribute a JOIN pg_class t ON t.oid = $1 \
              WHERE a.atttypid IN (t.reltype, (SELECT typarray FROM pg_type WHERE oid = t.reltype)) \
                AND a.attrelid <> $1 AND NOT a.attisdropped \
             UNION ALL \
             SELECT 'function ' || p.oid::regprocedure::text || ' (uses the table''s row type)' \
               FROM pg_proc p JOIN pg_class t ON t.oid = $1 \
              WHERE p.prorettype = t.reltype OR t.reltype = ANY (p.proargtypes) \
                 OR p.prosrc ~* ('\\m' || t.relname || '%rowtype'){publication_filters}"),
            &[&oid],
        )
        .await
        .db("looking for dependents wraith cannot move")?
    {
        refused.push(r.get::<_, String>(0));
    }

    // Objects that use a column the new shape drops or renames.
    let changed: Vec<String> = table
        .columns
        .iter()
        .filter(|col| mapping.carried_name(&col.name) != Some(col.name.as_str()))
        .filter(|col| {
            // A column filled by USING or a transform keeps its name: only its values change.
            !mapping
                .columns
                .iter()
                .any(|m| m.target == col.name && matches!(m.fill, Fill::Using | Fill::Transform))
        })
        .map(|col| col.name.clone())
        .collect();
    if !changed.is_empty() {
        for r in c
            .query(
                "SELECT DISTINCT CASE d.classid \
                   WHEN 'pg_rewrite'::regclass THEN 'view ' || (SELECT ev_class::regclass::text FROM pg_rewrite WHERE oid = d.objid) \
                   WHEN 'pg_trigger'::regclass THEN 'trigger ' || (SELECT tgname::text FROM pg_trigger WHERE oid = d.objid) \
                   WHEN 'pg_policy'::regclass THEN 'policy ' || (SELECT polname::text FROM pg_policy WHERE oid = d.objid) \
                   WHEN 'pg_constraint'::regclass THEN 'constraint ' || (SELECT conname::text FROM pg_constraint WHERE oid = d.objid) \
                   ELSE 'object ' || d.classid::regclass::text END || ' (uses column ' || a.attname::text || ')' \
                 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                 WHERE d.refobjid = $1 AND d.refobjsubid > 0 AND a.attname::text = ANY ($2) \
                   AND d.deptype = 'n' \
                   AND (d.classid <> 'pg_constraint'::regclass OR EXISTS \
                        (SELECT 1 FROM pg_constraint k WHERE k.oid = d.objid AND k.confrelid = $1))",
                &[&oid, &changed],
            )
            .await
            .db("looking for dependents of changed columns")?
        {
            refused.push(r.get::<_, String>(0));
        }
    }
    if !refused.is_empty() {
        return Err(bad_input(format!(
            "{}.{} has dependents wraith cannot carry over this swap yet: {}. Nothing was changed",
            names.schema,
            names.table,
            refused.join("; ")
        )));
    }

    let mut deps = Dependents::default();

    let views = c
        .query(
            &format!(
                "{VIEWS_OVER} \
                 SELECT c.oid, c.oid::regclass::text, c.relkind = 'm', pg_get_viewdef(c.oid), \
                        coalesce(c.reloptions, '{{}}'), quote_ident(pg_get_userbyid(c.relowner)), \
                        obj_description(c.oid, 'pg_class') \
                 FROM views v JOIN pg_class c ON c.oid = v.oid \
                 ORDER BY v.depth, c.oid"
            ),
            &[&oid],
        )
        .await
        .db("reading the views over the table")?;
    for v in views {
        let view_oid: u32 = v.get(0);
        let name: String = v.get(1);
        let materialized: bool = v.get(2);
        let definition: String = v.get(3);
        deps.views.push(View {
            grants: grants_of(c, view_oid, &name).await?,
            indexes: c
                .query(
                    "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1",
                    &[&view_oid],
                )
                .await
                .db("reading a materialized view's indexes")?
                .iter()
                .map(|r| r.get(0))
                .collect(),
            name,
            materialized,
            definition: definition.trim().trim_end_matches(';').to_string(),
            options: v.get(4),
            owner: v.get(5),
            comment: v.get(6),
        });
    }

    for r in c
        .query(
            "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid), convalidated, \
                    conrelid = confrelid \
             FROM pg_constraint WHERE contype = 'f' AND confrelid = $1 ORDER BY conrelid, conname",
            &[&oid],
        )
        .await
        .db("reading the foreign keys that reference the table")?
    {
        deps.fks.push(InboundFk {
            table: r.get(0),
            name: r.get(1),
            definition: r.get(2),
            validated: r.get(3),
            self_reference: r.get(4),
        });
    }

    deps.triggers = c
        .query(
            "SELECT tgname::text, pg_get_triggerdef(oid), tgenabled::text FROM pg_trigger \
             WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY tgname",
            &[&oid],
        )
        .await
        .db("reading the table's triggers")?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    deps.publications = c
        .query(
            "SELECT quote_ident(p.pubname) FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid \
             WHERE pr.prrelid = $1 AND p.pubname <> $2 ORDER BY 1",
            &[&oid, &names.publication],
        )
        .await
        .db("reading the table's publications")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !deps.publications.is_empty() {
        deps.warnings.push(format!(
            "the table is published ({}): subscribers map tables by name and will receive the new shape; \
             update their tables first",
            deps.publications.join(", ")
        ));
    }

    deps.policies = c
        .query(
            "SELECT policyname::text, permissive, \
                    (SELECT string_agg(CASE WHEN r = 'public' THEN 'PUBLIC' ELSE quote_ident(r) END, ', ') \
                       FROM unnest(roles) r), \
                    cmd, qual, with_check \
             FROM pg_policies WHERE schemaname = $1 AND tablename = $2 ORDER BY policyname",
            &[&names.schema, &names.table],
        )
        .await
        .db("reading the table's row-level security policies")?
        .iter()
        .map(|r| {
            let (name, permissive, roles, cmd): (String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let qual: Option<String> = r.get(4);
            let check: Option<String> = r.get(5);
            let mut rest = format!("AS {permissive} FOR {cmd} TO {roles}");
            if let Some(q) = qual {
                rest.push_str(&format!(" USING ({q})"));
            }
            if let Some(w) = check {
                rest.push_str(&format!(" WITH CHECK ({w})"));
            }
            (name, rest)
        })
        .collect();

    let t = c
        .query_one(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, coalesce(c.reloptions, '{}'), c.relreplident::text, \
                    (SELECT quote_ident(ic.relname) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                      WHERE i.indrelid = c.oid AND i.indisreplident) \
             FROM pg_class c WHERE c.oid = $1",
            &[&oid],
        )
        .await
        .db("reading the table's settings")?;
    deps.rls_enabled = t.get(0);
    deps.rls_forced = t.get(1);
    deps.reloptions = t.get(2);
    deps.replica_identity = t.get(3);
    deps.replica_index = t.get(4);

    for r in c
        .query(
            "SELECT a.attname::text, x.privilege_type, \
                    CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END, \
                    x.is_grantable \
             FROM pg_attribute a, aclexplode(a.attacl) x \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL \
             ORDER BY 1, 2, 3",
            &[&oid],
        )
        .await
        .db("reading column privileges")?
    {
        let column: String = r.get(0);
        if let Some(new) = mapping.carried_name(&column).or_else(|| {
            mapping.columns.iter().find(|m| m.target == column).map(|m| m.target.as_str())
        }) {
            deps.column_grants.push((new.to_string(), r.get(1), r.get(2), r.get(3)));
        }
    }
    Ok(deps)
}

/// `GRANT ...` statements giving `name` (quoted) the grants `rel` has.
pub async fn grants_of(c: &Client, rel: u32, name: &str) -> anyhow::Result<Vec<String>> {
    Ok(c
        .query(
            "SELECT x.privilege_type, \
                    CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END, \
                    x.is_grantable \
             FROM pg_class t, aclexplode(t.relacl) x WHERE t.oid = $1 AND x.grantee <> t.relowner",
            &[&rel],
        )
        .await
        .db("reading grants")?
        .iter()
        .map(|r| {
            let (privilege, grantee, grantable): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
            format!(
                "GRANT {privilege} ON {name} TO {grantee}{}",
                if grantable { " WITH GRANT OPTION" } else { "" }
            )
        })
        .collect())
}

impl Dependents {
    /// Applied to the shadow before the lock (RLS stays off on the shadow until the
    /// swap: a forced policy would hide rows from the copy).
    pub fn before_lock(&self, shadow: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.reloptions.is_empty() {
            out.push(format!(
                "ALTER TABLE {shadow} SET ({})",
                self.reloptions.join(", ")
            ));
        }
        for (column, privilege, grantee, grantable) in &self.column_grants {
            out.push(format!(
                "GRANT {privilege} ({}) ON {shadow} TO {grantee}{}",
                ident(column),
                if *grantable { " WITH GRANT OPTION" } else { "" }
            ));
        }
        for (name, rest) in &self.policies {
            out.push(format!("CREATE POLICY {} ON {shadow} {rest}", ident(name)));
        }
        out
    }

    /// In the swap transaction, before the renames: what still points at the old table goes.
    pub fn before_rename(&self) -> Vec<String> {
        self.views
            .iter()
            .rev()
            .map(|v| {
                format!(
                    "DROP {} {}",
                    if v.materialized {
                        "MATERIALIZED VIEW"
                    } else {
                        "VIEW"
                    },
                    v.name
                )
            })
            .collect()
    }

    /// With a way back kept (`--revertible`): what the swap re-created on the new
    /// table and must not act on the old one while the way back writes it (its
    /// triggers would fire again; a reference to itself refuses a row deleted and
    /// re-inserted while its children point at it). A revert's swap brings them
    /// back from the new table's own.
    pub fn set_aside(&self, old: &str) -> Vec<String> {
        let triggers = self
            .triggers
            .iter()
            .map(|(name, _, _)| format!("DROP TRIGGER IF EXISTS {} ON {old}", ident(name)));
        let own = self.fks.iter().filter(|f| f.self_reference).map(|f| {
            format!(
                "ALTER TABLE {old} DROP CONSTRAINT IF EXISTS {}",
                ident(&f.name)
            )
        });
        triggers.chain(own).collect()
    }

    /// In the swap transaction, after the renames (`new` is the table's name again).
    pub fn after_rename(&self, new: &str, old: &str) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.views {
            let kind = if v.materialized {
                "MATERIALIZED VIEW"
            } else {
                "VIEW"
            };
            let with = if v.options.is_empty() {
                String::new()
            } else {
                format!(" WITH ({})", v.options.join(", "))
            };
            out.push(format!(
                "CREATE {kind} {}{with} AS {}",
                v.name, v.definition
            ));
            out.extend(v.indexes.iter().cloned());
            out.push(format!("ALTER {kind} {} OWNER TO {}", v.name, v.owner));
            out.extend(v.grants.iter().cloned());
            if let Some(comment) = &v.comment {
                out.push(format!(
                    "COMMENT ON {kind} {} IS {}",
                    v.name,
                    literal(comment)
                ));
            }
        }
        for (name, definition, enabled) in &self.triggers {
            // The definition names the table, which now is the new one.
            out.push(definition.clone());
            let state = match enabled.as_str() {
                "D" => Some("DISABLE TRIGGER"),
                "R" => Some("ENABLE REPLICA TRIGGER"),
                "A" => Some("ENABLE ALWAYS TRIGGER"),
                _ => None,
            };
            if let Some(state) = state {
                out.push(format!("ALTER TABLE {new} {state} {}", ident(name)));
            }
        }
        for fk in &self.fks {
            let on = if fk.self_reference {
                new.to_string()
            } else {
                fk.table.clone()
            };
            if !fk.self_reference {
                out.push(format!(
                    "ALTER TABLE {on} DROP CONSTRAINT {}",
                    ident(&fk.name)
                ));
            }
            // Re-added NOT VALID: validating would hold the lock for a full scan.
            let def = fk.definition.trim_end_matches(" NOT VALID");
            out.push(format!(
                "ALTER TABLE {on} ADD CONSTRAINT {} {def} NOT VALID",
                ident(&fk.name)
            ));
        }
        for p in &self.publications {
            out.push(format!("ALTER PUBLICATION {p} DROP TABLE {old}"));
            out.push(format!("ALTER PUBLICATION {p} ADD TABLE {new}"));
        }
        if self.rls_enabled {
            out.push(format!("ALTER TABLE {new} ENABLE ROW LEVEL SECURITY"));
        }
        if self.rls_forced {
            out.push(format!("ALTER TABLE {new} FORCE ROW LEVEL SECURITY"));
        }
        match (self.replica_identity.as_str(), &self.replica_index) {
            ("f", _) => out.push(format!("ALTER TABLE {new} REPLICA IDENTITY FULL")),
            ("i", Some(index)) => out.push(format!(
                "ALTER TABLE {new} REPLICA IDENTITY USING INDEX {index}"
            )),
            _ => {}
        }
        out
    }

    /// After COMMIT: validate the foreign keys re-added NOT VALID (those that were valid).
    pub fn after_commit(&self, new: &str) -> Vec<(String, String)> {
        self.fks
            .iter()
            .filter(|fk| fk.validated)
            .map(|fk| {
                let on = if fk.self_reference {
                    new.to_string()
                } else {
                    fk.table.clone()
                };
                (
                    fk.name.clone(),
                    format!("ALTER TABLE {on} VALIDATE CONSTRAINT {}", ident(&fk.name)),
                )
            })
            .collect()
    }

    /// What the dry run lists as moved.
    pub fn plan(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.views {
            out.push(format!(
                "recreate {} {} on the new table",
                if v.materialized {
                    "materialized view"
                } else {
                    "view"
                },
                v.name
            ));
        }
        for (name, _, _) in &self.triggers {
            out.push(format!("recreate trigger {name} on the new table"));
        }
        for fk in &self.fks {
            out.push(format!(
                "re-point foreign key {} of {} at the new table (NOT VALID, validated after commit)",
                fk.name, fk.table
            ));
        }
        for p in &self.publications {
            out.push(format!("move publication {p} to the new table"));
        }
        for (name, _) in &self.policies {
            out.push(format!("copy row-level security policy {name}"));
        }
        if !self.column_grants.is_empty() {
            out.push(format!(
                "copy {} column privileges",
                self.column_grants.len()
            ));
        }
        out
    }
}
