//! Errors of this crate, and how database errors become [`StoreError`]s.

use std::error::Error as StdError;

use sessionary_core::StoreError;
use sqlx::postgres::PgDatabaseError;

/// Failures this crate detects itself. They reach callers as the `source` of a
/// [`StoreError`], so they can be told apart with `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored column holds a value no record can have (a [`StoreError::Corrupt`]).
    #[error("column `{column}` holds an invalid value")]
    InvalidColumn {
        /// The column.
        column: &'static str,
        /// What was wrong with it, when known.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// A value is out of the range the database can store (a [`StoreError::Backend`]).
    #[error("`{0}` is out of the range the database stores")]
    OutOfRange(&'static str),
    /// [`sessionary_core::SessionStore::rotate`] was given a token hash that is
    /// in use or remembered by a tombstone (a [`StoreError::Backend`]).
    #[error("rotation to a token hash already in use")]
    TokenHashInUse,
}

/// A column held something that does not decode.
pub(crate) fn corrupt(
    column: &'static str,
    source: impl StdError + Send + Sync + 'static,
) -> StoreError {
    StoreError::corrupt(Error::InvalidColumn {
        column,
        source: Some(Box::new(source)),
    })
}

/// A column held a value outside the domain of its field.
pub(crate) fn corrupt_value(column: &'static str) -> StoreError {
    StoreError::corrupt(Error::InvalidColumn {
        column,
        source: None,
    })
}

/// Classifies a sqlx error, keeping it as the source.
///
/// Connection, pool, I/O, "busy" and "disk" failures are [`StoreError::Unavailable`]
/// (the caller may retry later); decoding failures and a damaged database file
/// are [`StoreError::Corrupt`]; everything else is [`StoreError::Backend`].
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    match classify(&e) {
        Class::Unavailable => StoreError::unavailable(e),
        Class::Corrupt => StoreError::corrupt(e),
        Class::Backend => StoreError::backend(e),
    }
}

enum Class {
    Unavailable,
    Corrupt,
    Backend,
}

fn classify(e: &sqlx::Error) -> Class {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            Class::Unavailable
        }
        E::Protocol(_)
        | E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. } => Class::Corrupt,
        E::Database(db) if db.try_downcast_ref::<PgDatabaseError>().is_some() => {
            classify_sqlstate(db.code().as_deref())
        }
        E::Database(db) => classify_code(db.code().as_deref()),
        _ => Class::Backend,
    }
}

/// PostgreSQL SQLSTATEs: what a retry later may fix is `Unavailable`.
fn classify_sqlstate(code: Option<&str>) -> Class {
    let Some(code) = code else {
        return Class::Backend;
    };
    match code {
        // Data or an index damaged on disk.
        "XX001" | "XX002" => Class::Corrupt,
        // Serialisation failures and deadlocks (the transaction was rolled
        // back, a retry succeeds), a lock or statement timeout, a read-only
        // server (a standby after failover), a server shutting down or
        // starting up.
        "40001" | "40P01" | "55P03" | "57014" | "25006" | "57P01" | "57P02" | "57P03" => {
            Class::Unavailable
        }
        // Connection exceptions, refused credentials or database (the store
        // cannot be reached as configured), insufficient resources (disk
        // full, too many connections), system errors (I/O).
        _ if ["08", "28", "3D", "53", "58"]
            .iter()
            .any(|class| code.starts_with(class)) =>
        {
            Class::Unavailable
        }
        _ => Class::Backend,
    }
}

/// SQLite result codes (the primary code is the low byte of the extended one).
fn classify_code(code: Option<&str>) -> Class {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const NOMEM: i64 = 7;
    const IOERR: i64 = 10;
    const CORRUPT: i64 = 11;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    const PROTOCOL: i64 = 15;
    const NOTADB: i64 = 26;
    let Some(primary) = code.and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff) else {
        return Class::Backend;
    };
    match primary {
        BUSY | LOCKED | NOMEM | IOERR | FULL | CANTOPEN | PROTOCOL => Class::Unavailable,
        CORRUPT | NOTADB => Class::Corrupt,
        _ => Class::Backend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_errors_are_unavailable_and_keep_their_source() {
        let e = from_sqlx(sqlx::Error::PoolTimedOut);
        assert!(matches!(e, StoreError::Unavailable(_)));
        let src = e.source().unwrap();
        assert!(src.downcast_ref::<sqlx::Error>().is_some());
    }

    #[test]
    fn sqlite_codes_are_classified() {
        assert!(matches!(classify_code(Some("5")), Class::Unavailable));
        assert!(matches!(classify_code(Some("517")), Class::Unavailable)); // BUSY_SNAPSHOT
        assert!(matches!(classify_code(Some("11")), Class::Corrupt));
        assert!(matches!(classify_code(Some("26")), Class::Corrupt));
        assert!(matches!(classify_code(Some("2067")), Class::Backend)); // UNIQUE
        assert!(matches!(classify_code(None), Class::Backend));
    }

    #[test]
    fn postgres_sqlstates_are_classified() {
        assert!(matches!(
            classify_sqlstate(Some("08006")),
            Class::Unavailable
        ));
        assert!(matches!(
            classify_sqlstate(Some("28P01")),
            Class::Unavailable
        ));
        assert!(matches!(
            classify_sqlstate(Some("53300")),
            Class::Unavailable
        ));
        assert!(matches!(
            classify_sqlstate(Some("40P01")),
            Class::Unavailable
        ));
        assert!(matches!(
            classify_sqlstate(Some("57014")),
            Class::Unavailable
        ));
        assert!(matches!(classify_sqlstate(Some("XX001")), Class::Corrupt));
        assert!(matches!(classify_sqlstate(Some("23505")), Class::Backend)); // unique
        assert!(matches!(classify_sqlstate(Some("22003")), Class::Backend)); // out of range
        assert!(matches!(classify_sqlstate(None), Class::Backend));
    }

    #[test]
    fn decode_errors_are_corrupt() {
        let e = from_sqlx(sqlx::Error::Decode("bad".into()));
        assert!(matches!(e, StoreError::Corrupt(_)));
        let e = corrupt_value("aal");
        assert!(matches!(e, StoreError::Corrupt(_)));
        assert!(e.source().unwrap().downcast_ref::<Error>().is_some());
    }
}
