// Code layout of the optimised binaries: the functions a node runs from its start until its first
// answer (`crates/server/link-order.txt`, written by `bench/link-order.sh`) are placed first, so a
// started node keeps a few megabytes of its code resident instead of most of it (Linux maps code
// in whole large folios; docs/performance.md, "start code laid out together"). The bench's
// binary, which is also the server under test, includes this file.
//
// Relative relocations are packed (`-z pack-relative-relocs`, DT_RELR): the loader reads all of
// them at start, and packed they take kilobytes instead of 0.9 MB. Only when this machine's C
// library loads them (glibc ≥ 2.36, as Debian 12 and the image's base): a binary with packed
// relocations does not start on an older one.
//
// Only where LLD links (rustc's default linker on x86_64 Linux) and only for optimised builds:
// debug builds have other symbol names, and no other linker knows the options.

use std::{env, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = |key: &str| env::var(key).unwrap_or_default();
    let lld_links = target("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && target("CARGO_CFG_TARGET_OS") == "linux"
        && target("CARGO_CFG_TARGET_ENV") == "gnu";
    if !lld_links || target("PROFILE") != "release" {
        return;
    }
    if loader_knows_packed_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let Some(order) = Path::new(&manifest)
        .ancestors()
        .map(|dir| dir.join("crates/server/link-order.txt"))
        .find(|file| file.is_file())
    else {
        return;
    };
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    // Names of functions a dependency update removed are skipped, not reported.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the C library here loads packed relative relocations: glibc names that ability
/// `GLIBC_ABI_DT_RELR` from 2.36 on.
fn loader_knows_packed_relocations() -> bool {
    const ABI: &[u8] = b"GLIBC_ABI_DT_RELR";
    ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib64/libc.so.6", "/usr/lib/libc.so.6"]
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .any(|libc| libc.windows(ABI.len()).any(|window| window == ABI))
}
