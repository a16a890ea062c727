//! Password hashing: argon2id with the OWASP parameters (m = 19 MiB, t = 2, p = 1) by default.
//! A hash made with other parameters still verifies and reports that it should be re-hashed.
//!
//! These calls take tens of milliseconds of CPU on purpose; async callers run them on a
//! blocking thread, never on the executor.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::{
        Output, ParamsString, SaltString,
        rand_core::{OsRng, RngCore as _},
    },
};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashingParams {
    /// OWASP Password Storage Cheat Sheet: m = 19456 KiB, t = 2, p = 1.
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Correct. With `needs_rehash`, store a new hash made with the current parameters.
    Valid {
        /// The stored hash uses other parameters or another algorithm.
        needs_rehash: bool,
    },
    /// Wrong password, or an unreadable stored hash.
    Invalid,
}

/// Hashes and verifies passwords with fixed parameters.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    params: HashingParams,
    /// Verified against for unknown users, so that "no such user" costs as much as "wrong
    /// password" and timing reveals no account. No password matches it (see [`unmatchable`]).
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish_non_exhaustive()
    }
}

/// The parameters are out of argon2's range.
#[derive(Debug, thiserror::Error)]
#[error("invalid argon2 parameters: {0}")]
pub struct InvalidParams(String);

impl PasswordHasher {
    /// A hasher with `params`; fails when argon2 refuses them.
    pub fn new(params: HashingParams) -> Result<Self, InvalidParams> {
        let argon_params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| InvalidParams(e.to_string()))?;
        let dummy = unmatchable(&argon_params).map_err(|e| InvalidParams(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
        Ok(Self { argon2, params, dummy })
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, InvalidParams> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| InvalidParams(e.to_string()))
    }

    /// Checks `password` against `stored`.
    pub fn verify(&self, stored: &str, password: &str) -> Verification {
        let Ok(hash) = PasswordHash::new(stored) else { return Verification::Invalid };
        // The stored hash's own parameters decide how it is checked.
        if Argon2::default().verify_password(password.as_bytes(), &hash).is_err() {
            return Verification::Invalid;
        }
        let current = hash.algorithm == Algorithm::Argon2id.ident()
            && Params::try_from(&hash).is_ok_and(|p| {
                (p.m_cost(), p.t_cost(), p.p_cost())
                    == (self.params.memory_kib, self.params.iterations, self.params.parallelism)
            });
        Verification::Valid { needs_rehash: !current }
    }

    /// Spends the time of one verification without an account, so that unknown usernames
    /// answer no faster than wrong passwords.
    pub fn verify_dummy(&self, password: &str) {
        let _ = self.verify(&self.dummy, password);
    }
}

/// A PHC string with `params`, a random salt and a random output: checking a password against
/// it costs one hash with `params` and never succeeds. Written down, not computed: a hash at
/// start would cost its time and leave its memory (19 MiB by default) with the allocator.
fn unmatchable(params: &Params) -> argon2::password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut output = [0; Params::DEFAULT_OUTPUT_LEN];
    OsRng.fill_bytes(&mut output);
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output)?),
    };
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashingParams = HashingParams { memory_kib: 1024, iterations: 1, parallelism: 1 };

    #[test]
    fn hashes_verify_and_older_parameters_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(CHEAP).unwrap();
        let hash = hasher.hash("Kartoffel-Regen-Leuchtturm-42").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_ne!(hash, hasher.hash("Kartoffel-Regen-Leuchtturm-42").unwrap(), "salted");
        assert_eq!(hasher.verify(&hash, "Kartoffel-Regen-Leuchtturm-42"), Verification::Valid { needs_rehash: false });
        assert_eq!(hasher.verify(&hash, "kartoffel-regen-leuchtturm-42"), Verification::Invalid);
        assert_eq!(hasher.verify("not a hash", "x"), Verification::Invalid);

        let stronger = PasswordHasher::new(HashingParams { memory_kib: 2048, ..CHEAP }).unwrap();
        assert_eq!(stronger.verify(&hash, "Kartoffel-Regen-Leuchtturm-42"), Verification::Valid { needs_rehash: true });
        stronger.verify_dummy("anything");
    }

    #[test]
    fn the_dummy_hash_has_the_configured_parameters_and_matches_nothing() {
        let hasher = PasswordHasher::new(CHEAP).unwrap();
        let dummy = PasswordHash::new(&hasher.dummy).unwrap();
        assert_eq!(dummy.algorithm, Algorithm::Argon2id.ident());
        assert_eq!(Params::try_from(&dummy).unwrap().m_cost(), CHEAP.memory_kib, "it costs what a real check costs");
        assert_eq!(hasher.verify(&hasher.dummy, ""), Verification::Invalid);
        assert_eq!(hasher.verify(&hasher.dummy, "dummy password for unknown users"), Verification::Invalid);
        assert_ne!(hasher.dummy, PasswordHasher::new(CHEAP).unwrap().dummy, "salt and output are random");
    }

    #[test]
    fn the_default_parameters_are_owasps() {
        assert_eq!(HashingParams::default(), HashingParams { memory_kib: 19456, iterations: 2, parallelism: 1 });
        assert!(PasswordHasher::new(HashingParams { memory_kib: 1, iterations: 0, parallelism: 0 }).is_err());
    }
}
