//! The `orch` command line: one `run` function per subcommand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use orch_actors::ops;
use orch_actors::{Journal, Orchestrator, Selection, TaskOutcome, TaskSpec, TaskState};

use crate::common::{self, Failure, EXIT_NEEDS_HUMAN, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM};
use crate::config::{self, Overrides};
use crate::control::{self, Query, Verdict};

/// Supervises AI coding agents on queues of tasks across many projects.
#[derive(Debug, Parser)]
#[command(name = "orch", version, propagate_version = true)]
pub struct Cli {
    /// The config file (else $ORCH_CONFIG, else ./orch.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More diagnostics on stderr (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented orch.toml and the journal directory (refuses to overwrite).
    Init {
        /// Where (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// Import the config's projects and tasks, then supervise until every selected task is settled.
    Run(RunArgs),
    /// Every project and task with its state.
    Status {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Add or show tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Answer a task waiting for a human; it becomes pending and the answer reaches its next attempt.
    Answer {
        /// `ID` or `project/ID`.
        id: String,
        /// The answer.
        text: String,
    },
    /// Accept an escalated task's work as it is.
    Approve {
        /// `ID` or `project/ID`.
        id: String,
    },
    /// Refuse an escalated task's work; the task fails.
    Reject {
        /// `ID` or `project/ID`.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop working on a task.
    Cancel {
        /// `ID` or `project/ID`.
        id: String,
    },
    /// Restore every file the task's attempts changed to its content before.
    Rollback {
        /// `ID` or `project/ID`.
        id: String,
        /// Only attempts from this one on.
        #[arg(long)]
        attempt: Option<u32>,
        /// Also restore files that changed again since the attempt.
        #[arg(long)]
        force: bool,
    },
    /// (Run by claude as orch's PreToolUse hook.) Refuse edits of protected paths and writes outside.
    #[command(hide = true, subcommand)]
    Hook(HookCommand),
}

/// The hooks orch gives agents.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// claude's PreToolUse hook: the tool call on stdin, a refusal on stdout.
    PreToolUse {
        /// The attempt's rules (JSON, written by orch).
        rules: PathBuf,
    },
}

/// `orch run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only this project's tasks (repeatable).
    #[arg(long = "project", value_name = "NAME")]
    pub projects: Vec<String>,
    /// Only this task and what it depends on (repeatable; `ID` or `project/ID`).
    #[arg(long = "task", value_name = "ID")]
    pub tasks: Vec<String>,
    /// Agent sessions at once (overrides orchestration.max_sessions).
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// "sync" or "batch" (overrides journal.durability).
    #[arg(long)]
    pub durability: Option<String>,
}

/// `orch task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Add a task to a project.
    Add {
        /// The project.
        #[arg(long)]
        project: String,
        /// Unique within the project.
        #[arg(long)]
        id: String,
        /// One line.
        #[arg(long)]
        title: String,
        /// What to do (default: the title).
        #[arg(long)]
        description: Option<String>,
        /// 1 (low) … 10 (high).
        #[arg(long, default_value_t = orch_actors::types::DEFAULT_PRIORITY)]
        priority: u8,
        /// A task this one depends on (repeatable).
        #[arg(long = "depends-on", value_name = "ID")]
        depends_on: Vec<String>,
        /// An acceptance criterion (repeatable).
        #[arg(long = "acceptance", value_name = "TEXT")]
        acceptance: Vec<String>,
    },
    /// A task with all its attempts.
    Show {
        /// `ID` or `project/ID`.
        id: String,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Runs the command; returns the exit code.
    pub fn run(self) -> Result<u8, Failure> {
        let config = self.config.as_deref();
        match self.command {
            Command::Init { dir } => init(dir.as_deref()),
            Command::Run(args) => run(config, args),
            Command::Status { json } => status(config, json),
            Command::Task(TaskCommand::Show { id, json }) => task_show(config, &id, json),
            Command::Task(TaskCommand::Add { project, id, title, description, priority, depends_on, acceptance }) => {
                let spec = TaskSpec {
                    description: description.unwrap_or_else(|| title.clone()),
                    project,
                    id,
                    title,
                    priority,
                    depends_on,
                    acceptance,
                };
                task_add(config, spec)
            }
            Command::Answer { id, text } => human(config, &id, Verdict::Answer { text }),
            Command::Approve { id } => human(config, &id, Verdict::Approve),
            Command::Reject { id, reason } => human(config, &id, Verdict::Reject { reason }),
            Command::Cancel { id } => human(config, &id, Verdict::Cancel),
            Command::Rollback { id, attempt, force } => rollback(config, &id, attempt, force),
            Command::Hook(HookCommand::PreToolUse { rules }) => crate::helper_cmd::hook(&rules),
        }
    }
}

fn init(dir: Option<&Path>) -> Result<u8, Failure> {
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Failure::internal(format!("cannot create {}: {e}", dir.display())))?;
    let file = dir.join("orch.toml");
    if file.exists() {
        return Err(Failure::usage(format!("{} already exists; not overwriting it", file.display())));
    }
    std::fs::write(&file, config::DEFAULT_TOML)
        .map_err(|e| Failure::internal(format!("cannot write {}: {e}", file.display())))?;
    let journal = dir.join(".orch/journal");
    let j = Journal::open(&journal, true)?;
    j.flush()?;
    println!("wrote {} and created the journal {}", file.display(), journal.display());
    println!("next: add [[projects]] with their tasks to {}, then `orch run`", file.display());
    Ok(EXIT_OK)
}

/// Runs a query on the configured journal: through the run that holds it, or directly.
fn query(config: Option<&Path>, q: Query) -> Result<u8, Failure> {
    let path = common::journal_path(config, None)?;
    control::dispatch(&path, q, false)
}

fn status(config: Option<&Path>, json: bool) -> Result<u8, Failure> {
    query(config, Query::Status { json })
}

fn task_show(config: Option<&Path>, id: &str, json: bool) -> Result<u8, Failure> {
    query(config, Query::TaskShow { id: id.to_string(), json })
}

fn task_add(config_flag: Option<&Path>, spec: TaskSpec) -> Result<u8, Failure> {
    if !config::valid_id(&spec.id) {
        return Err(Failure::usage(format!("`{}` is not a valid task id (letters, digits, `-`, `_`, `.`)", spec.id)));
    }
    let cfg = common::load_config(config_flag, &Overrides::default(), false)?;
    // A run holds the journal: it takes the task in (and runs it, when the run covers its project).
    if let Some(reply) = control::ask(&cfg.settings.journal.path, &Query::TaskAdd { spec: spec.clone() }) {
        return reply?.print();
    }
    control::refuse_inside_attempt()?;
    let mut j = Journal::open(&cfg.settings.journal.path, true)?;
    // A project known to the config but not yet to the journal is registered first.
    if !j.state().projects.contains_key(&spec.project) {
        if let Some(p) = cfg.settings.project(&spec.project) {
            ops::import(&mut j, std::slice::from_ref(p))?;
        }
    }
    let key = spec.key();
    let added = ops::add_task(j.state(), spec, "cli")?;
    j.append(vec![added])?;
    j.flush()?;
    println!("added {key}");
    Ok(EXIT_OK)
}

fn human(config: Option<&Path>, id: &str, verdict: Verdict) -> Result<u8, Failure> {
    query(config, Query::Human { id: id.to_string(), verdict })
}

fn rollback(config: Option<&Path>, id: &str, attempt: Option<u32>, force: bool) -> Result<u8, Failure> {
    // Undoing an attempt's files is a human's call, like a verdict.
    control::refuse_inside_attempt()?;
    let path = common::journal_path(config, None)?;
    if let Some(Ok(reply)) = control::ask(&path, &Query::Ping) {
        return Err(Failure::usage(format!(
            "a run (pid {}) is supervising this journal: undoing files under running agents is not safe; stop it \
             first, then roll back",
            reply.stdout.trim()
        )));
    }
    let mut j = common::open_journal(&path)?;
    // An attempt a crash cut short has its changes journaled first (found against the manifest kept at its start).
    let skip = vec![j.path().canonicalize().unwrap_or_else(|_| j.path().to_path_buf())];
    for note in orch_actors::settle::settle_attempts_of(&mut j, id, &skip)? {
        eprintln!("{note}");
    }
    let report = ops::rollback(&mut j, id, attempt, force)?;
    for p in &report.restored {
        println!("restored {p}");
    }
    for p in &report.conflicts {
        println!("conflict {p}: changed since the attempt; left alone (use --force to restore it anyway)");
    }
    println!("{}: {} file(s) restored, {} conflict(s)", report.task, report.restored.len(), report.conflicts.len());
    Ok(if report.conflicts.is_empty() { EXIT_OK } else { EXIT_NEEDS_HUMAN })
}

/// Checks that every agent program can be found before anything runs.
fn check_agents(settings: &orch_actors::settings::Settings) -> Result<(), Failure> {
    let mut checked: Vec<String> = Vec::new();
    for p in &settings.projects {
        let prog = &p.agent.program;
        if checked.contains(prog) {
            continue;
        }
        checked.push(prog.clone());
        let found = if prog.contains('/') {
            is_executable(Path::new(prog))
        } else {
            std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).any(|d| is_executable(&d.join(prog))))
                .unwrap_or(false)
        };
        if !found {
            return Err(Failure::usage(format!(
                "project {}: the agent program `{prog}` was not found{}",
                p.name,
                if prog.contains('/') { " (or is not executable)" } else { " on PATH" }
            )));
        }
        if p.agent.kind == orch_actors::settings::AgentKind::ClaudeCode {
            version_check(&p.name, prog, &p.agent.env)?;
        }
    }
    Ok(())
}

/// Runs `PROGRAM --version` once, so that a broken install is reported at start, not as a failure of every task.
fn version_check(
    project: &str,
    program: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<(), Failure> {
    let mut child = std::process::Command::new(program)
        .arg("--version")
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure::usage(format!("project {project}: the agent program `{program}` cannot start: {e}")))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                return Err(Failure::usage(format!(
                    "project {project}: `{program} --version` did not answer within 30 s"
                )));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| Failure::internal(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Failure::usage(format!(
            "project {project}: `{program} --version` failed ({}): {}",
            out.status,
            err.trim().lines().last().unwrap_or("no message")
        )));
    }
    tracing::info!("{program}: {}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn run(config_flag: Option<&Path>, args: RunArgs) -> Result<u8, Failure> {
    let overrides = Overrides { max_sessions: args.max_sessions, durability: args.durability };
    let cfg = common::load_config(config_flag, &overrides, true)?;
    // The run calls the LLM: the key it needs must be there (other commands never read it).
    if let Some(e) = cfg.llm_key_missing.clone() {
        return Err(e.into());
    }
    let journal = &cfg.settings.journal.path;
    if let Some(Ok(reply)) = control::ask(journal, &Query::Ping) {
        let pid = reply.stdout.trim().to_string();
        return Err(Failure::usage(format!(
            "another `orch run` (pid {pid}) is supervising the journal at {}; watch it with `orch status` or \
             `orch-log follow`, or stop it first (Ctrl-C in its terminal, or `kill -TERM {pid}`)",
            journal.display()
        )));
    }
    check_agents(&cfg.settings)?;
    let selection = Selection { projects: args.projects, tasks: args.tasks };
    let system = actix::System::new();
    system.block_on(supervise(cfg.settings, selection))
}

async fn supervise(settings: orch_actors::settings::Settings, selection: Selection) -> Result<u8, Failure> {
    let (orch, report) = Orchestrator::start(settings).await?;
    // Live control: other commands reach this run through the socket while it holds the journal.
    let control = match control::serve(orch.journal_path(), orch.handle()) {
        Ok(guard) => Some(guard),
        Err(f) => {
            eprintln!("warning: {}; `orch status` and the like will wait for this run to end", f.message);
            None
        }
    };
    for p in orch.damaged_records() {
        eprintln!("warning: journal: {} is damaged: {} (run `orch-log verify`)", p.about, p.what);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match orch.containment() {
        orch_actors::ContainmentStatus::TagsFallback(_) => eprintln!("warning: {}", orch.containment().describe()),
        status => eprintln!("{}", status.describe()),
    }
    if let Some(why) = orch.sandbox_warning() {
        eprintln!("warning: {why} (set sandbox_required = true in [agent] to refuse instead)");
    }
    match orch.llm_status() {
        orch_actors::system::LlmStatus::Unavailable(why) => {
            eprintln!("warning: {why}; going on with evidence alone (set llm.required = true to refuse instead)")
        }
        orch_actors::system::LlmStatus::Ready(detail) => tracing::info!("LLM: {detail}"),
        orch_actors::system::LlmStatus::NotConfigured => {}
    }
    if report.added + report.updated + report.projects > 0 {
        println!(
            "imported {} project(s), {} new task(s), {} updated task(s)",
            report.projects, report.added, report.updated
        );
    }
    let mut events = orch.subscribe().await?;
    let mut progress = crate::live::Progress::new(orch.state().await?);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let printer = actix::spawn(async move {
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(r) => progress.event(&r.event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        progress.note(&format!("… {n} events not shown (see `orch-log events`)"));
                    }
                    Err(_) => break,
                },
                _ = &mut done_rx => {
                    while let Ok(r) = events.try_recv() {
                        progress.event(&r.event);
                    }
                    break;
                }
            }
        }
        progress.finish();
    });
    let signal = std::rc::Rc::new(std::cell::Cell::new(0u8));
    {
        let stopper = orch.handle();
        let signal = signal.clone();
        actix::spawn(async move {
            use tokio::signal::unix::{signal as unix_signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) =
                (unix_signal(SignalKind::interrupt()), unix_signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = int.recv() => signal.set(EXIT_SIGINT),
                _ = term.recv() => signal.set(EXIT_SIGTERM),
            }
            eprintln!("stopping: agents are being stopped and their attempts journaled as interrupted");
            stopper.stop();
        });
    }
    let result = orch.run(selection).await;
    drop(control);
    let _ = done_tx.send(());
    let _ = printer.await;
    let summary = result?;
    orch.shutdown().await?;
    println!();
    let mut by_state: BTreeMap<TaskState, usize> = BTreeMap::new();
    for TaskOutcome { key: k, state: s, reason } in &summary.tasks {
        *by_state.entry(*s).or_default() += 1;
        if s.blocks_dependants() {
            println!("{k}: {s} — {}", reason.as_deref().unwrap_or(""));
        }
    }
    let counts: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "{}: {}",
        if summary.interrupted { "run interrupted" } else { "run finished" },
        if counts.is_empty() { "nothing to do".into() } else { counts.join(", ") }
    );
    if summary.interrupted {
        return Ok(match signal.get() {
            0 => EXIT_SIGINT,
            s => s,
        });
    }
    Ok(if summary.all_completed() { EXIT_OK } else { EXIT_NEEDS_HUMAN })
}
