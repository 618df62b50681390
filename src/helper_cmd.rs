//! orch's helper subcommands, run by the engine around an agent, not by users: `orch sandbox-exec` restricts
//! itself with Landlock and becomes the agent; `orch hook pre-tool-use` is claude's PreToolUse hook that refuses
//! edits of protected paths and writes outside the workspace.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::cli::Failure;

/// `orch sandbox-exec --write DIR… -- PROGRAM ARGS…`: writes allowed only beneath the DIRs, then exec.
pub fn sandbox_exec(write: &[PathBuf], command: &[String]) -> Result<u8, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::usage("sandbox-exec: no program to run after `--`"));
    };
    match orch_actors::sandbox::enter(write) {
        Ok(orch_actors::sandbox::Support::Unavailable(why)) => eprintln!("orch sandbox-exec: warning: {why}"),
        Ok(_) => {}
        Err(e) => return Err(Failure::internal(format!("sandbox-exec: Landlock could not be entered: {e}"))),
    }
    // Only returns on failure.
    let err = std::process::Command::new(program).args(args).exec();
    Err(Failure { code: 127, message: format!("sandbox-exec: cannot run {program}: {err}") })
}

/// `orch hook pre-tool-use RULES`: reads claude's hook input on stdin, prints a refusal when the call must not
/// happen. Always exits 0 (a hook that fails would block every call, or none, depending on claude's version).
pub fn hook(rules: &std::path::Path) -> Result<u8, Failure> {
    let rules: orch_actors::judge::hook::Rules = match std::fs::read(rules)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orch hook: {}: {e}; not refusing anything", rules.display());
            return Ok(0);
        }
    };
    let mut input = String::new();
    let _ = std::io::stdin().take(16 << 20).read_to_string(&mut input);
    let Ok(input) = serde_json::from_str::<serde_json::Value>(&input) else { return Ok(0) };
    if let Some(reason) = orch_actors::judge::hook::decide(&rules, &input) {
        println!("{}", orch_actors::judge::hook::deny_json(&reason));
    }
    Ok(0)
}
