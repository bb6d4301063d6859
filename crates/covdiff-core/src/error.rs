//! The typed errors of covdiff's mathematics: bad names, parameters outside
//! their domain, and matrices that are not positive definite. Data I/O has
//! its own [`crate::data::DataError`].

/// What went wrong, with a message fit for a user.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// A name that is not one of the known choices.
    #[error("unknown {what} '{got}' (expected {expected})")]
    Unknown { what: &'static str, got: String, expected: String },
    /// A parameter outside its domain.
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// A covariance whose Cholesky factorisation fails.
    #[error("the {0} is not positive definite")]
    NotPositiveDefinite(&'static str),
}

impl Error {
    pub fn unknown(what: &'static str, got: &str, expected: impl Into<String>) -> Self {
        Self::Unknown { what, got: got.to_string(), expected: expected.into() }
    }

    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { what, reason: reason.into() }
    }

    /// The choice among `all` whose `name` is `got`, or an [`Error::Unknown`] that lists them.
    pub fn by_name<T: Copy>(what: &'static str, got: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, Self> {
        all.iter().copied().find(|&c| name(c) == got).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&c| name(c)).collect();
            Self::unknown(what, got, format!("one of: {}", names.join(", ")))
        })
    }
}
