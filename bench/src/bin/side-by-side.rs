//! `just bench`: servicekonto and node `oidc-provider` side by side (see `bench::side_by_side`).
//!
//! `side-by-side [--seconds S] [--concurrency C] [--out DIR] [--smoke] [--without-peer]`;
//! PostgreSQL and Redis when `BENCH_DATABASE_URL` / `BENCH_REDIS_URL` are set.
//!
//! The same binary is also the server under test: started with `BENCH_ROLE=servicekonto` it runs
//! the `server` library's command line, exactly what the `servicekonto` binary runs, compiled in
//! the same release profile. So the harness needs no second build and no path to another binary.

use std::process::ExitCode;

use bench::{
    process::can_pin,
    side_by_side::{Options, PINNED_VARIABLE, ROLE_SERVICEKONTO, ROLE_VARIABLE, run},
};

fn main() -> ExitCode {
    if std::env::var(ROLE_VARIABLE).as_deref() == Ok(ROLE_SERVICEKONTO) {
        return server::cli::main();
    }
    // The generator runs on core 0, the servers on core 1: re-run this binary under taskset.
    if std::env::var_os(PINNED_VARIABLE).is_none() && can_pin() {
        let status = std::env::current_exe().and_then(|exe| {
            std::process::Command::new("taskset")
                .arg("-c")
                .arg("0")
                .arg(exe)
                .args(std::env::args_os().skip(1))
                .env(PINNED_VARIABLE, "1")
                .status()
        });
        return match status {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("side-by-side: cannot re-run under taskset: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("side-by-side: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("side-by-side: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("side-by-side: {error:#}");
            ExitCode::FAILURE
        }
    }
}
