//! The Scheduler's messages and what a run answers.

use actix::prelude::*;

use crate::error::EngineError;
use crate::journal::TaskView;
use crate::types::{TaskKey, TaskState};

/// Which tasks a run is about. Empty lists mean every task of every configured project.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these projects.
    pub projects: Vec<String>,
    /// Only these tasks (`ID` or `project/ID`).
    pub tasks: Vec<String>,
}

/// Where one task of a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task.
    pub key: TaskKey,
    /// Its state at the run's end.
    pub state: TaskState,
    /// Where it needs a human (escalated, failed, blocked, cancelled): why.
    pub reason: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Every selected task with its final state and, where it needs a human, why.
    pub tasks: Vec<TaskOutcome>,
    /// The run was stopped before it finished.
    pub interrupted: bool,
}

impl RunSummary {
    /// Every selected task completed.
    pub fn all_completed(&self) -> bool {
        self.tasks.iter().all(|t| t.state == TaskState::Completed)
    }

    /// Tasks in `state`.
    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|t| t.state == state).count()
    }
}

/// Run the selected tasks until every one is settled.
#[derive(Message)]
#[rtype(result = "Result<RunSummary, EngineError>")]
pub struct Run(pub Selection);

/// Task views changed from outside the run (a human's answer, verdict or cancel; a task added): the run takes them
/// in — an answered task is scheduled again, a cancelled one is stopped, a new one in the run's projects joins it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refresh(pub Vec<TaskView>);

/// Stop the run gracefully: agents are stopped and their attempts journaled as interrupted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRun;
