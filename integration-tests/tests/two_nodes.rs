//! Two server instances on one PostgreSQL and one Redis, as behind a load balancer.

use std::time::{Duration, Instant};

use oidc_core::Environment;
use serde_json::Value;

use crate::support::{Backends, TestServer};

async fn kids(base_url: &str, path: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{base_url}{path}")).await.unwrap().json().await.unwrap();
    let mut kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

#[tokio::test]
async fn two_nodes_share_keys_and_a_rotation_on_one_reaches_the_other() {
    let Some(backends) = Backends::shared("two_nodes_share_keys_and_a_rotation_on_one_reaches_the_other").await else {
        return;
    };
    let fast_refresh = |config: &mut server::Config| {
        config.keys.refresh_interval_seconds = 1;
        config.keys.activation_delay_seconds = 1;
    };
    // Both start at once on an empty database: key generation races and must settle on one set.
    let (a, b) = tokio::join!(TestServer::start(&backends, fast_refresh), TestServer::start(&backends, fast_refresh));
    for path in ["/jwks", "/test/jwks"] {
        let on_a = kids(&a.base_url, path).await;
        assert_eq!(on_a.len(), 3, "{path}: one key per algorithm, not one per node");
        assert_eq!(on_a, kids(&b.base_url, path).await, "{path}: both nodes publish the same keys");
    }

    let before = kids(&b.base_url, "/jwks").await;
    let rotated = a.state.keys().rotate(Environment::Production).await.unwrap();
    let new_kids: Vec<String> = rotated.iter().map(|k| k.kid.clone()).collect();
    let on_a = kids(&a.base_url, "/jwks").await;
    assert!(new_kids.iter().all(|kid| on_a.contains(kid)), "the rotating node publishes at once");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let on_b = kids(&b.base_url, "/jwks").await;
        if new_kids.iter().all(|kid| on_b.contains(kid)) {
            assert!(before.iter().all(|kid| on_b.contains(kid)), "old keys stay published during retention");
            break;
        }
        assert!(Instant::now() < deadline, "node B never published the rotated keys: {on_b:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kids(&b.base_url, "/test/jwks").await.len(), 3, "rotating production leaves test alone");

    a.stop().await;
    b.stop().await;
    backends.drop_now().await;
}
