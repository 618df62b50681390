//! The `orch-log` binary: parse, run, exit with the command's code.

use clap::Parser;
use orch::common;
use orch::log_cmd::Cli;

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    common::init_logging(args.verbose);
    match args.run() {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            eprintln!("orch-log: {}", f.message);
            std::process::ExitCode::from(f.code)
        }
    }
}
