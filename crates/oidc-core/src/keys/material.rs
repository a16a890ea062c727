use std::{collections::BTreeMap, fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use rand::rngs::OsRng;
use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KeyError;

/// A JWS algorithm this provider signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the default, which every relying party supports.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::PS256 => "PS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }

    #[cfg(test)]
    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            SigningAlgorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(SigningAlgorithm::RS256),
            "PS256" => Ok(SigningAlgorithm::PS256),
            "ES256" => Ok(SigningAlgorithm::ES256),
            "EdDSA" => Ok(SigningAlgorithm::EdDSA),
            other => Err(KeyError::Material(format!("unsupported signing algorithm {other:?}"))),
        }
    }
}

/// A public JSON Web Key (RFC 7517) as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Key id: the RFC 7638 thumbprint.
    pub kid: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
    /// The one algorithm this key signs with.
    pub alg: String,
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    /// Curve of EC and OKP keys.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// EC x coordinate or OKP public key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
}

impl Jwk {
    fn new(kty: &str, alg: SigningAlgorithm) -> Self {
        Jwk {
            kty: kty.to_owned(),
            kid: String::new(),
            key_use: "sig".to_owned(),
            alg: alg.as_str().to_owned(),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        let mut members = BTreeMap::from([("kty", Some(self.kty.as_str()))]);
        match self.kty.as_str() {
            "RSA" => members.extend([("e", self.e.as_deref()), ("n", self.n.as_deref())]),
            "EC" => members.extend([("crv", self.crv.as_deref()), ("x", self.x.as_deref()), ("y", self.y.as_deref())]),
            _ => members.extend([("crv", self.crv.as_deref()), ("x", self.x.as_deref())]),
        }
        // A BTreeMap serialises in key order and serde_json adds no white space: the RFC's form.
        let canonical = serde_json::to_string(&members).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The published keys.
    pub keys: Vec<Jwk>,
}

/// Freshly generated key material: the public JWK (with its thumbprint as `kid`) and the private
/// key in the DER form jsonwebtoken reads (PKCS#1 for RSA, PKCS#8 otherwise).
pub(super) struct GeneratedKey {
    pub public: Jwk,
    pub private_der: Vec<u8>,
}

const RSA_BITS: usize = 2048;

pub(super) fn generate(algorithm: SigningAlgorithm) -> Result<GeneratedKey, KeyError> {
    let material = |e: &dyn fmt::Display| KeyError::Material(e.to_string());
    let (mut public, private_der) = match algorithm {
        SigningAlgorithm::RS256 | SigningAlgorithm::PS256 => {
            let private = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| material(&e))?;
            let mut jwk = Jwk::new("RSA", algorithm);
            jwk.n = Some(URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()));
            jwk.e = Some(URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()));
            let der = private.to_pkcs1_der().map_err(|e| material(&e))?;
            (jwk, der.as_bytes().to_vec())
        }
        SigningAlgorithm::ES256 => {
            let private = p256::SecretKey::random(&mut OsRng);
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&private.public_key(), false);
            let mut jwk = Jwk::new("EC", algorithm);
            jwk.crv = Some("P-256".to_owned());
            jwk.x = point.x().map(|x| URL_SAFE_NO_PAD.encode(x));
            jwk.y = point.y().map(|y| URL_SAFE_NO_PAD.encode(y));
            let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&private).map_err(|e| material(&e))?;
            (jwk, der.as_bytes().to_vec())
        }
        SigningAlgorithm::EdDSA => {
            let private = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let mut jwk = Jwk::new("OKP", algorithm);
            jwk.crv = Some("Ed25519".to_owned());
            jwk.x = Some(URL_SAFE_NO_PAD.encode(private.verifying_key().as_bytes()));
            let der = private.to_pkcs8_der().map_err(|e| material(&e))?;
            (jwk, der.as_bytes().to_vec())
        }
    };
    public.kid = public.thumbprint();
    Ok(GeneratedKey { public, private_der })
}

/// A private key ready to sign, with the `kid` and `alg` it announces in JWS headers.
///
/// The key is parsed once, when it is loaded: parsing an RSA key costs about twice its
/// signature, and a library that parses per signature (as `jsonwebtoken`'s `EncodingKey` does)
/// spends most of an ID token's price on it.
pub struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    signer: Signer,
}

/// An RS256 signing key as rcgen's remote key pair: it signs the certificate's own TBS bytes.
struct RemoteRsa {
    key: std::sync::Arc<SigningKey>,
    public: Vec<u8>,
}

impl rcgen::RemoteKeyPair for RemoteRsa {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.signature(message).map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// The parsed private key of one algorithm.
enum Signer {
    Rsa(aws_lc_rs::signature::RsaKeyPair, &'static dyn aws_lc_rs::signature::RsaEncoding),
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses the private key `der` (PKCS#1 for RSA, PKCS#8 for EC and Ed25519).
    pub(super) fn from_der(kid: String, algorithm: SigningAlgorithm, der: &[u8]) -> Result<Self, KeyError> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
        };
        let rejected = |e: aws_lc_rs::error::KeyRejected| KeyError::Material(format!("{algorithm:?} key {kid}: {e}"));
        let signer = match algorithm {
            SigningAlgorithm::RS256 => Signer::Rsa(RsaKeyPair::from_der(der).map_err(rejected)?, &RSA_PKCS1_SHA256),
            SigningAlgorithm::PS256 => Signer::Rsa(RsaKeyPair::from_der(der).map_err(rejected)?, &RSA_PSS_SHA256),
            SigningAlgorithm::ES256 => {
                Signer::Ecdsa(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(rejected)?)
            }
            SigningAlgorithm::EdDSA => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?),
        };
        Ok(Self { kid, algorithm, signer })
    }

    /// A fresh key held only in memory, with its public JWK; for benchmarks and tests of
    /// relying parties (the server's keys come from [`super::KeyService`]).
    pub fn generate(algorithm: SigningAlgorithm) -> Result<(Self, Jwk), KeyError> {
        let generated = generate(algorithm)?;
        let key = Self::from_der(generated.public.kid.clone(), algorithm, &generated.private_der)?;
        Ok((key, generated.public))
    }

    /// The key id announced in the JWS header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Signs `claims` as a compact JWS (RFC 7515) with `typ` set to `typ` (e.g. `JWT`,
    /// `at+jwt`) and this key's `kid`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let header = serde_json::json!({ "alg": self.algorithm.as_str(), "kid": self.kid, "typ": typ });
        let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.signature(token.as_bytes())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// The signature bytes over `message`: RSASSA-PKCS1-v1_5 with SHA-256 for an RS256 key (as
    /// XML signatures' RSA-SHA256 wants them).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.signature(message)
    }

    /// A self-signed X.509 certificate (DER) of this RS256 key, for protocols that carry keys
    /// as certificates (SAML metadata and `KeyInfo`). The same bytes on every node and at every
    /// call: the serial is derived from the key id, the validity is fixed (SAML peers trust the
    /// key by metadata, not by the dates), and PKCS#1 v1.5 signatures are deterministic.
    pub fn certificate(self: &std::sync::Arc<Self>, subject: &str) -> Result<Vec<u8>, KeyError> {
        let failed = |e: rcgen::Error| KeyError::Material(format!("certificate of key {}: {e}", self.kid));
        let Signer::Rsa(key, _) = &self.signer else {
            return Err(KeyError::Material(format!("key {} is no RSA key", self.kid)));
        };
        if self.algorithm != SigningAlgorithm::RS256 {
            return Err(KeyError::Material(format!("key {} does not sign RS256", self.kid)));
        }
        let public = aws_lc_rs::signature::KeyPair::public_key(key).as_ref().to_vec();
        let remote = RemoteRsa { key: self.clone(), public };
        let key_pair = rcgen::KeyPair::from_remote(Box::new(remote)).map_err(failed)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, subject);
        let serial = Sha256::digest(self.kid.as_bytes());
        // A positive serial of 16 bytes (RFC 5280 §4.1.2.2: at most 20).
        let mut serial = serial[..16].to_vec();
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        Ok(params.self_signed(&key_pair).map_err(failed)?.der().to_vec())
    }

    /// The signature over `message` alone (base64url): what [`Self::sign`] costs without building
    /// the token, for the signing benchmark.
    pub fn sign_raw(&self, message: &[u8]) -> Result<String, KeyError> {
        Ok(URL_SAFE_NO_PAD.encode(self.signature(message)?))
    }

    fn signature(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |e: aws_lc_rs::error::Unspecified| KeyError::Sign(e.to_string());
        let random = aws_lc_rs::rand::SystemRandom::new();
        match &self.signer {
            Signer::Rsa(key, encoding) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(*encoding, &random, message, &mut signature).map_err(failed)?;
                Ok(signature)
            }
            Signer::Ecdsa(key) => Ok(key.sign(&random, message).map_err(failed)?.as_ref().to_vec()),
            Signer::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let mut jwk = Jwk::new("RSA", SigningAlgorithm::RS256);
        jwk.n = Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".to_owned());
        jwk.e = Some("AQAB".to_owned());
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn every_algorithm_signs_a_token_that_verifies_with_its_published_jwk() {
        for algorithm in
            [SigningAlgorithm::RS256, SigningAlgorithm::PS256, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA]
        {
            let generated = generate(algorithm).unwrap();
            let key = SigningKey::from_der(generated.public.kid.clone(), algorithm, &generated.private_der).unwrap();
            let token = key.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();

            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(serde_json::to_value(&generated.public).unwrap()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(algorithm.jwt());
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
            assert_eq!(decoded.header.kid.as_deref(), Some(generated.public.kid.as_str()), "{algorithm}");
            assert_eq!(decoded.header.typ.as_deref(), Some("JWT"));
            assert_eq!(decoded.claims["sub"], "x");
            // The raw signature is the one the token carries.
            let (message, signature) = token.rsplit_once('.').unwrap();
            if matches!(algorithm, SigningAlgorithm::RS256 | SigningAlgorithm::EdDSA) {
                assert_eq!(key.sign_raw(message.as_bytes()).unwrap(), signature, "deterministic for {algorithm}");
            }
            assert!(matches!(SigningKey::from_der("k".into(), algorithm, b"not a key"), Err(KeyError::Material(_))));
        }
    }

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in
            [SigningAlgorithm::RS256, SigningAlgorithm::PS256, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA]
        {
            assert_eq!(algorithm.as_str().parse::<SigningAlgorithm>().unwrap(), algorithm);
        }
        assert!("HS256".parse::<SigningAlgorithm>().is_err());
        assert!("none".parse::<SigningAlgorithm>().is_err());
    }
}
