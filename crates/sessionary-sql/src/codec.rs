//! Backend-neutral pieces: how record fields become column values and back, and
//! the record rules every backend applies the same way as `MemoryStore`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sessionary_core::record::CsrfSecret;
use sessionary_core::store::StoreResult;
use sessionary_core::{SessionRecord, StoreError, UserId};

use crate::error::{Error, corrupt, corrupt_value};

/// Column values of a record that need encoding (the rest bind as they are).
#[derive(Debug)]
pub(crate) struct Encoded {
    /// `roles` as a JSON array.
    pub(crate) roles: String,
    /// `counters` as a JSON object.
    pub(crate) counters: String,
    /// The device IP as text.
    pub(crate) ip: Option<String>,
    /// The version as a signed column value.
    pub(crate) version: i64,
    /// [`SessionRecord::expires_at`], kept in its own indexed column.
    pub(crate) expires_at: i64,
}

impl Encoded {
    pub(crate) fn new(rec: &SessionRecord) -> StoreResult<Self> {
        Ok(Self {
            roles: encode_roles(&rec.roles)?,
            counters: encode_counters(&rec.counters)?,
            ip: rec.device.ip.map(|ip| ip.to_string()),
            version: version_to_i64(rec.version)?,
            expires_at: rec.expires_at().0,
        })
    }
}

pub(crate) fn version_to_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::backend(Error::OutOfRange("version")))
}

pub(crate) fn u64_from_column(v: i64, column: &'static str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|e| corrupt(column, e))
}

/// The next version after `v` (every change except a touch bumps it).
pub(crate) fn next_version(v: u64) -> StoreResult<u64> {
    v.checked_add(1)
        .ok_or_else(|| StoreError::backend(Error::OutOfRange("version")))
}

fn encode_roles(roles: &[String]) -> StoreResult<String> {
    if roles.is_empty() {
        return Ok("[]".to_owned());
    }
    serde_json::to_string(roles).map_err(StoreError::backend)
}

pub(crate) fn encode_counters(counters: &BTreeMap<String, u64>) -> StoreResult<String> {
    if counters.is_empty() {
        return Ok("{}".to_owned());
    }
    serde_json::to_string(counters).map_err(StoreError::backend)
}

pub(crate) fn decode_roles(s: &str) -> StoreResult<Vec<String>> {
    if s == "[]" {
        return Ok(Vec::new());
    }
    serde_json::from_str(s).map_err(|e| corrupt("roles", e))
}

pub(crate) fn decode_counters(s: &str) -> StoreResult<BTreeMap<String, u64>> {
    if s == "{}" {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(s).map_err(|e| corrupt("counters", e))
}

pub(crate) fn decode_ip(s: Option<&str>) -> StoreResult<Option<IpAddr>> {
    s.map(|s| s.parse().map_err(|e| corrupt("device_ip", e)))
        .transpose()
}

pub(crate) fn decode_user(s: Option<&str>, column: &'static str) -> StoreResult<Option<UserId>> {
    s.map(|s| UserId::new(s).map_err(|e| corrupt(column, e)))
        .transpose()
}

pub(crate) fn decode_csrf(b: &[u8]) -> StoreResult<CsrfSecret> {
    <[u8; 32]>::try_from(b)
        .map(CsrfSecret)
        .map_err(|_| corrupt_value("csrf_secret"))
}

pub(crate) fn decode_aal(v: i64) -> StoreResult<u8> {
    u8::try_from(v).map_err(|e| corrupt("aal", e))
}
