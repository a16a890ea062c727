//! The integration test binary: every test starts the real server on 127.0.0.1:0 with a
//! database of its own (PostgreSQL when `TEST_DATABASE_URL` is set, else an SQLite file) and
//! an ephemeral store of its own (a Redis key prefix when `TEST_REDIS_URL` is set, else memory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod admin;
mod ausweisapp;
mod backchannel;
mod browser;
mod citizen;
mod discovery;
mod eid;
mod eid_server;
mod jwt_access_tokens;
mod layering;
mod mail;
mod negative;
mod oidc;
mod ops;
mod organisations;
mod par_jar;
mod passkeys;
mod private_key_jwt;
mod privileges;
mod registration;
mod rp_node;
mod saml;
mod support;
mod two_nodes;
