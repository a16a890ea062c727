// The bench's binary is also our server under test: it is laid out as the shipped one.
include!("../crates/server/build.rs");
