//! # orch-actors — the orch engine
//!
//! orch supervises AI coding agents on queues of tasks. This crate is its engine: domain types, the eight actors
//! and their typed messages, the agent adapters, and the sled event journal. It prints nothing, reads no config
//! file and knows no command line: it is handed typed [`settings::Settings`].
//!
//! ## Theory of operation
//! Every state change is an [`journal::Event`] appended to the journal before anyone acts on it; the current state
//! ([`journal::State`]) is a fold of the events, kept up to date as they are appended and rebuildable from them.
//! One attempt at a task flows through the actors:
//!
//! 1. the **Scheduler** picks the highest-priority ready task with a free slot and starts an **AgentSession**;
//! 2. the session builds a token-budgeted prompt, asks the **FileMonitor** for a snapshot, runs the agent in its
//!    own process group, and hands the outcome and the file changes to the **Validator**;
//! 3. the **QualityController** runs the project's checks, the **ConfidenceScorer** weighs the evidence, and the
//!    **DecisionEngine** decides: proceed, retry with feedback, or escalate;
//! 4. the Scheduler applies the decision and starts what can start next.
//!
//! The **StateJournal** is the only writer of the database; every other actor sends it events.
//!
//! ## Embedding
//! ```
//! use std::time::Duration;
//! use orch_actors::settings::*;
//! use orch_actors::{Orchestrator, Selection, TaskSpec, TaskState};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let settings = Settings {
//!     notify: Default::default(),
//!     journal: JournalSettings { path: dir.path().join("journal"), durability: Durability::Batch },
//!     llm: LlmSettings::default(),
//!     orchestration: OrchestrationSettings { max_attempts: 2, ..OrchestrationSettings::default() },
//!     projects: vec![ProjectSettings {
//!         create_workspace: true,
//!         checks: vec!["grep -q world hello.txt".into()],
//!         check_timeout: Duration::from_secs(30),
//!         // A tiny agent: reads the prompt on stdin, writes a file, says what it did.
//!         ..ProjectSettings::new(
//!             "hello",
//!             dir.path().join("ws"),
//!             AgentSettings::command(
//!                 "sh",
//!                 vec!["-c".into(), "cat >/dev/null; echo 'hello world' > hello.txt; echo wrote hello.txt".into()],
//!             ),
//!         )
//!     }],
//! };
//! actix::System::new().block_on(async {
//!     let (orch, _) = Orchestrator::start(settings).await.unwrap();
//!     orch.submit(TaskSpec {
//!         project: "hello".into(),
//!         id: "greet".into(),
//!         title: "Greet the world".into(),
//!         description: "Write hello.txt containing 'hello world'.".into(),
//!         priority: 5,
//!         depends_on: vec![],
//!         acceptance: vec![],
//!     })
//!     .await
//!     .unwrap();
//!     let summary = orch.run(Selection::default()).await.unwrap();
//!     assert!(summary.all_completed());
//!     assert_eq!(orch.task("greet").await.unwrap().state, TaskState::Completed);
//! });
//! ```

pub mod actors;
pub mod agent;
pub mod cgroup;
pub(crate) mod diff;
pub mod error;
pub(crate) mod fault;
pub(crate) mod git;
pub mod journal;
pub mod judge;
pub mod llm;
pub mod notify;
pub mod ops;
pub(crate) mod process;
pub mod prompt;
pub mod redact;
pub mod sandbox;
pub mod settings;
pub mod settle;
pub mod system;
pub mod types;
pub mod validate;

/// What the project's own benchmarks and tests reach below the engine's API (the process runner they time); with
/// the `test-util` feature only.
#[cfg(feature = "test-util")]
pub mod test_util {
    pub use crate::process::{run, Spec};
}

pub use actors::scheduler::{RunSummary, Selection, TaskOutcome};
pub use error::{EngineError, JournalError, RecordError};
pub use git::is_repository;
pub use journal::{Event, EventRecord, Journal, State, TaskView};
/// The environment variable every process orch starts carries, and its descendants inherit.
pub use process::TAG_VAR;
pub use settings::{AgentSettings, ProjectSettings, Settings};
pub use system::{ContainmentStatus, Handle, LlmStatus, Orchestrator};
pub use types::{Decision, TaskKey, TaskSpec, TaskState};
pub use validate::Invalid;
