//! What every theme shares: the fixture (a temporary journal and workspace with a shell script as the agent), task
//! specs, reading the journal back, the process table, git, a webhook receiver, and the waits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use orch_actors::journal::{EventFilter, Journal};
use orch_actors::settings::{
    AgentSettings, Durability, JournalSettings, LlmSettings, OrchestrationSettings, ProjectSettings, SandboxSettings,
    Settings,
};
use orch_actors::{Event, EventRecord, TaskSpec};
use tokio::sync::broadcast;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Fixture { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Settings with one project whose agent is `sh -c SCRIPT` (prompt on stdin).
    pub(crate) fn settings(&self, script: &str, checks: &[&str], tasks: Vec<TaskSpec>) -> Settings {
        Settings {
            notify: Default::default(),
            journal: JournalSettings { path: self.path("journal"), durability: Durability::Sync },
            llm: LlmSettings::default(),
            orchestration: OrchestrationSettings { max_sessions: 2, ..OrchestrationSettings::default() },
            projects: vec![ProjectSettings {
                create_workspace: true,
                checks: checks.iter().map(|c| c.to_string()).collect(),
                check_timeout: Duration::from_secs(30),
                tasks,
                ..ProjectSettings::new(
                    "p",
                    self.path("ws"),
                    AgentSettings {
                        timeout: Duration::from_secs(60),
                        idle_timeout: Duration::from_secs(30),
                        // The agents leave notes beside their workspaces (prompts, logs) for the tests to read.
                        sandbox: SandboxSettings {
                            writable: vec![self.dir.path().to_path_buf()],
                            ..SandboxSettings::default()
                        },
                        ..AgentSettings::command("sh", vec!["-c".into(), script.into()])
                    },
                )
            }],
        }
    }

    /// A second project `q`, like the first, in workspace `ws2`, with one task.
    pub(crate) fn add_project_q(&self, settings: &mut Settings, t: TaskSpec) {
        let mut q = settings.projects[0].clone();
        q.name = "q".into();
        q.workspace = self.path("ws2");
        q.tasks = vec![TaskSpec { project: "q".into(), ..t }];
        settings.projects.push(q);
    }
}

pub(crate) fn task(id: &str, priority: u8, depends_on: &[&str]) -> TaskSpec {
    TaskSpec {
        project: "p".into(),
        id: id.into(),
        title: format!("Task {id}"),
        description: format!("Do {id}."),
        priority,
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        acceptance: vec![],
    }
}

pub(crate) fn events(journal: &Path) -> Vec<Event> {
    let j = Journal::open(journal, false).expect("journal");
    let events = j.scan(EventFilter::default()).map(|r| r.expect("record").event).collect();
    // sled lets go of its lock a moment after the handle is dropped; the test may open it again at once.
    drop(j);
    assert!(Journal::wait_released(journal, Duration::from_secs(10)));
    events
}

pub(crate) fn breakpoints_hit(journal: &Path) -> Vec<(String, String)> {
    events(journal)
        .into_iter()
        .filter_map(|e| match e {
            Event::BreakpointHit(b) => Some((b.breakpoint, b.detail)),
            _ => None,
        })
        .collect()
}

/// Processes whose command line contains `marker`.
pub(crate) fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && !cmd.contains("cargo") {
                out.push(cmd);
            }
        }
    }
    out
}

/// A probe for [`wait_for`]: the processes whose command line contains `marker`, or, while there are none, says so.
pub(crate) fn running(marker: &str) -> Result<Vec<String>, String> {
    let found = processes_with(marker);
    if found.is_empty() {
        Err(format!("no process with {marker:?} in its command line"))
    } else {
        Ok(found)
    }
}

/// How long [`wait_for`] waits between two looks.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `probe` answers `Ok`, looking again every few milliseconds; past `deadline`, panics saying `what` it
/// waited for and what the probe last saw (its last `Err`). The deadline bounds a failure; it is not a timing.
pub(crate) async fn wait_for<T, Fut>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut last = String::from("nothing: the probe never answered");
    loop {
        match tokio::time::timeout_at(end, probe()).await {
            Ok(Ok(found)) => return found,
            Ok(Err(seen)) => last = seen,
            Err(_elapsed) => {}
        }
        if tokio::time::Instant::now() >= end {
            panic!("waited {deadline:?} for {what}; last saw: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Awaits the next event on `rx` that `wanted` picks; past `deadline`, or if the stream ends first, panics saying
/// `what` it waited for and the kinds of the events that went by.
pub(crate) async fn next_event(
    rx: &mut broadcast::Receiver<Arc<EventRecord>>,
    what: &str,
    deadline: Duration,
    wanted: impl Fn(&Event) -> bool,
) -> Arc<EventRecord> {
    let mut passed: Vec<String> = Vec::new();
    let found = tokio::time::timeout(deadline, async {
        loop {
            match rx.recv().await {
                Ok(r) if wanted(&r.event) => return Some(r),
                Ok(r) => passed.push(r.event.kind().to_string()),
                Err(broadcast::error::RecvError::Lagged(n)) => passed.push(format!("({n} missed)")),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await;
    match found {
        Ok(Some(r)) => r,
        Ok(None) => panic!("the event stream ended before {what}; went by: {passed:?}"),
        Err(_elapsed) => panic!("waited {deadline:?} for {what}; went by: {passed:?}"),
    }
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with one commit, for worktree isolation.
pub(crate) fn repository(f: &Fixture) -> PathBuf {
    let ws = f.path("ws");
    std::fs::create_dir_all(&ws).expect("ws");
    git(&ws, &["init", "-q", "-b", "main"]);
    std::fs::write(ws.join("README.md"), "# project\n").expect("readme");
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-q", "-m", "start"]);
    ws
}

/// A one-shot HTTP server on loopback: answers every request 200 and keeps the bodies.
pub(crate) fn webhook_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            kept.lock().expect("bodies").push(String::from_utf8_lossy(&body).into_owned());
            let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}
