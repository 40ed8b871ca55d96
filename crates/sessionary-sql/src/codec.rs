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

/// `aal` from its column, whatever integer type the backend stores it as.
pub(crate) fn aal_from<T: Into<i64>>(v: T) -> StoreResult<u8> {
    decode_aal(v.into())
}

/// The row codec of one backend, the same on SQLite and PostgreSQL but for the
/// sqlx types: `get`, `decode_id`, `decode_hash`, `decode_record` (columns as in
/// `session_cols!`), `decode_family` (as in `family_cols!`) and `bind_record`
/// (parameters 1..20 of `INSERT_SESSION` / `REPLACE_SESSION`). Expanded in each
/// backend's module as `backend_codec!(Database, Row, aal column type)`, next to
/// that module's query type `Q<'q>`.
/// (sqlx's decoding is generic over the database only with a bound per column
/// type; a macro keeps one text of the column order instead.)
macro_rules! backend_codec {
    ($db:ty, $row:ty, $aal:ty) => {
        /// Column `i` of `row`.
        pub(crate) fn get<'r, T>(
            row: &'r $row,
            i: usize,
        ) -> ::sessionary_core::store::StoreResult<T>
        where
            T: ::sqlx::Decode<'r, $db> + ::sqlx::Type<$db>,
        {
            ::sqlx::Row::try_get(row, i).map_err($crate::error::from_sqlx)
        }

        /// A session id from column `i`.
        pub(crate) fn decode_id(
            row: &$row,
            i: usize,
            column: &'static str,
        ) -> ::sessionary_core::store::StoreResult<::sessionary_core::SessionId> {
            ::sessionary_core::SessionId::from_slice(get(row, i)?)
                .map_err(|e| $crate::error::corrupt(column, e))
        }

        /// A token hash from column `i`.
        pub(crate) fn decode_hash(
            row: &$row,
            i: usize,
            column: &'static str,
        ) -> ::sessionary_core::store::StoreResult<::sessionary_core::TokenHash> {
            ::sessionary_core::TokenHash::from_slice(get(row, i)?)
                .map_err(|e| $crate::error::corrupt(column, e))
        }

        /// A session row (columns as in `session_cols!`) as a record.
        pub(crate) fn decode_record(
            row: &$row,
        ) -> ::sessionary_core::store::StoreResult<::sessionary_core::SessionRecord> {
            use ::sessionary_core::Timestamp;
            use $crate::codec::{
                aal_from, decode_counters, decode_csrf, decode_ip, decode_roles, decode_user,
                u64_from_column,
            };
            Ok(::sessionary_core::SessionRecord {
                id: decode_id(row, 0, "id")?,
                token_hash: decode_hash(row, 1, "token_hash")?,
                user: decode_user(get(row, 2)?, "user_id")?,
                roles: decode_roles(get(row, 3)?)?,
                aal: aal_from(get::<$aal>(row, 4)?)?,
                auth_time: get::<Option<i64>>(row, 5)?.map(Timestamp),
                created_at: Timestamp(get(row, 6)?),
                last_seen_at: Timestamp(get(row, 7)?),
                idle_timeout_ms: get(row, 8)?,
                touch_interval_ms: get(row, 9)?,
                absolute_expires_at: Timestamp(get(row, 10)?),
                remember: get(row, 11)?,
                device: ::sessionary_core::record::Device {
                    ip: decode_ip(get(row, 12)?)?,
                    user_agent: get::<Option<&str>>(row, 13)?.map(str::to_owned),
                    label: get::<Option<&str>>(row, 14)?.map(str::to_owned),
                },
                version: u64_from_column(get(row, 15)?, "version")?,
                csrf_secret: decode_csrf(get(row, 16)?)?,
                counters: decode_counters(get(row, 17)?)?,
                data: ::sessionary_core::Sealed::from_bytes(get::<&[u8]>(row, 18)?),
                exempt_from_limit: get(row, 19)?,
            })
        }

        /// A refresh family row (columns as in `family_cols!`).
        pub(crate) fn decode_family(
            row: &$row,
        ) -> ::sessionary_core::store::StoreResult<::sessionary_core::refresh::RefreshFamily> {
            use ::sessionary_core::refresh::{FamilyEnd, FamilyId, RefreshFamily};
            use ::sessionary_core::{Sealed, SessionId, Timestamp, TokenHash, UserId};
            use $crate::error::{corrupt, corrupt_value};
            let previous: Option<&[u8]> = get(row, 8)?;
            let successor: Option<&[u8]> = get(row, 9)?;
            let revoked: Option<&str> = get(row, 10)?;
            Ok(RefreshFamily {
                id: FamilyId::from_slice(get(row, 0)?)
                    .map_err(|e| corrupt("refresh_families.id", e))?,
                session_id: SessionId::from_slice(get(row, 1)?)
                    .map_err(|e| corrupt("refresh_families.session_id", e))?,
                user: UserId::new(get::<&str>(row, 2)?)
                    .map_err(|_| corrupt_value("refresh_families.user_id"))?,
                created_at: Timestamp(get(row, 3)?),
                absolute_expires_at: Timestamp(get(row, 4)?),
                generation: $crate::codec::u64_from_column(
                    get(row, 5)?,
                    "refresh_families.generation",
                )?,
                current_hash: decode_hash(row, 6, "refresh_families.current_hash")?,
                rotated_at: Timestamp(get(row, 7)?),
                previous_hash: previous
                    .map(|b| {
                        TokenHash::from_slice(b)
                            .map_err(|e| corrupt("refresh_families.previous_hash", e))
                    })
                    .transpose()?,
                successor: successor.map(Sealed::from_bytes),
                revoked: revoked
                    .map(|s| {
                        FamilyEnd::parse(s).ok_or_else(|| corrupt_value("refresh_families.revoked"))
                    })
                    .transpose()?,
            })
        }

        /// Binds a record as parameters 1..21 of `INSERT_SESSION` / `REPLACE_SESSION`.
        pub(crate) fn bind_record<'q>(
            q: Q<'q>,
            r: &'q ::sessionary_core::SessionRecord,
            enc: &'q $crate::codec::Encoded,
        ) -> Q<'q> {
            q.bind(r.id.as_bytes().as_slice())
                .bind(r.token_hash.as_bytes().as_slice())
                .bind(r.user.as_ref().map(::sessionary_core::UserId::as_str))
                .bind(enc.roles.as_str())
                .bind(<$aal>::from(r.aal))
                .bind(r.auth_time.map(|t| t.0))
                .bind(r.created_at.0)
                .bind(r.last_seen_at.0)
                .bind(r.idle_timeout_ms)
                .bind(r.touch_interval_ms)
                .bind(r.absolute_expires_at.0)
                .bind(r.remember)
                .bind(enc.ip.as_deref())
                .bind(r.device.user_agent.as_deref())
                .bind(r.device.label.as_deref())
                .bind(enc.version)
                .bind(r.csrf_secret.0.as_slice())
                .bind(enc.counters.as_str())
                .bind(r.data.as_bytes())
                .bind(enc.expires_at)
                .bind(r.exempt_from_limit)
        }
    };
}
pub(crate) use backend_codec;
