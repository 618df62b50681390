//! Starts the actors and wires them together — the one place that knows who talks to whom — and offers the
//! embedding API, [`Orchestrator`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::broadcast;

use crate::actors::confidence::ConfidenceScorer;
use crate::actors::decision::DecisionEngine;
use crate::actors::file_monitor::FileMonitor;
use crate::actors::llm_gateway::{CheckLlm, LlmGateway};
use crate::actors::quality::QualityController;
use crate::actors::scheduler::{Refresh, Run, RunSummary, Scheduler, Selection, StopRun};
use crate::actors::state_journal::{Close, Control, Flush, GetState, Import, StateJournal, Subscribe};
use crate::actors::validator::Validator;
use crate::error::EngineError;
use crate::journal::{EventRecord, Journal, Problem, State, TaskView};
use crate::ops::{HumanRequest, ImportReport};
use crate::redact::Redactor;
use crate::settings::Settings;
use crate::types::{TaskKey, TaskSpec};

/// A cloneable handle on a running engine, for whoever acts on it from outside the run — a control socket, a
/// signal handler, a dashboard: control requests, the event stream, and stop. See [`Orchestrator::handle`].
#[derive(Clone)]
pub struct Handle {
    journal: Addr<StateJournal>,
    scheduler: Addr<Scheduler>,
}

impl Handle {
    /// See [`Orchestrator::control`].
    pub async fn control<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<(R, Vec<crate::journal::Event>), EngineError> + Send + 'static,
    ) -> Result<R, EngineError> {
        let (answer, changed) = self.journal.send(Control(Box::new(f))).await??;
        if !changed.is_empty() {
            self.scheduler.do_send(Refresh(changed));
        }
        Ok(answer)
    }

    /// Every event appended from now on.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<EventRecord>>, EngineError> {
        Ok(self.journal.send(Subscribe).await?)
    }

    /// Asks a run under way to stop gracefully: agents are stopped and their attempts journaled as interrupted.
    pub fn stop(&self) {
        self.scheduler.do_send(StopRun);
    }
}

/// A running engine: the actors, started on the current actix system.
pub struct Orchestrator {
    journal: Addr<StateJournal>,
    scheduler: Addr<Scheduler>,
    damaged: Vec<Problem>,
    released: Option<tokio::sync::oneshot::Receiver<()>>,
    path: PathBuf,
    llm: Option<Addr<LlmGateway>>,
    llm_status: LlmStatus,
    sandbox_warning: Option<String>,
    containment: ContainmentStatus,
}

/// How the processes of attempts are kept from outliving them, as found at start ([`crate::cgroup`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ContainmentStatus {
    /// Each agent and check in a cgroup of its own beneath this directory, killed whole with `cgroup.kill` when it
    /// ends (and the tag sweep after it).
    Cgroup(PathBuf),
    /// The tag sweep alone, as `containment = "tags"` asks.
    Tags,
    /// The tag sweep alone, because cgroup v2 cannot be used here: why.
    TagsFallback(String),
}

impl ContainmentStatus {
    /// One line for the user: which containment is in force, and why.
    pub fn describe(&self) -> String {
        const ESCAPES: &str =
            "a process that clears its environment (env -i) and leaves its process group can outlive its attempt";
        match self {
            ContainmentStatus::Cgroup(base) => format!(
                "containment: cgroup v2 — each agent and check runs in a cgroup of its own under {}, killed whole \
                 (cgroup.kill) when it ends",
                base.display()
            ),
            ContainmentStatus::Tags => {
                format!("containment: by process tag only (containment = \"tags\"): {ESCAPES}")
            }
            ContainmentStatus::TagsFallback(why) => {
                format!("containment: by process tag only, cgroup v2 cannot be used here ({why}): {ESCAPES}")
            }
        }
    }
}

/// What the LLM check at start found.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmStatus {
    /// `provider = "none"`.
    NotConfigured,
    /// It answered; what it said about the model.
    Ready(String),
    /// It did not: the run goes on with evidence alone (`llm.required = false`).
    Unavailable(String),
}

impl Orchestrator {
    /// Opens the journal, starts the actors, and imports the configured projects and tasks (idempotent by id).
    /// Must be called within an actix system.
    pub async fn start(settings: Settings) -> Result<(Orchestrator, ImportReport), EngineError> {
        settings.validate()?;
        // The tokenizer takes tens of milliseconds to load: do it while the rest starts.
        std::thread::spawn(crate::prompt::warm_up);
        let path = settings.journal.path.clone();
        let redactor = Arc::new(Redactor::for_settings(&settings));
        let journal_redactor = redactor.clone();
        let journal = tokio::task::spawn_blocking(move || {
            Journal::open(&path, true).map(|mut j| {
                j.set_redactor(journal_redactor);
                j
            })
        })
        .await
        .map_err(|e| EngineError::Stopped(format!("opening the journal: {e}")))??;
        // A journal that lost acknowledged records is not built on: tasks it no longer knows were done would run
        // again, and new events would take the lost ones' numbers.
        if let Some(loss) = journal.loss() {
            return Err(crate::error::JournalError::Lost {
                path: journal.path().to_path_buf(),
                what: loss.to_string(),
            }
            .into());
        }
        let mut journal = journal;
        let damaged = journal.damaged_at_open().to_vec();
        let journal_dir = journal.path().canonicalize().unwrap_or_else(|_| journal.path().to_path_buf());
        let mut projects = Vec::new();
        for p in &settings.projects {
            let mut p = p.clone();
            if !p.workspace.exists() && p.create_workspace {
                std::fs::create_dir_all(&p.workspace).map_err(|source| EngineError::Io {
                    about: format!("creating workspace {} of project {}", p.workspace.display(), p.name),
                    source,
                })?;
            }
            p.workspace = p.workspace.canonicalize().map_err(|source| EngineError::Io {
                about: format!("workspace {} of project {}", p.workspace.display(), p.name),
                source,
            })?;
            projects.push(p);
        }
        // Containment: probed once (which also ends what stale cgroups of dead orch processes still hold), before
        // any attempt can start; said once, here and by `orch run`.
        let mode = settings.orchestration.containment;
        let containment = tokio::task::spawn_blocking(move || match mode {
            crate::settings::Containment::Tags => ContainmentStatus::Tags,
            crate::settings::Containment::Auto => match crate::cgroup::hierarchy() {
                Ok(h) => ContainmentStatus::Cgroup(h.base().to_path_buf()),
                Err(why) => ContainmentStatus::TagsFallback(why.to_string()),
            },
        })
        .await
        .unwrap_or_else(|e| ContainmentStatus::TagsFallback(format!("the cgroup probe failed: {e}")));
        match &containment {
            ContainmentStatus::TagsFallback(_) => tracing::warn!("{}", containment.describe()),
            _ => tracing::info!("{}", containment.describe()),
        }
        // What a crash left half done — an attempt, a rollback, a merge — is settled before anything new starts.
        crate::settle::settle(&mut journal, &projects, std::slice::from_ref(&journal_dir)).await?;
        let (journal, released) = StateJournal::new(journal, settings.journal.durability);
        let journal = journal.start();

        let mut monitors = HashMap::new();
        let mut by_workspace: HashMap<PathBuf, Addr<FileMonitor>> = HashMap::new();
        for p in &projects {
            let monitor = by_workspace
                .entry(p.workspace.clone())
                .or_insert_with(|| {
                    FileMonitor::new(
                        p.workspace.clone(),
                        vec![journal_dir.clone()],
                        journal.clone().recipient(),
                        journal.clone().recipient(),
                    )
                    .start()
                })
                .clone();
            monitors.insert(p.name.clone(), monitor);
        }
        // The sandbox: probed once; where the kernel cannot enforce it, said once (or refused when required).
        let mut sandbox_warning = None;
        let sandboxed =
            |p: &crate::settings::ProjectSettings| p.agent.sandbox.mode == crate::settings::SandboxMode::Landlock;
        if projects.iter().any(sandboxed) {
            if let crate::sandbox::Support::Unavailable(why) = tokio::task::spawn_blocking(crate::sandbox::probe)
                .await
                .unwrap_or(crate::sandbox::Support::Unavailable("the probe failed".into()))
            {
                if let Some(p) = projects.iter().find(|p| sandboxed(p) && p.agent.sandbox.required) {
                    return Err(EngineError::SandboxRequired(format!(
                        "{why} (project {} has sandbox_required = true)",
                        p.name
                    )));
                }
                for p in projects.iter_mut() {
                    p.agent.sandbox.mode = crate::settings::SandboxMode::None;
                }
                sandbox_warning = Some(why);
            }
        }
        let (llm, llm_status) = match crate::llm::provider(settings.llm.provider) {
            None => (None, LlmStatus::NotConfigured),
            Some(p) => {
                let gateway = LlmGateway::new(settings.llm.clone(), p, journal.clone().recipient())
                    .with_redactor(redactor.clone())
                    .start();
                match gateway.send(CheckLlm).await? {
                    Ok(detail) => (Some(gateway), LlmStatus::Ready(detail)),
                    Err(e) if settings.llm.required => {
                        return Err(EngineError::LlmRequired(format!(
                            "{e} (llm.required = true; set it to false to run on evidence alone)"
                        )))
                    }
                    Err(e) => (None, LlmStatus::Unavailable(e.to_string())),
                }
            }
        };
        let reviewer = llm.as_ref().map(|g| crate::actors::quality::Reviewer {
            gateway: g.clone().recipient(),
            system: settings.orchestration.prompts.review_system.clone(),
        });
        let llm_for_decisions = llm.as_ref().map(|g| g.clone().recipient());
        let llm_key: Vec<String> = settings.llm.api_key.iter().filter(|k| k.len() >= 8).cloned().collect();
        let o = settings.orchestration.clone();
        let journal_path = settings.journal.path.clone();
        let notify = settings.notify.clone();
        let j = journal.clone();
        let import_projects = projects.clone();
        let scheduler = Scheduler::create(move |ctx| {
            let decision = DecisionEngine::new(
                j.clone().recipient(),
                ctx.address().recipient(),
                o.decision.clone(),
                o.max_attempts,
                o.confidence_threshold,
                ctx.address().recipient(),
                o.breakpoints.clone(),
            )
            .with_llm(llm_for_decisions, &o.prompts.clarify_system)
            .start();
            let scorer = ConfidenceScorer::new(
                j.clone().recipient(),
                decision.recipient(),
                o.confidence.clone(),
                ctx.address().recipient(),
            )
            .start();
            let quality = QualityController::new(
                j.clone().recipient(),
                scorer.recipient(),
                o.output_tail_bytes,
                redactor.clone(),
                ctx.address().recipient(),
                j.clone().recipient(),
                reviewer,
            )
            .with_evidence(j.clone().recipient(), llm_key.clone())
            .start();
            let validator =
                Validator::new(j.clone().recipient(), quality.recipient(), ctx.address().recipient()).start();
            Scheduler::new(o, projects, j, monitors, validator.recipient(), redactor, journal_path).with_notify(notify)
        });
        let report = journal.send(Import(import_projects)).await??;
        let path = settings.journal.path.clone();
        Ok((
            Orchestrator {
                journal,
                scheduler,
                damaged,
                released: Some(released),
                path,
                llm,
                llm_status,
                sandbox_warning,
                containment,
            },
            report,
        ))
    }

    /// Why agents run without the sandbox although it was asked for (the kernel cannot enforce it), if so.
    pub fn sandbox_warning(&self) -> Option<&str> {
        self.sandbox_warning.as_deref()
    }

    /// Which containment is in force for the processes of attempts, and why.
    pub fn containment(&self) -> &ContainmentStatus {
        &self.containment
    }

    /// What the LLM check at start found.
    pub fn llm_status(&self) -> &LlmStatus {
        &self.llm_status
    }

    /// Asks the LLM through the gateway (bounded, retried, journaled); `None` when there is no usable LLM.
    pub async fn ask_llm(
        &self,
        request: crate::llm::LlmRequest,
    ) -> Option<Result<crate::llm::LlmAnswer, crate::llm::LlmError>> {
        let gateway = self.llm.as_ref()?;
        Some(gateway.send(crate::actors::llm_gateway::Ask { request, about: None }).await.unwrap_or_else(|e| {
            Err(crate::llm::LlmError::Unreachable { url: "gateway".into(), detail: e.to_string() })
        }))
    }

    /// Records that were found damaged when the journal was opened.
    pub fn damaged_records(&self) -> &[Problem] {
        &self.damaged
    }

    /// Adds a task to the journal; a run under way over its project takes it in, else a later
    /// [`Orchestrator::run`] picks it up.
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskKey, EngineError> {
        self.control(move |j| {
            let key = spec.key();
            Ok((key, vec![crate::ops::add_task(j.state(), spec, "api")?]))
        })
        .await
    }

    /// Runs the selected tasks until each is completed, escalated, failed, blocked or cancelled.
    pub async fn run(&self, selection: Selection) -> Result<RunSummary, EngineError> {
        self.scheduler.send(Run(selection)).await?
    }

    /// Asks a run under way to stop gracefully; [`Orchestrator::run`] then returns with `interrupted`.
    pub fn stop(&self) {
        self.scheduler.do_send(StopRun);
    }

    /// The current state of every project and task.
    pub async fn state(&self) -> Result<State, EngineError> {
        Ok(self.journal.send(GetState).await?)
    }

    /// One task (`ID` or `project/ID`) with its attempts.
    pub async fn task(&self, id: &str) -> Result<TaskView, EngineError> {
        let state = self.state().await?;
        let key = state.resolve(id).map_err(EngineError::UnknownTask)?;
        state.tasks.get(&key).cloned().ok_or_else(|| EngineError::UnknownTask(id.to_string()))
    }

    /// A human's answer or verdict on a task.
    pub async fn human(&self, id: &str, request: HumanRequest) -> Result<TaskKey, EngineError> {
        let id = id.to_string();
        self.control(move |j| crate::ops::human_events(j.state(), &id, &request)).await
    }

    /// A control request from outside the run (see [`Control`]): runs `f` on the journal's actor, appends the events
    /// it returns, and lets a run under way take in the changed tasks.
    pub async fn control<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<(R, Vec<crate::journal::Event>), EngineError> + Send + 'static,
    ) -> Result<R, EngineError> {
        self.handle().control(f).await
    }

    /// A cloneable handle for control requests, the event stream and stop, from another task or thread.
    pub fn handle(&self) -> Handle {
        Handle { journal: self.journal.clone(), scheduler: self.scheduler.clone() }
    }

    /// The journal's directory.
    pub fn journal_path(&self) -> &std::path::Path {
        &self.path
    }

    /// Every event appended from now on.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<EventRecord>>, EngineError> {
        Ok(self.journal.send(Subscribe).await?)
    }

    /// Stops the engine: a run under way is stopped gracefully, the journal is flushed and released (another
    /// process may open it once this returns).
    pub async fn shutdown(mut self) -> Result<(), EngineError> {
        self.scheduler.do_send(StopRun);
        self.journal.send(Flush).await??;
        self.journal.do_send(Close);
        if let Some(rx) = self.released.take() {
            // An error means the actor is already gone, which is what we wait for.
            let _ = rx.await;
        }
        let path = self.path.clone();
        let released =
            tokio::task::spawn_blocking(move || Journal::wait_released(&path, std::time::Duration::from_secs(10)))
                .await
                .unwrap_or(false);
        if !released {
            tracing::warn!("the journal at {} is still locked after shutdown", self.path.display());
        }
        // This process's `orch-<pid>` cgroup, once none of its cgroups is left in it.
        if let Some(h) = crate::cgroup::probed() {
            h.release();
        }
        Ok(())
    }

    /// Flushes the journal to disk.
    pub async fn flush(&self) -> Result<(), EngineError> {
        Ok(self.journal.send(Flush).await??)
    }
}
