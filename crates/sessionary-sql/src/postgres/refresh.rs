//! Refresh token families on PostgreSQL.
//!
//! Every operation is one transaction that locks the family row (`FOR UPDATE`)
//! before deciding, then the session row if it touches or ends the session:
//! always family first, then session, so two refreshes cannot deadlock, and of
//! concurrent uses of one token the first to lock rotates and the others, once
//! it committed, read the rotated family (`READ COMMITTED` re-reads a row
//! locked after waiting) and are retries.

use std::sync::Arc;

use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, FamilyId, RefreshFamily, RefreshOutcome, RefreshRequest, RefreshUse,
};
use sessionary_core::store::StoreResult;
use sessionary_core::{Sealed, SessionId, StoreError, Timestamp, TokenHash};
use sqlx::postgres::PgConnection;

use super::{PgStore, decode_family, lock_by_id, remove, set_last_seen};
use crate::codec::version_to_i64;
use crate::error::{Error, from_sqlx};

macro_rules! family_cols {
    () => {
        "f.id, f.session_id, f.user_id, f.created_at, f.absolute_expires_at, f.generation, \
         f.current_hash, f.rotated_at, f.previous_hash, f.successor, f.revoked"
    };
}

/// The family a token hash belongs to, locked.
const LOCK_BY_HASH: &str = concat!(
    "SELECT ",
    family_cols!(),
    " FROM refresh_hashes h JOIN refresh_families f ON f.id = h.family_id \
     WHERE h.token_hash = $1 FOR UPDATE OF f"
);
/// Revokes a session's live families in one statement; returns them.
const REVOKE_BY_SESSION: &str = concat!(
    "UPDATE refresh_families f SET revoked = $2 WHERE f.session_id = $1 AND f.revoked IS NULL \
     RETURNING ",
    family_cols!()
);
const INSERT_FAMILY: &str = "INSERT INTO refresh_families (id, session_id, user_id, created_at, \
     absolute_expires_at, generation, current_hash, rotated_at, previous_hash, successor, revoked) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";
const ROTATE_FAMILY: &str = "UPDATE refresh_families SET generation = $2, current_hash = $3, \
     rotated_at = $4, previous_hash = $5, successor = $6 WHERE id = $1";
const REVOKE_FAMILY: &str = "UPDATE refresh_families SET revoked = $2 WHERE id = $1";
const INSERT_HASH: &str =
    "INSERT INTO refresh_hashes (token_hash, family_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
/// Up to `$2` families past their lifetime, with every hash they had, in one
/// statement; families another transaction holds are left for the next sweep.
const SWEEP: &str = "WITH doomed AS ( \
         SELECT id FROM refresh_families WHERE absolute_expires_at <= $1 \
         ORDER BY absolute_expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
     hashes AS (DELETE FROM refresh_hashes WHERE family_id IN (SELECT id FROM doomed)) \
     DELETE FROM refresh_families WHERE id IN (SELECT id FROM doomed)";

async fn lock_family(
    conn: &mut PgConnection,
    hash: &TokenHash,
) -> StoreResult<Option<RefreshFamily>> {
    let row = sqlx::query(LOCK_BY_HASH)
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.as_ref().map(decode_family).transpose()
}

/// Records `hash` as a token of `family`; `false` if another family has it.
async fn insert_hash(
    conn: &mut PgConnection,
    hash: &TokenHash,
    family: &FamilyId,
) -> StoreResult<bool> {
    let done = sqlx::query(INSERT_HASH)
        .bind(hash.as_bytes().as_slice())
        .bind(family.as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(done.rows_affected() == 1)
}

async fn set_revoked(
    conn: &mut PgConnection,
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

impl PgStore {
    pub(crate) async fn create_refresh_family(
        &self,
        family: RefreshFamily,
    ) -> StoreResult<CreateFamily> {
        let mut tx = self.begin().await?;
        // Locked, so the session cannot end between this check and the commit.
        let Some(rec) = lock_by_id(&mut tx, &family.session_id).await? else {
            return Ok(CreateFamily::SessionGone);
        };
        if !rec.is_live(family.created_at) || rec.user.as_ref() != Some(&family.user) {
            return Ok(CreateFamily::SessionGone);
        }
        let done = sqlx::query(INSERT_FAMILY)
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
        // Either insert finding its key taken rolls the whole step back.
        if done.rows_affected() != 1
            || !insert_hash(&mut tx, &family.current_hash, &family.id).await?
        {
            return Ok(CreateFamily::Duplicate);
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(CreateFamily::Created)
    }

    pub(crate) async fn refresh(&self, req: RefreshRequest) -> StoreResult<RefreshOutcome> {
        let mut tx = self.begin().await?;
        let Some(mut family) = lock_family(&mut tx, &req.presented).await? else {
            return Ok(RefreshOutcome::Missing);
        };
        let verdict = family.classify(&req.presented, req.now, req.grace_ms);
        match verdict {
            RefreshUse::Revoked => return Ok(RefreshOutcome::Revoked(family)),
            RefreshUse::Expired => return Ok(RefreshOutcome::Expired(family)),
            RefreshUse::Current | RefreshUse::Retry | RefreshUse::Reuse => {}
        }
        let current = verdict == RefreshUse::Current;
        let session = lock_by_id(&mut tx, &family.session_id).await?;
        if verdict == RefreshUse::Reuse {
            set_revoked(&mut tx, &mut family, FamilyEnd::Reused).await?;
            if let Some(rec) = &session {
                remove(&mut tx, rec, req.reuse).await?;
            }
            tx.commit().await.map_err(from_sqlx)?;
            return Ok(RefreshOutcome::Reused {
                family,
                ended: session.map(Arc::new),
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
        if !rec.is_live(req.now) {
            set_revoked(&mut tx, &mut family, FamilyEnd::SessionEnded).await?;
            tx.commit().await.map_err(from_sqlx)?;
            return Ok(RefreshOutcome::SessionEnded {
                family,
                session: Some(Arc::new(rec)),
            });
        }
        if current {
            family.generation = family
                .generation
                .checked_add(1)
                .ok_or_else(|| StoreError::backend(Error::OutOfRange("generation")))?;
            family.previous_hash = Some(family.current_hash);
            family.current_hash = req.next_hash;
            family.rotated_at = req.now;
            family.successor = Some(req.next_sealed);
            if !insert_hash(&mut tx, &family.current_hash, &family.id).await? {
                return Err(StoreError::backend(Error::TokenHashInUse));
            }
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
        }
        // Refreshing is activity: the session is touched in the same transaction.
        if req.now > rec.last_seen_at {
            rec.last_seen_at = req.now;
            set_last_seen(&mut tx, &rec).await?;
        }
        tx.commit().await.map_err(from_sqlx)?;
        let session = Arc::new(rec);
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
        let mut tx = self.begin().await?;
        let Some(mut family) = lock_family(&mut tx, hash).await? else {
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
        let rows = sqlx::query(REVOKE_BY_SESSION)
            .bind(session.as_bytes().as_slice())
            .bind(reason.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        let mut families = rows
            .iter()
            .map(decode_family)
            .collect::<StoreResult<Vec<_>>>()?;
        // Oldest first, as on SQLite.
        families.sort_unstable_by_key(|f| (f.created_at, f.id));
        Ok(families)
    }

    pub(crate) async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        if max == 0 {
            return Ok(0);
        }
        let done = sqlx::query(SWEEP)
            .bind(now.0)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}
