//! # orch — the edge
//!
//! Configuration loading (file → environment → flags), the `orch` and `orch-log` command lines, terminal output
//! and signals. The engine is the `orch-actors` crate; this crate turns what a user types into its typed settings
//! and requests, and what it records into what a user reads.

pub mod common;
pub mod config;
pub mod control;
pub mod helper_cmd;
pub mod live;
pub mod log_cmd;
pub mod orch_cmd;
pub mod origin;
pub mod render;
