//! Refresh token families on SQLite.
//!
//! Every operation is one `BEGIN IMMEDIATE` transaction on the writer, in both
//! modes: families are never cached, so the exclusive cache needs no new
//! invariant. When an operation touches or ends the family's session, it does so
//! as the session operations do (drop the cached entries and apply the pending
//! touch before the write, cache the committed record after), so "cached record
//! = committed row with its pending touch applied" still holds.

use std::sync::Arc;

use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, FamilyId, RefreshFamily, RefreshOutcome, RefreshRequest, RefreshUse,
};
use sessionary_core::store::StoreResult;
use sessionary_core::{Sealed, SessionId, StoreError, Timestamp, TokenHash};
use sqlx::sqlite::SqliteConnection;

use super::{Db, begin, decode_family, select_by_id, set_last_seen};
use crate::codec::version_to_i64;
use crate::error::{Error, from_sqlx};

macro_rules! family_cols {
    () => {
        "f.id, f.session_id, f.user_id, f.created_at, f.absolute_expires_at, f.generation, \
         f.current_hash, f.rotated_at, f.previous_hash, f.successor, f.revoked"
    };
}

const SELECT_BY_HASH: &str = concat!(
    "SELECT ",
    family_cols!(),
    " FROM refresh_hashes h JOIN refresh_families f ON f.id = h.family_id \
     WHERE h.token_hash = ?1"
);
const SELECT_LIVE_BY_SESSION: &str = concat!(
    "SELECT ",
    family_cols!(),
    " FROM refresh_families f WHERE f.session_id = ?1 AND f.revoked IS NULL ORDER BY f.created_at, f.id"
);
const INSERT_FAMILY: &str = "INSERT INTO refresh_families (id, session_id, user_id, created_at, \
     absolute_expires_at, generation, current_hash, rotated_at, previous_hash, successor, revoked) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const ROTATE_FAMILY: &str = "UPDATE refresh_families SET generation = ?2, current_hash = ?3, \
     rotated_at = ?4, previous_hash = ?5, successor = ?6 WHERE id = ?1";
const REVOKE_FAMILY: &str = "UPDATE refresh_families SET revoked = ?2 WHERE id = ?1";
const INSERT_HASH: &str = "INSERT INTO refresh_hashes (token_hash, family_id) VALUES (?1, ?2)";
const HASH_IN_USE: &str = "SELECT EXISTS (SELECT 1 FROM refresh_hashes WHERE token_hash = ?1)";

async fn select_family(
    conn: &mut SqliteConnection,
    hash: &TokenHash,
) -> StoreResult<Option<RefreshFamily>> {
    let row = sqlx::query(SELECT_BY_HASH)
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.as_ref().map(decode_family).transpose()
}

async fn hash_in_use(conn: &mut SqliteConnection, hash: &TokenHash) -> StoreResult<bool> {
    sqlx::query_scalar(HASH_IN_USE)
        .bind(hash.as_bytes().as_slice())
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)
}

async fn insert_hash(
    conn: &mut SqliteConnection,
    hash: &TokenHash,
    family: &FamilyId,
) -> StoreResult<()> {
    sqlx::query(INSERT_HASH)
        .bind(hash.as_bytes().as_slice())
        .bind(family.as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

async fn set_revoked(
    conn: &mut SqliteConnection,
    family: &mut RefreshFamily,
    reason: FamilyEnd,
) -> StoreResult<()> {
    family.revoked = Some(reason);
    sqlx::query(REVOKE_FAMILY)
        .bind(family.id.as_bytes().as_slice())
        .bind(reason.as_str())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

impl Db {
    pub(crate) async fn create_refresh_family(
        &self,
        family: RefreshFamily,
    ) -> StoreResult<CreateFamily> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut rec) = select_by_id(&mut tx, &family.session_id).await? else {
            return Ok(CreateFamily::SessionGone);
        };
        // Only read: the pending touch decides liveness, the row is not written.
        self.overlay(&mut rec);
        if !rec.is_live(family.created_at) || rec.user.as_ref() != Some(&family.user) {
            return Ok(CreateFamily::SessionGone);
        }
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM refresh_families WHERE id = ?1) \
             OR EXISTS (SELECT 1 FROM refresh_hashes WHERE token_hash = ?2)",
        )
        .bind(family.id.as_bytes().as_slice())
        .bind(family.current_hash.as_bytes().as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if taken {
            return Ok(CreateFamily::Duplicate);
        }
        sqlx::query(INSERT_FAMILY)
            .bind(family.id.as_bytes().as_slice())
            .bind(family.session_id.as_bytes().as_slice())
            .bind(family.user.as_str())
            .bind(family.created_at.0)
            .bind(family.absolute_expires_at.0)
            .bind(version_to_i64(family.generation)?)
            .bind(family.current_hash.as_bytes().as_slice())
            .bind(family.rotated_at.0)
            .bind(
                family
                    .previous_hash
                    .as_ref()
                    .map(|h| h.as_bytes().as_slice()),
            )
            .bind(family.successor.as_ref().map(Sealed::as_bytes))
            .bind(family.revoked.map(FamilyEnd::as_str))
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        insert_hash(&mut tx, &family.current_hash, &family.id).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(CreateFamily::Created)
    }

    pub(crate) async fn refresh(&self, req: RefreshRequest) -> StoreResult<RefreshOutcome> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut family) = select_family(&mut tx, &req.presented).await? else {
            return Ok(RefreshOutcome::Missing);
        };
        let verdict = family.classify(&req.presented, req.now, req.grace_ms);
        match verdict {
            RefreshUse::Revoked => return Ok(RefreshOutcome::Revoked(family)),
            RefreshUse::Expired => return Ok(RefreshOutcome::Expired(family)),
            RefreshUse::Current | RefreshUse::Retry | RefreshUse::Reuse => {}
        }
        let current = verdict == RefreshUse::Current;
        let session = select_by_id(&mut tx, &family.session_id).await?;
        if verdict == RefreshUse::Reuse {
            set_revoked(&mut tx, &mut family, FamilyEnd::Reused).await?;
            let ended = match session {
                Some(mut rec) => {
                    self.settle(&mut rec);
                    self.remove(&mut tx, &rec, req.reuse).await?;
                    Some(rec)
                }
                None => None,
            };
            tx.commit().await.map_err(from_sqlx)?;
            if let Some(rec) = &ended {
                self.ended(&rec.id);
            }
            return Ok(RefreshOutcome::Reused {
                family,
                ended: ended.map(Arc::new),
            });
        }
        let Some(mut rec) = session else {
            set_revoked(&mut tx, &mut family, FamilyEnd::SessionEnded).await?;
            tx.commit().await.map_err(from_sqlx)?;
            return Ok(RefreshOutcome::SessionEnded {
                family,
                session: None,
            });
        };
        // The session may be touched below: no touch may land on its cached
        // entries from here, and the pending one counts.
        self.settle(&mut rec);
        if !rec.is_live(req.now) {
            set_revoked(&mut tx, &mut family, FamilyEnd::SessionEnded).await?;
            tx.commit().await.map_err(from_sqlx)?;
            let rec = Arc::new(rec);
            self.remember(&rec);
            return Ok(RefreshOutcome::SessionEnded {
                family,
                session: Some(rec),
            });
        }
        if current {
            if hash_in_use(&mut tx, &req.next_hash).await? {
                return Err(StoreError::backend(Error::TokenHashInUse));
            }
            family.generation = family
                .generation
                .checked_add(1)
                .ok_or_else(|| StoreError::backend(Error::OutOfRange("generation")))?;
            family.previous_hash = Some(family.current_hash);
            family.current_hash = req.next_hash;
            family.rotated_at = req.now;
            family.successor = Some(req.next_sealed);
            sqlx::query(ROTATE_FAMILY)
                .bind(family.id.as_bytes().as_slice())
                .bind(version_to_i64(family.generation)?)
                .bind(family.current_hash.as_bytes().as_slice())
                .bind(family.rotated_at.0)
                .bind(
                    family
                        .previous_hash
                        .as_ref()
                        .map(|h| h.as_bytes().as_slice()),
                )
                .bind(family.successor.as_ref().map(Sealed::as_bytes))
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            insert_hash(&mut tx, &family.current_hash, &family.id).await?;
        }
        // Refreshing is activity: the session is touched in the same transaction.
        let touched = req.now > rec.last_seen_at;
        if touched {
            rec.last_seen_at = req.now;
            set_last_seen(&mut tx, &rec).await?;
        }
        tx.commit().await.map_err(from_sqlx)?;
        if touched {
            self.written(&rec);
        }
        let session = Arc::new(rec);
        self.remember(&session);
        Ok(if current {
            RefreshOutcome::Rotated { family, session }
        } else {
            RefreshOutcome::Retry { family, session }
        })
    }

    pub(crate) async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut family) = select_family(&mut tx, hash).await? else {
            return Ok(None);
        };
        if family.revoked.is_none() {
            set_revoked(&mut tx, &mut family, reason).await?;
            tx.commit().await.map_err(from_sqlx)?;
        }
        Ok(Some(family))
    }

    pub(crate) async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let rows = sqlx::query(SELECT_LIVE_BY_SESSION)
            .bind(session.as_bytes().as_slice())
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let mut families = rows
            .iter()
            .map(decode_family)
            .collect::<StoreResult<Vec<_>>>()?;
        drop(rows);
        if families.is_empty() {
            return Ok(families);
        }
        for f in &mut families {
            set_revoked(&mut tx, f, reason).await?;
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(families)
    }

    pub(crate) async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        if max == 0 {
            return Ok(0);
        }
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT id FROM refresh_families WHERE absolute_expires_at <= ?1 \
             ORDER BY absolute_expires_at, id LIMIT ?2",
        )
        .bind(now.0)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if ids.is_empty() {
            return Ok(0);
        }
        for id in &ids {
            sqlx::query("DELETE FROM refresh_hashes WHERE family_id = ?1")
                .bind(id.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            sqlx::query("DELETE FROM refresh_families WHERE id = ?1")
                .bind(id.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(ids.len())
    }
}
