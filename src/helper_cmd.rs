//! The helper orch gives agents, run by claude, not by users: `orch-guard hook pre-tool-use RULES` (also the hidden
//! `orch hook pre-tool-use`) is claude's PreToolUse hook that refuses edits of protected paths and writes outside
//! the workspace.

use std::io::Read;

use crate::common::Failure;

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
