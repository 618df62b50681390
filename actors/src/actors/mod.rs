//! The eight actors and the report that flows between them. Each module declares its messages beside their
//! handlers; `system.rs` starts the actors and wires them together.

pub mod agent_session;
pub mod confidence;
pub mod decision;
pub mod file_monitor;
pub mod llm_gateway;
pub mod pipeline;
pub mod quality;
pub mod report;
pub mod scheduler;
pub mod state_journal;
pub mod validator;
