//! Refresh token families of [`MemoryStore`](super::MemoryStore).
//!
//! All families sit behind one mutex (refreshes are rare next to `load`). Lock
//! order: the owner stripe of the family's user, then this mutex, then session
//! shard locks, so a refresh is atomic against `end`, `end_user`, eviction and
//! `sweep` of its session (all of which hold the owner stripe), and no lock is
//! taken in the other order anywhere.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FastMap, Inner};
use crate::record::SessionRecord;
use crate::refresh::{
    CreateFamily, FamilyEnd, FamilyId, RefreshFamily, RefreshOutcome, RefreshRequest, RefreshUse,
};
use crate::store::{StoreError, StoreResult};
use crate::token::{SessionId, TokenHash, UserId};

#[derive(Debug, Default)]
pub(super) struct Families(Mutex<Maps>);

#[derive(Debug, Default)]
struct Maps {
    by_id: HashMap<FamilyId, Entry>,
    /// Every token hash a family ever had (current, previous and spent).
    by_hash: FastMap<TokenHash, FamilyId>,
}

#[derive(Debug)]
struct Entry {
    family: RefreshFamily,
    hashes: Vec<TokenHash>,
}

impl Inner {
    fn family_owner(&self, hash: &TokenHash) -> Option<(UserId, SessionId)> {
        let m = self.refresh.0.lock();
        let id = m.by_hash.get(hash)?;
        let f = &m.by_id.get(id)?.family;
        Some((f.user.clone(), f.session_id))
    }

    pub(super) fn create_refresh_family(&self, family: RefreshFamily) -> CreateFamily {
        let _owner = self.stripe(Some(&family.user), &family.session_id);
        match self.by_id(&family.session_id) {
            Some(r) if r.is_live(family.created_at) && r.user.as_ref() == Some(&family.user) => {}
            _ => return CreateFamily::SessionGone,
        }
        let mut m = self.refresh.0.lock();
        if m.by_id.contains_key(&family.id) || m.by_hash.contains_key(&family.current_hash) {
            return CreateFamily::Duplicate;
        }
        m.by_hash.insert(family.current_hash, family.id);
        m.by_id.insert(
            family.id,
            Entry {
                hashes: vec![family.current_hash],
                family,
            },
        );
        CreateFamily::Created
    }

    pub(super) fn refresh(&self, req: RefreshRequest) -> StoreResult<RefreshOutcome> {
        let Some((user, session_id)) = self.family_owner(&req.presented) else {
            return Ok(RefreshOutcome::Missing);
        };
        // The owner of a family never changes, so this is the right stripe.
        let _owner = self.stripe(Some(&user), &session_id);
        let mut m = self.refresh.0.lock();
        let Maps { by_id, by_hash } = &mut *m;
        let Some(entry) = by_hash
            .get(&req.presented)
            .copied()
            .and_then(|id| by_id.get_mut(&id))
        else {
            // Swept meanwhile.
            return Ok(RefreshOutcome::Missing);
        };
        let f = &mut entry.family;
        let verdict = f.classify(&req.presented, req.now, req.grace_ms);
        match verdict {
            RefreshUse::Revoked => return Ok(RefreshOutcome::Revoked(f.clone())),
            RefreshUse::Expired => return Ok(RefreshOutcome::Expired(f.clone())),
            RefreshUse::Current | RefreshUse::Retry | RefreshUse::Reuse => {}
        }
        let current = verdict == RefreshUse::Current;
        if verdict == RefreshUse::Reuse {
            f.revoked = Some(FamilyEnd::Reused);
            let family = f.clone();
            drop(m);
            let ended = self.remove_locked(&family.session_id, req.reuse);
            return Ok(RefreshOutcome::Reused { family, ended });
        }
        let rec = match self.by_id(&session_id) {
            Some(rec) if rec.is_live(req.now) => rec,
            other => {
                f.revoked = Some(FamilyEnd::SessionEnded);
                return Ok(RefreshOutcome::SessionEnded {
                    family: f.clone(),
                    session: other,
                });
            }
        };
        if current {
            if by_hash.contains_key(&req.next_hash) {
                return Err(StoreError::Backend(
                    "rotation to a token hash already in use".into(),
                ));
            }
            f.generation += 1;
            f.previous_hash = Some(f.current_hash);
            f.current_hash = req.next_hash;
            f.rotated_at = req.now;
            f.successor = Some(req.next_sealed);
            by_hash.insert(req.next_hash, f.id);
            entry.hashes.push(req.next_hash);
        }
        let family = entry.family.clone();
        drop(m);
        // Refreshing is activity: the session is touched (under the owner lock,
        // so its token hash cannot change meanwhile).
        let now = req.now;
        let session = self
            .modify(&rec.token_hash, |cur| {
                let mut new = SessionRecord::clone(cur);
                new.last_seen_at = new.last_seen_at.max(now);
                let shown = Arc::new(new.clone());
                (Some(new), shown)
            })
            .unwrap_or(rec);
        Ok(if current {
            RefreshOutcome::Rotated { family, session }
        } else {
            RefreshOutcome::Retry { family, session }
        })
    }

    pub(super) fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> Option<RefreshFamily> {
        let mut m = self.refresh.0.lock();
        let Maps { by_id, by_hash } = &mut *m;
        let f = &mut by_id.get_mut(by_hash.get(hash)?)?.family;
        f.revoked.get_or_insert(reason);
        Some(f.clone())
    }

    pub(super) fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> Vec<RefreshFamily> {
        // A scan: families are few next to sessions, and this is rare.
        let mut m = self.refresh.0.lock();
        m.by_id
            .values_mut()
            .filter(|e| e.family.session_id == *session && e.family.revoked.is_none())
            .map(|e| {
                e.family.revoked = Some(reason);
                e.family.clone()
            })
            .collect()
    }

    pub(super) fn sweep_refresh(&self, now: crate::clock::Timestamp, max: usize) -> usize {
        let mut m = self.refresh.0.lock();
        let expired: Vec<FamilyId> = m
            .by_id
            .values()
            .filter(|e| e.family.is_expired(now))
            .take(max)
            .map(|e| e.family.id)
            .collect();
        for id in &expired {
            if let Some(e) = m.by_id.remove(id) {
                for h in &e.hashes {
                    m.by_hash.remove(h);
                }
            }
        }
        expired.len()
    }
}
