//! Which outside dependency failed. Adapters wrap the errors of a dependency they could not reach
//! in a [`DependencyError`], so the server can tell an outage (answered with 503 and
//! `temporarily_unavailable`, logged and counted under the dependency's name) from a bug (500).

use std::fmt;

/// An outside system a request may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// The relational database (SQLite or PostgreSQL).
    Database,
    /// The ephemeral store (process memory or Redis).
    EphemeralStore,
    /// The mail relay (SMTP).
    Mail,
    /// The eID-Server.
    EidServer,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::Database => "database",
            Dependency::EphemeralStore => "ephemeral store",
            Dependency::Mail => "mail relay",
            Dependency::EidServer => "eID-Server",
        })
    }
}

/// A dependency did not answer, or refused the command.
#[derive(Debug, thiserror::Error)]
#[error("{dependency} unavailable: {source}")]
pub struct DependencyError {
    /// Which dependency.
    pub dependency: Dependency,
    /// What it said (the driver's error: "connection refused", "OOM command not allowed", …).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl DependencyError {
    /// Wraps `source`, an error of `dependency`.
    pub fn new(dependency: Dependency, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { dependency, source: Box::new(source) }
    }
}

/// The first dependency failure in `error`'s chain of sources, if any: an outage rather than a
/// bug. An [`crate::EphemeralError::Unavailable`] counts as the ephemeral store's.
pub fn dependency_failure(error: &(dyn std::error::Error + 'static)) -> Option<(Dependency, String)> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(failure) = current.downcast_ref::<DependencyError>() {
            return Some((failure.dependency, failure.source.to_string()));
        }
        if let Some(crate::EphemeralError::Unavailable(source)) = current.downcast_ref::<crate::EphemeralError>() {
            return Some((Dependency::EphemeralStore, source.to_string()));
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn an_outage_is_found_anywhere_in_the_chain() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let wrapped = Outer(Box::new(DependencyError::new(Dependency::Database, refused)));
        assert_eq!(dependency_failure(&wrapped), Some((Dependency::Database, "connection refused".to_owned())));
        let ephemeral = Outer(Box::new(crate::EphemeralError::Unavailable("OOM command not allowed".into())));
        assert_eq!(dependency_failure(&ephemeral).map(|(d, _)| d), Some(Dependency::EphemeralStore));
        assert_eq!(dependency_failure(&Outer("a bug".into())), None);
        assert_eq!(dependency_failure(&crate::EphemeralError::WrongType), None);
    }
}
