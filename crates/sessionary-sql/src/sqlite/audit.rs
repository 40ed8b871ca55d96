//! The audit log on SQLite: table `audit_log` (migration 3).
//!
//! Appends are one `BEGIN IMMEDIATE` transaction on the writer per batch;
//! queries run on a reader (the writer with the exclusive cache) and use the
//! index by user or by session when filtered so, else the primary key.

use sessionary_core::audit::{AuditEntry, AuditQuery, AuditRecord};
use sessionary_core::store::StoreResult;
use sessionary_core::{Timestamp, UserId};
use sqlx::sqlite::SqliteRow;

use super::{Db, begin, decode_id, get};
use crate::codec::{decode_ip, decode_user, u64_from_column};
use crate::error::from_sqlx;

const INSERT: &str = "INSERT INTO audit_log (at, kind, session_id, user_id, ip, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const SWEEP: &str = "DELETE FROM audit_log WHERE seq IN \
     (SELECT seq FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)";

fn decode(row: &SqliteRow) -> StoreResult<AuditRecord> {
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

/// A count as an SQLite integer, saturating.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Db {
    pub(crate) async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        for e in &entries {
            sqlx::query(INSERT)
                .bind(e.at.0)
                .bind(e.kind.as_str())
                .bind(e.session_id.as_ref().map(|s| s.as_bytes().as_slice()))
                .bind(e.user.as_ref().map(UserId::as_str))
                .bind(e.ip.map(|ip| ip.to_string()))
                .bind(e.detail.as_str())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        }
        tx.commit().await.map_err(from_sqlx)
    }

    pub(crate) async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        // Only the conditions in use, so SQLite picks the matching index; the
        // parameters are numbered in a fixed order and unused ones bound too.
        let mut sql = String::from(
            "SELECT seq, at, kind, session_id, user_id, ip, detail FROM audit_log WHERE seq < ?1",
        );
        if q.user.is_some() {
            sql.push_str(" AND user_id = ?2");
        }
        if q.session_id.is_some() {
            sql.push_str(" AND session_id = ?3");
        }
        if q.kind.is_some() {
            sql.push_str(" AND kind = ?4");
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?5");
        let rows = sqlx::query(&sql)
            .bind(q.before.map_or(i64::MAX, to_i64))
            .bind(q.user.as_ref().map(UserId::as_str))
            .bind(q.session_id.as_ref().map(|s| s.as_bytes().as_slice()))
            .bind(q.kind.as_deref())
            .bind(to_i64(q.limit as u64))
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(from_sqlx)?;
        rows.iter().map(decode).collect()
    }

    pub(crate) async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let done = sqlx::query(SWEEP)
            .bind(before.0)
            .bind(to_i64(max as u64))
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}
