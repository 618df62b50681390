//! Fault injection for the crash tests. In a debug build, `ORCH_FAULT=<point>` makes the process abort when it
//! reaches that point — as abruptly as a `kill -9` or a power cut, with no destructor run and nothing flushed that
//! was not already — so that a test can crash orch exactly in the middle of a rollback or a merge and check what the
//! next start makes of it. Release builds have no fault points.
//!
//! `ORCH_FAULT=panic:<point>` panics there instead, to check that a panic where none is expected ends the run.
//!
//! The points: `rollback:one-restored` (a rollback has restored its first file), `merge:merged` (a task's branch
//! was merged; nothing journaled about it yet), `scheduler:concluded` (the Scheduler takes an attempt's decision),
//! `journal:decided` (the journal's writer takes a decision to append).

/// Aborts (or panics) here when `ORCH_FAULT` names `name` (debug builds only).
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(v) = std::env::var_os("ORCH_FAULT") {
        if v == name {
            eprintln!("orch: fault injected at {name}: aborting");
            std::process::abort();
        }
        if v.to_str().and_then(|v| v.strip_prefix("panic:")) == Some(name) {
            panic!("fault injected at {name}");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
