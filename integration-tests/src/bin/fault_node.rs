//! The server's command line as a binary of this package, so the fault suite can start nodes
//! as processes of their own and kill them (`CARGO_BIN_EXE_fault-node`).

fn main() -> std::process::ExitCode {
    server::cli::main()
}
