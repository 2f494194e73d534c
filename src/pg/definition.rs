//! The table's definition as one line per object (see [`crate::engine::definition`]):
//! read in preflight and again under the cutover's lock, where no other session
//! can change it, so the swap commits only over what the shadow was built from and
//! what [`crate::pg::dependents`] carries over.

use tokio_postgres::Client;

use crate::engine::definition::Definition;
use crate::pg::conn::DbResult;
use crate::pg::dependents::VIEWS_OVER;
use crate::pg::names::Names;

/// `$1`: the table's oid; `$2`: wraith's shadow (its foreign keys to the table are
/// wraith's own); `$3`: wraith's publication.
const LINES: &str = "\
    SELECT format('table: kind %s, persistence %s, owner %s, access method %s, tablespace %s, \
                   options %s, replica identity %s, row security %s/%s, partition %s, of type %s, \
                   grants %s, comment %s', \
                  c.relkind, c.relpersistence, pg_get_userbyid(c.relowner), c.relam, c.reltablespace, \
                  c.reloptions, c.relreplident, c.relrowsecurity, c.relforcerowsecurity, \
                  c.relispartition, c.reloftype, c.relacl, obj_description(c.oid, 'pg_class')) \
      FROM pg_class c WHERE c.oid = $1 \
    UNION ALL \
    SELECT format('column %s: %s, not null %s, default %s, generated %s, identity %s, collation %s, \
                   storage %s, compression %s, statistics %s, options %s, grants %s, comment %s', \
                  quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                  pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, a.attcollation, \
                  a.attstorage, a.attcompression, a.attstattarget, a.attoptions, a.attacl, \
                  col_description(a.attrelid, a.attnum)) \
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
    UNION ALL \
    SELECT format('constraint %s: %s, comment %s', quote_ident(k.conname), \
                  pg_get_constraintdef(k.oid), obj_description(k.oid, 'pg_constraint')) \
      FROM pg_constraint k WHERE k.conrelid = $1 \
    UNION ALL \
    SELECT format('index %s: %s, valid %s, replica identity %s, clustered %s, comment %s', \
                  quote_ident(ic.relname), pg_get_indexdef(i.indexrelid), i.indisvalid, \
                  i.indisreplident, i.indisclustered, obj_description(i.indexrelid, 'pg_class')) \
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1 \
    UNION ALL \
    SELECT format('trigger %s: %s, enabled %s, comment %s', quote_ident(tg.tgname), \
                  pg_get_triggerdef(tg.oid), tg.tgenabled, obj_description(tg.oid, 'pg_trigger')) \
      FROM pg_trigger tg WHERE tg.tgrelid = $1 AND NOT tg.tgisinternal \
    UNION ALL \
    SELECT format('policy %s: for %s, permissive %s, to %s, using %s, with check %s', \
                  quote_ident(p.polname), p.polcmd, p.polpermissive, p.polroles::regrole[], \
                  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)) \
      FROM pg_policy p WHERE p.polrelid = $1 \
    UNION ALL \
    SELECT format('rule %s: %s', quote_ident(r.rulename), pg_get_ruledef(r.oid)) \
      FROM pg_rewrite r WHERE r.ev_class = $1 \
    UNION ALL \
    SELECT format('statistics %s: %s', quote_ident(x.stxname), pg_get_statisticsobjdef(x.oid)) \
      FROM pg_statistic_ext x WHERE x.stxrelid = $1 \
    UNION ALL \
    SELECT format('publication %s', quote_ident(pb.pubname)) \
      FROM pg_publication_rel pr JOIN pg_publication pb ON pb.oid = pr.prpubid \
     WHERE pr.prrelid = $1 AND pb.pubname <> $3 \
    UNION ALL \
    SELECT format('foreign key %s of %s: %s', quote_ident(k.conname), k.conrelid::regclass, \
                  pg_get_constraintdef(k.oid)) \
      FROM pg_constraint k \
     WHERE k.confrelid = $1 AND k.conrelid <> $1 AND k.conrelid <> coalesce(to_regclass($2)::oid, 0::oid) \
    UNION ALL \
    SELECT format('sequence %s of column %s, identity %s', s.oid::regclass, quote_ident(a.attname), \
                  dp.deptype = 'i') \
      FROM pg_depend dp JOIN pg_class s ON s.oid = dp.objid AND s.relkind = 'S' \
      JOIN pg_attribute a ON a.attrelid = dp.refobjid AND a.attnum = dp.refobjsubid \
     WHERE dp.refobjid = $1 AND dp.classid = 'pg_class'::regclass \
       AND dp.refclassid = 'pg_class'::regclass AND dp.deptype IN ('a', 'i') \
    UNION ALL \
    SELECT format('inheritance %s of %s', h.inhrelid::regclass, h.inhparent::regclass) \
      FROM pg_inherits h WHERE h.inhrelid = $1 OR h.inhparent = $1 \
    UNION ALL \
    SELECT format('event trigger %s: on %s, enabled %s', quote_ident(e.evtname), e.evtevent, e.evtenabled) \
      FROM pg_event_trigger e \
    UNION ALL \
    SELECT format('view %s: %s, owner %s, options %s, grants %s, comment %s, indexes %s', \
                  v.oid::regclass, pg_get_viewdef(v.oid), pg_get_userbyid(vc.relowner), vc.reloptions, \
                  vc.relacl, obj_description(v.oid, 'pg_class'), \
                  (SELECT string_agg(pg_get_indexdef(vi.indexrelid), '; ' ORDER BY vi.indexrelid) \
                     FROM pg_index vi WHERE vi.indrelid = v.oid)) \
      FROM views v JOIN pg_class vc ON vc.oid = v.oid";

/// Reads the definition of the table `oid`.
pub async fn read(c: &Client, names: &Names, oid: u32) -> anyhow::Result<Definition> {
    let rows = c
        .query(
            &format!("{VIEWS_OVER} {LINES}"),
            &[&oid, &names.shadow_q(), &names.publication],
        )
        .await
        .db("reading the table's definition")?;
    Ok(Definition::new(
        rows.iter().map(|r| r.get::<_, String>(0)).collect(),
    ))
}
