//! `orch-guard hook pre-tool-use RULES`: claude's PreToolUse hook, which orch gives every claude attempt through
//! `--settings` — it refuses edits of protected paths and writes outside the workspace. The same subcommand exists
//! (hidden) in `orch`; this binary carries only it, so that it starts fast: it runs once per tool call.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 || args[0] != "hook" || args[1] != "pre-tool-use" {
        eprintln!("usage: orch-guard hook pre-tool-use RULES");
        return ExitCode::from(2);
    }
    match orch::helper_cmd::hook(std::path::Path::new(&args[2])) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("orch-guard: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
