//! The audit log of [`super::MemoryStore`]: the newest entries in a ring.

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::audit::{AuditEntry, AuditQuery, AuditRecord};
use crate::clock::Timestamp;

/// Entries a `MemoryStore` keeps; the oldest go first beyond this.
pub(crate) const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct AuditRing(Mutex<Ring>);

#[derive(Debug, Default)]
struct Ring {
    /// The last sequence number given (0: none yet).
    last_seq: u64,
    /// Oldest first, so sequence numbers increase from front to back.
    entries: VecDeque<AuditRecord>,
}

impl AuditRing {
    pub(crate) fn append(&self, entries: Vec<AuditEntry>) {
        let mut r = self.0.lock();
        for entry in entries {
            r.last_seq += 1;
            let seq = r.last_seq;
            if r.entries.len() >= MAX_ENTRIES {
                r.entries.pop_front();
            }
            r.entries.push_back(AuditRecord { seq, entry });
        }
    }

    pub(crate) fn query(&self, q: &AuditQuery) -> Vec<AuditRecord> {
        let r = self.0.lock();
        r.entries
            .iter()
            .rev()
            .filter(|e| q.matches(e))
            .take(q.limit)
            .cloned()
            .collect()
    }

    pub(crate) fn sweep(&self, before: Timestamp, max: usize) -> usize {
        let mut r = self.0.lock();
        let mut n = 0;
        r.entries.retain(|e| {
            let forget = n < max && e.entry.at < before;
            n += usize::from(forget);
            !forget
        });
        n
    }
}
