use tokio_postgres::error::SqlState;

/// Store errors, classified by SQLSTATE so callers can decide retry vs. reject.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database configuration: {0}")]
    Config(String),
    /// The database cannot be reached or is shutting down: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness or exclusion constraint was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist (foreign key), or a lookup found nothing.
    #[error("not found: {0}")]
    NotFound(String),
    /// The input broke a check or had a bad value.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Serialization failure or deadlock: the transaction may be retried as is.
    #[error("transient conflict, retry: {0}")]
    Retry(String),
    #[error("migration {version}: {reason}")]
    Migration { version: i64, reason: String },
    #[error("database: {0}")]
    Other(String),
}

/// A column read back that only Plumbline writes (a kind, a status): a value that does not
/// parse is reported as invalid rather than guessed at. `what` names the column.
pub(crate) fn column<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Retry(_))
    }

    pub(crate) fn from_pool(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

fn classify(code: Option<&SqlState>, msg: &str) -> StoreError {
    let msg = msg.to_string();
    match code {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::EXCLUSION_VIOLATION => {
            StoreError::Conflict(msg)
        }
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound(msg),
        Some(c)
            if *c == SqlState::CHECK_VIOLATION
                || *c == SqlState::NOT_NULL_VIOLATION
                || *c == SqlState::INVALID_TEXT_REPRESENTATION
                || *c == SqlState::DATA_EXCEPTION =>
        {
            StoreError::Invalid(msg)
        }
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Retry(msg)
        }
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || c.code().starts_with("08") =>
        {
            StoreError::Unavailable(msg)
        }
        Some(_) => StoreError::Other(msg),
        // No SQLSTATE: the connection itself failed.
        None => StoreError::Unavailable(msg),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let msg = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        classify(e.code(), &msg)
    }
}
