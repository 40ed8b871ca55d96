//! The audit log on PostgreSQL: table `audit_log`.
//!
//! A batch is appended in one transaction with one `INSERT ... SELECT FROM
//! unnest(...)`, in the batch's order. Appends are serialised by an advisory
//! lock held until the commit, so sequence numbers are committed in order: a
//! reader paging by `seq` never misses an entry that another node's append,
//! holding a lower number, commits a moment later.

use sessionary_core::audit::{AuditEntry, AuditQuery, AuditRecord};
use sessionary_core::store::StoreResult;
use sessionary_core::{Timestamp, UserId};
use sqlx::postgres::PgRow;

use super::{PgStore, decode_id, get};
use crate::codec::{decode_ip, decode_user, u64_from_column};
use crate::error::from_sqlx;

/// Key of the advisory lock that serialises appends ("SeAu").
const APPEND_LOCK: i64 = 0x5365_4175;

const INSERT: &str = "INSERT INTO audit_log (at, kind, session_id, user_id, ip, detail) \
     SELECT at, kind, session_id, user_id, ip, detail \
     FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[]) \
     WITH ORDINALITY AS e (at, kind, session_id, user_id, ip, detail, n) ORDER BY n";
const SWEEP: &str = "DELETE FROM audit_log WHERE seq IN \
     (SELECT seq FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)";

fn decode(row: &PgRow) -> StoreResult<AuditRecord> {
    let session: Option<&[u8]> = get(row, 3)?;
    let user: Option<&str> = get(row, 4)?;
    Ok(AuditRecord {
        seq: u64_from_column(get(row, 0)?, "audit_log.seq")?,
        entry: AuditEntry {
            at: Timestamp(get(row, 1)?),
            kind: get::<String>(row, 2)?,
            session_id: match session {
                Some(_) => Some(decode_id(row, 3, "audit_log.session_id")?),
                None => None,
            },
            user: decode_user(user, "audit_log.user_id")?,
            ip: decode_ip(get(row, 5)?)?,
            detail: get::<String>(row, 6)?,
        },
    })
}

/// A count as a `bigint`, saturating.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    pub(crate) async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let at: Vec<i64> = entries.iter().map(|e| e.at.0).collect();
        let kind: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        let session: Vec<Option<&[u8]>> = entries
            .iter()
            .map(|e| e.session_id.as_ref().map(|s| s.as_bytes().as_slice()))
            .collect();
        let user: Vec<Option<&str>> = entries
            .iter()
            .map(|e| e.user.as_ref().map(UserId::as_str))
            .collect();
        let ip: Vec<Option<String>> = entries
            .iter()
            .map(|e| e.ip.map(|ip| ip.to_string()))
            .collect();
        let detail: Vec<&str> = entries.iter().map(|e| e.detail.as_str()).collect();
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        sqlx::query(INSERT)
            .bind(at)
            .bind(kind)
            .bind(session)
            .bind(user)
            .bind(ip)
            .bind(detail)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)
    }

    pub(crate) async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        // Only the conditions in use, so the planner picks the matching index;
        // parameters are numbered as they are added.
        let mut sql = String::from(
            "SELECT seq, at, kind, session_id, user_id, ip, detail FROM audit_log WHERE seq < $1",
        );
        let mut n = 1;
        let mut param = |sql: &mut String, cond: &str| {
            n += 1;
            sql.push_str(&format!(" AND {cond} = ${n}"));
        };
        if q.user.is_some() {
            param(&mut sql, "user_id");
        }
        if q.session_id.is_some() {
            param(&mut sql, "session_id");
        }
        if q.kind.is_some() {
            param(&mut sql, "kind");
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${n}"));
        let mut query = sqlx::query(&sql).bind(q.before.map_or(i64::MAX, to_i64));
        if let Some(user) = &q.user {
            query = query.bind(user.as_str());
        }
        if let Some(session) = &q.session_id {
            query = query.bind(session.as_bytes().as_slice());
        }
        if let Some(kind) = &q.kind {
            query = query.bind(kind.as_str());
        }
        let rows = query
            .bind(to_i64(q.limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        rows.iter().map(decode).collect()
    }

    pub(crate) async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        let done = sqlx::query(SWEEP)
            .bind(before.0)
            .bind(to_i64(max as u64))
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}
