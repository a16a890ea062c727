//! Signing one ID token per algorithm next to the raw signature over the same signing input,
//! so token issuance can be read as a share of the signing limit (`just bench-signing`).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use oidc_core::{IdTokenClaims, SigningAlgorithm, SigningKey, at_hash};

fn claims(algorithm: SigningAlgorithm) -> IdTokenClaims {
    IdTokenClaims {
        iss: "https://servicekonto.example/test".to_owned(),
        sub: URL_SAFE_NO_PAD.encode([7u8; 32]),
        aud: "demo-client".to_owned(),
        azp: "demo-client".to_owned(),
        exp: 1_900_000_300,
        iat: 1_900_000_000,
        auth_time: 1_900_000_000,
        nonce: Some(URL_SAFE_NO_PAD.encode([9u8; 32])),
        acr: "normal".to_owned(),
        amr: vec!["pwd".to_owned()],
        at_hash: Some(at_hash(&URL_SAFE_NO_PAD.encode([1u8; 32]), algorithm)),
        sid: Some(URL_SAFE_NO_PAD.encode([3u8; 16])),
        personal: serde_json::Map::new(),
    }
}

fn signing(c: &mut Criterion) {
    for algorithm in
        [SigningAlgorithm::RS256, SigningAlgorithm::PS256, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA]
    {
        let Ok((key, _)) = SigningKey::generate(algorithm) else {
            eprintln!("cannot generate a {algorithm} key");
            continue;
        };
        let claims = claims(algorithm);
        let token = key.sign("JWT", &claims).unwrap_or_default();
        // The raw operation: the same signing input, signed without building a token.
        let signing_input = token.rsplit_once('.').map(|(input, _)| input.to_owned()).unwrap_or_default();
        let mut group = c.benchmark_group(algorithm.as_str());
        group
            .bench_function("ID token (claims, header, signature)", |b| b.iter(|| key.sign("JWT", black_box(&claims))));
        group.bench_function("raw signature", |b| b.iter(|| key.sign_raw(black_box(signing_input.as_bytes()))));
        group.finish();
    }
}

criterion_group!(benches, signing);
criterion_main!(benches);
