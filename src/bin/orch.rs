//! The `orch` binary: parse, run, exit with the command's code.

use clap::Parser;
use orch::common;
use orch::orch_cmd::Cli;

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    common::init_logging(args.verbose);
    common::remember_panics();
    match args.run() {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            eprintln!("orch: {}", f.message);
            if let Some(panic) = common::last_panic().filter(|_| f.message.contains("the engine has stopped")) {
                eprintln!(
                    "orch: internal error: a part of the engine panicked: {panic}. The run was ended; what it \
                     journaled is kept, and the next `orch run` resumes (please report this)"
                );
            }
            std::process::ExitCode::from(f.code)
        }
    }
}
