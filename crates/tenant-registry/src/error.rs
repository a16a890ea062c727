use crate::{rules::FieldError, store::StoreError};

/// What the registry answers when it cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such tenant or client — or one the actor may not see.
    #[error("not found")]
    NotFound,
    /// The actor may see the object but not do this to it.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The input breaks rules; every violation is listed.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The object changed since the caller read it (or the caller's version is unknown).
    #[error("the object was changed meanwhile; current version {current}")]
    VersionMismatch {
        /// The version now stored.
        current: i64,
    },
    /// A unique value is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A tenant with clients cannot be deleted.
    #[error("the tenant still has clients")]
    HasClients,
    /// Storage failed.
    #[error("registry storage failed")]
    Store(#[source] StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => RegistryError::NotFound,
            StoreError::Conflict(what) => RegistryError::Conflict(what),
            StoreError::VersionMismatch { current } => RegistryError::VersionMismatch { current },
            StoreError::HasClients => RegistryError::HasClients,
            unavailable @ StoreError::Unavailable(_) => RegistryError::Store(unavailable),
        }
    }
}

/// Why a client could not authenticate at the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Unknown client, wrong environment, wrong secret, or an authentication method the client
    /// is not registered for: all look the same to the caller (RFC 6749 §5.2 `invalid_client`).
    #[error("client authentication failed")]
    Failed,
    /// The client's tenant is suspended.
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// Storage failed.
    #[error("registry storage failed")]
    Store(#[source] StoreError),
}
