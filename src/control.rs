//! Live control. While `orch run` holds the journal (sled locks it), the other commands reach the run through a Unix
//! socket in the journal directory, `control.sock` (mode 0600): `orch status`, `orch task show|add`, `orch answer`,
//! `orch approve`, `orch reject`, `orch cancel` and every `orch-log` command. With no run, they open the journal
//! themselves. Both paths execute the same [`Query`] against a [`Journal`], so they print the same.
//!
//! The protocol: one JSON line, the query; then JSON lines back — one [`Reply`], or for `follow`, one line per event
//! (`{"seq": N, "line": "…"}`) until the run ends.
//!
//! Only humans change the journal: a request that adds a task or gives a verdict ([`Query::changes`]) from a process
//! of an attempt — told by the peer's credentials and the process tag up its parent chain ([`crate::origin`]) — is
//! refused; such processes may read. The socket outlives its clients ([`Limits`]): a request is one line of at most
//! 1 MiB, sent within 10 s; 64 connections are served at once (and 64 `follow` streams apart), more are answered
//! `busy` (and [`ask`] asks again); a failed accept (no file descriptor left) is waited out, never the end of serving.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use orch_actors::journal::{EventFilter, Journal};
use orch_actors::ops::{self, HumanRequest};
use orch_actors::{Event, TaskSpec};
use serde::{Deserialize, Serialize};

use crate::common::{Failure, EXIT_INTERNAL, EXIT_OK};
use crate::render;

/// The socket's file name in the journal directory.
pub const SOCKET: &str = "control.sock";

/// The socket of the journal at `journal`.
pub fn socket_path(journal: &Path) -> PathBuf {
    journal.join(SOCKET)
}

/// A human's request on a task, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// `orch answer`.
    Answer {
        /// The answer.
        text: String,
    },
    /// `orch approve`.
    Approve,
    /// `orch reject`.
    Reject {
        /// Why.
        reason: String,
    },
    /// `orch cancel`.
    Cancel,
}

impl From<Verdict> for HumanRequest {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Answer { text } => HumanRequest::Answer(text),
            Verdict::Approve => HumanRequest::Approve,
            Verdict::Reject { reason } => HumanRequest::Reject(reason),
            Verdict::Cancel => HumanRequest::Cancel,
        }
    }
}

/// What a command asks of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum Query {
    /// Is a run there? Answers its pid.
    Ping,
    /// `orch status`.
    Status {
        /// JSON.
        json: bool,
    },
    /// `orch task show`.
    TaskShow {
        /// `ID` or `project/ID`.
        id: String,
        /// JSON.
        json: bool,
    },
    /// `orch task add`.
    TaskAdd {
        /// The task.
        spec: TaskSpec,
    },
    /// `orch answer|approve|reject|cancel`.
    Human {
        /// `ID` or `project/ID`.
        id: String,
        /// What the human says.
        verdict: Verdict,
    },
    /// `orch-log events`.
    Events {
        /// Only this project.
        project: Option<String>,
        /// Only this task.
        task: Option<String>,
        /// Only these kinds.
        kinds: Vec<u16>,
        /// Only at or after (ms since the epoch).
        since_ms: Option<i64>,
        /// JSON lines.
        json: bool,
    },
    /// `orch-log show`.
    Show {
        /// `ID` or `project/ID`.
        id: String,
    },
    /// `orch-log stats`.
    Stats {
        /// JSON.
        json: bool,
    },
    /// `orch-log verify`.
    Verify,
    /// `orch-log follow`: new events as they are written.
    Follow {
        /// JSON lines.
        json: bool,
    },
}

impl Query {
    /// Whether it changes the journal (a task added, a human's verdict): what only a human may ask for.
    pub fn changes(&self) -> bool {
        matches!(self, Query::TaskAdd { .. } | Query::Human { .. })
    }
}

/// What a query printed and how it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// The exit code.
    pub code: u8,
    /// Standard output.
    pub stdout: String,
    /// Standard error (warnings).
    pub stderr: String,
    /// An error message, printed as `orch: …` (the code is then the error's).
    pub error: Option<String>,
    /// The run is serving as many connections as it will: try again shortly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
}

impl Reply {
    fn failure(f: Failure) -> Reply {
        Reply { code: f.code, error: Some(f.message), ..Reply::default() }
    }

    /// Prints it as the command would have, and returns its exit code.
    pub fn print(self) -> Result<u8, Failure> {
        print!("{}", self.stdout);
        eprint!("{}", self.stderr);
        let _ = std::io::stdout().flush();
        match self.error {
            Some(message) => Err(Failure { code: self.code, message }),
            None => Ok(self.code),
        }
    }
}

/// Executes a query on a journal: what it prints, and the events it appends (for the caller to append).
pub fn execute(query: &Query, j: &Journal) -> (Reply, Vec<Event>) {
    match run_query(query, j) {
        Ok(r) => r,
        Err(f) => (Reply::failure(f), Vec::new()),
    }
}

fn run_query(query: &Query, j: &Journal) -> Result<(Reply, Vec<Event>), Failure> {
    let mut r = Reply::default();
    let mut events = Vec::new();
    match query {
        Query::Ping => r.stdout = format!("{}\n", std::process::id()),
        Query::Follow { .. } => return Err(Failure::usage("follow is streamed, not executed")),
        Query::Status { json } => {
            r.stdout =
                if *json { render::status_json(j.state()).to_string() + "\n" } else { render::status_text(j.state()) };
        }
        Query::TaskShow { id, json } => {
            let key = j.state().resolve(id).map_err(Failure::usage)?;
            let view = &j.state().tasks[&key];
            r.stdout = if *json { format!("{}\n", render::task_json(view)) } else { render::task_text(view) };
        }
        Query::TaskAdd { spec } => {
            events.push(ops::add_task(j.state(), spec.clone(), "cli")?);
            r.stdout = format!("added {}\n", spec.key());
        }
        Query::Human { id, verdict } => {
            let (key, evs) = ops::human_events(j.state(), id, &HumanRequest::from(verdict.clone()))?;
            let to = evs.iter().rev().find_map(|e| match e {
                Event::TaskStateChanged(c) => Some(c.to),
                _ => None,
            });
            r.stdout = format!("{key}: now {}\n", to.map(|s| s.as_str()).unwrap_or("unchanged"));
            events = evs;
        }
        Query::Events { project, task, kinds, since_ms, json } => {
            let task = match task {
                Some(t) => Some(j.state().resolve(t).map_err(Failure::usage)?),
                None => None,
            };
            if let Some(p) = project {
                if !j.state().projects.contains_key(p) {
                    return Err(Failure::usage(format!("unknown project `{p}`")));
                }
            }
            let filter =
                EventFilter { project: project.clone(), task, kinds: kinds.clone(), since_ms: *since_ms, after_seq: 0 };
            for rec in j.scan(filter) {
                match rec {
                    Ok(rec) => {
                        r.stdout.push_str(&render::record_line(&rec, *json));
                        r.stdout.push('\n');
                    }
                    Err(e) => {
                        r.code = EXIT_INTERNAL;
                        r.stderr.push_str(&format!("warning: {e}\n"));
                    }
                }
            }
        }
        Query::Show { id } => {
            let key = j.state().resolve(id).map_err(Failure::usage)?;
            let mut records = Vec::new();
            for rec in j.scan(EventFilter { task: Some(key.clone()), ..EventFilter::default() }) {
                match rec {
                    Ok(rec) => records.push(rec),
                    Err(e) => r.stderr.push_str(&format!("warning: {e}\n")),
                }
            }
            r.stdout = render::timeline(&j.state().tasks[&key], &records);
        }
        Query::Stats { json } => {
            let mut warnings = String::new();
            let records = j.scan(EventFilter::default()).filter_map(|rec| match rec {
                Ok(rec) => Some(rec),
                Err(e) => {
                    warnings.push_str(&format!("warning: {e}\n"));
                    None
                }
            });
            let s = render::stats(j.state(), records);
            r.stdout = if *json { format!("{}\n", render::stats_json(&s)) } else { render::stats_text(&s) };
            r.stderr = warnings;
        }
        Query::Verify => {
            let report = j.verify()?;
            for p in &report.problems {
                r.stdout.push_str(&format!("damaged: {}: {}\n", p.about, p.what));
            }
            r.stdout.push_str(&format!(
                "{}: {} events, {} projections, {} blobs checked{}\n",
                j.path().display(),
                report.events,
                report.projections,
                report.blobs,
                if report.is_whole() {
                    ", all whole".to_string()
                } else {
                    format!(", {} problem(s)", report.problems.len())
                }
            ));
            r.code = if report.is_whole() { EXIT_OK } else { EXIT_INTERNAL };
        }
    }
    Ok((r, events))
}

/// A connection to the run holding the journal at `journal`, if one is there.
pub fn connect(journal: &Path) -> Option<UnixStream> {
    UnixStream::connect(socket_path(journal)).ok()
}

/// Sends `query` to the run holding the journal and returns its reply; `None` when no run is there.
/// A busy run (as many connections as it serves at once) is asked again, for up to [`BUSY_PATIENCE`].
pub fn ask(journal: &Path, query: &Query) -> Option<Result<Reply, Failure>> {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        let stream = connect(journal)?;
        match exchange(stream, query) {
            Ok(reply) if reply.busy && start.elapsed() < BUSY_PATIENCE => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            other => return Some(other),
        }
    }
}

/// How long a client asks a busy run again before it gives up.
pub const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

fn exchange(mut stream: UnixStream, query: &Query) -> Result<Reply, Failure> {
    let lost = |e: std::io::Error| Failure::internal(format!("the run's control socket: {e}"));
    let line = serde_json::to_string(query).map_err(|e| Failure::internal(e.to_string()))?;
    // A busy run answers and closes without reading: its answer is read even when the request could not be sent.
    let sent = stream.write_all(format!("{line}\n").as_bytes());
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let read = reader.read_line(&mut answer);
    if answer.trim().is_empty() {
        sent.map_err(lost)?;
        read.map_err(lost)?;
        return Err(Failure::internal("the run closed its control socket without answering (it may be ending)"));
    }
    serde_json::from_str(&answer).map_err(|e| Failure::internal(format!("the run's answer is not understood: {e}")))
}

/// Runs `query` on the journal at `journal`: through the run that holds it, or by opening it (`create`: make it
/// when missing). Appends what the query appends. Prints, and returns the exit code.
pub fn dispatch(journal: &Path, query: Query, create: bool) -> Result<u8, Failure> {
    if let Some(reply) = ask(journal, &query) {
        return reply?.print();
    }
    if query.changes() {
        refuse_inside_attempt()?;
    }
    let mut j = if create { Journal::open(journal, true)? } else { crate::common::open_journal(journal)? };
    let (reply, events) = execute(&query, &j);
    if !events.is_empty() {
        j.append(events)?;
        j.flush()?;
    }
    reply.print()
}

/// Refuses when this process works for an attempt (what the journal is changed by directly, with no run to ask).
pub fn refuse_inside_attempt() -> Result<(), Failure> {
    match crate::origin::of_self().refusal() {
        Some(why) => Err(Failure::usage(why)),
        None => Ok(()),
    }
}

/// Streams new events from the run holding the journal, printing each; returns the last sequence number seen when
/// the run goes away, or `None` when no run is there.
pub fn follow_live(journal: &Path, json: bool, mut after: u64) -> Option<u64> {
    let mut stream = connect(journal)?;
    let line = serde_json::to_string(&Query::Follow { json }).ok()?;
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    let reader = BufReader::new(stream);
    let stdout = std::io::stdout();
    for l in reader.lines() {
        let Ok(l) = l else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) else { continue };
        if v.get("seq").is_none() {
            // A reply instead of events: the run is busy, or refused the request.
            if let Ok(reply) = serde_json::from_value::<Reply>(v) {
                eprintln!("orch-log: {}", reply.error.unwrap_or_default());
            }
            break;
        }
        // Sequence 0: a notice, not an event.
        let seq = v["seq"].as_u64().unwrap_or(0);
        if seq != 0 && seq <= after {
            continue;
        }
        after = after.max(seq);
        let mut out = stdout.lock();
        if writeln!(out, "{}", v["line"].as_str().unwrap_or("")).is_err() {
            std::process::exit(0); // the reader went away (e.g. `| head`)
        }
        let _ = out.flush();
    }
    Some(after)
}

/// Serves the control socket of a run until the returned guard is dropped. Queries run on the journal's actor
/// through `controller`, so what they read and append is ordered with the run's own events.
pub fn serve(journal: &Path, controller: orch_actors::Handle) -> Result<ServeGuard, Failure> {
    serve_with(journal, controller, Limits::default())
}

/// What the control socket bears: it outlives its clients, whatever they send or keep open.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request line (bytes, newline excluded); a longer one is refused with an error line.
    pub max_request: usize,
    /// How long a client has to send its request, and to take each line of the answer.
    pub idle: std::time::Duration,
    /// Connections served at once (and, apart, `orch-log follow` streams); more are told the run is busy.
    pub connections: usize,
    /// How long the accept loop waits after a failed accept (no file descriptor left, say) before it accepts again.
    pub accept_pause: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request: 1 << 20,
            idle: std::time::Duration::from_secs(10),
            connections: 64,
            accept_pause: std::time::Duration::from_millis(50),
        }
    }
}

/// [`serve`] with other limits.
pub fn serve_with(journal: &Path, controller: orch_actors::Handle, limits: Limits) -> Result<ServeGuard, Failure> {
    let path = socket_path(journal);
    // A socket file left by a run that died: nobody answers on it (the journal lock is ours now).
    if path.exists() && connect(journal).is_none() {
        let _ = std::fs::remove_file(&path);
    }
    // Made 0600 in a private (0700) directory, then moved into place: nobody else can connect in between.
    let private = journal.join(format!(".control-{}", std::process::id()));
    let listener = {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|e| Failure::internal(format!("cannot create {}: {e}", private.display())))?;
        let staged = private.join(SOCKET);
        let bound = tokio::net::UnixListener::bind(&staged)
            .map_err(|e| Failure::internal(format!("cannot listen on {}: {e}", staged.display())))
            .and_then(|l| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
                    .and_then(|_| std::fs::rename(&staged, &path))
                    .map_err(|e| Failure::internal(format!("cannot put the socket at {}: {e}", path.display())))
                    .map(|_| l)
            });
        let _ = std::fs::remove_dir_all(&private);
        bound?
    };
    let descriptors = descriptor_budget(&limits, spare_descriptors());
    if descriptors < limits.connections * 2 + BUSY_SPARE {
        tracing::debug!("control socket: {descriptors} descriptor(s) for connections, fewer than the limits ask");
    }
    let task = actix::spawn(accept_loop(listener, controller, limits, descriptors));
    Ok(ServeGuard { path, task })
}

/// Stops serving and removes the socket when dropped.
pub struct ServeGuard {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connections beyond those served that may be open at once to be told the run is busy.
const BUSY_SPARE: usize = 8;

/// The file descriptors this process may still open: its soft limit less those open now (`None` if unknown).
fn spare_descriptors() -> Option<usize> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(usize::try_from(soft).unwrap_or(usize::MAX).saturating_sub(open))
}

/// How many connections the socket holds open at once: what the limits ask (requests, `follow` streams and busy
/// answers), but never more than half the descriptors left, so that a flood of clients cannot take from the run
/// the descriptors its attempts need (a walk of the workspace, a pipe to the agent). At least one.
fn descriptor_budget(limits: &Limits, spare: Option<usize>) -> usize {
    let asked = limits.connections.saturating_mul(2).saturating_add(BUSY_SPARE);
    spare.map_or(asked, |spare| asked.min(spare / 2)).max(1)
}

/// Accepts connections until the run ends (the task is aborted), holding at most `descriptors` open at once (more
/// wait in the listen queue); a failed accept — no file descriptor left, for one — is logged and waited out, never
/// the end of the loop.
async fn accept_loop(
    listener: tokio::net::UnixListener,
    controller: orch_actors::Handle,
    limits: Limits,
    descriptors: usize,
) {
    let gate = Gate::new(limits.connections);
    let held = std::sync::Arc::new(tokio::sync::Semaphore::new(descriptors));
    // Failed accepts in a row: the first is a warning, the rest of the streak only debug output.
    let mut failing = 0u64;
    loop {
        let Ok(slot) = held.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                if failing > 0 {
                    tracing::warn!("control socket: accepting again after {failing} failed accept(s)");
                    failing = 0;
                }
                stream
            }
            Err(e) => {
                if failing == 0 {
                    tracing::warn!("control socket: accept failed ({e}); retrying every {:?}", limits.accept_pause);
                } else {
                    tracing::debug!("control socket: accept failed ({e})");
                }
                failing += 1;
                tokio::time::sleep(limits.accept_pause).await;
                continue;
            }
        };
        let controller = controller.clone();
        let gate = gate.clone();
        actix::spawn(async move {
            if let Err(e) = handle(stream, controller, limits, gate).await {
                tracing::debug!("control connection: {e}");
            }
            drop(slot);
        });
    }
}

/// The connections served at once: requests, and `follow` streams apart (they last as long as the run).
#[derive(Clone)]
struct Gate {
    requests: std::sync::Arc<tokio::sync::Semaphore>,
    follows: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Gate {
    fn new(n: usize) -> Gate {
        Gate {
            requests: std::sync::Arc::new(tokio::sync::Semaphore::new(n)),
            follows: std::sync::Arc::new(tokio::sync::Semaphore::new(n)),
        }
    }
}

/// Why a request line could not be had.
#[derive(Debug, PartialEq, Eq)]
enum Unread {
    /// The client closed the connection without a request.
    Closed,
    /// Longer than the limit.
    TooLarge,
    /// Nothing complete within the limit.
    Idle,
    /// The connection failed.
    Failed(String),
}

/// Reads one request line: at most `limits.max_request` bytes, within `limits.idle`.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(read: R, limits: &Limits) -> Result<String, Unread> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut reader = tokio::io::BufReader::new(read.take(limits.max_request as u64 + 1));
    let mut buf = Vec::new();
    match tokio::time::timeout(limits.idle, reader.read_until(b'\n', &mut buf)).await {
        Err(_) => Err(Unread::Idle),
        Ok(Err(e)) => Err(Unread::Failed(e.to_string())),
        Ok(Ok(0)) => Err(Unread::Closed),
        Ok(Ok(_)) => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else if buf.len() > limits.max_request {
                return Err(Unread::TooLarge);
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

/// Writes one line, within `idle` (a client that does not read is let go).
async fn write_line<W: tokio::io::AsyncWrite + Unpin>(
    write: &mut W,
    line: &str,
    idle: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let text = format!("{line}\n");
    match tokio::time::timeout(idle, write.write_all(text.as_bytes())).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read its answer")),
    }
}

fn reply_line(reply: &Reply) -> String {
    serde_json::to_string(reply).unwrap_or_default()
}

/// Where the peer of a connection stands (its pid from its credentials): a human, or a process of an attempt.
fn peer_origin(peer: &std::io::Result<Option<i32>>) -> crate::origin::Origin {
    use crate::origin::Origin;
    match peer {
        Ok(Some(pid)) if *pid > 0 => crate::origin::of_pid(*pid as u32, Some(std::process::id())),
        Ok(_) => Origin::Unknown("the peer's process is not visible from here".to_string()),
        Err(e) => Origin::Unknown(format!("no peer credentials: {e}")),
    }
}

async fn handle(
    stream: tokio::net::UnixStream,
    controller: orch_actors::Handle,
    limits: Limits,
    gate: Gate,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let Ok(permit) = gate.requests.clone().try_acquire_owned() else {
        let (_, mut write) = stream.into_split();
        let busy = Reply {
            busy: true,
            ..Reply::failure(Failure::internal(format!(
                "the run is busy ({} connections at once); try again shortly",
                limits.connections
            )))
        };
        write_line(&mut write, &reply_line(&busy), limits.idle).await?;
        return write.shutdown().await;
    };
    let peer = stream.peer_cred().map(|c| c.pid());
    let (read, mut write) = stream.into_split();
    let line = match read_request(read, &limits).await {
        Ok(line) => line,
        Err(Unread::Closed) => return Ok(()),
        Err(Unread::Failed(e)) => return Err(std::io::Error::other(e)),
        Err(why) => {
            let message = match why {
                Unread::TooLarge => format!("request refused: longer than {} bytes", limits.max_request),
                _ => format!("no request within {:?}", limits.idle),
            };
            write_line(&mut write, &reply_line(&Reply::failure(Failure::usage(message))), limits.idle).await?;
            return write.shutdown().await;
        }
    };
    let reply = match serde_json::from_str::<Query>(&line) {
        Err(e) => Reply::failure(Failure::usage(format!("not a query: {e}"))),
        Ok(query) if query.changes() && peer_origin(&peer).refusal().is_some() => {
            let why = peer_origin(&peer).refusal().unwrap_or_default();
            tracing::warn!("control socket: {why}");
            Reply::failure(Failure::usage(why))
        }
        Ok(Query::Follow { json }) => {
            drop(permit);
            let Ok(_follow) = gate.follows.clone().try_acquire_owned() else {
                let busy = Reply {
                    busy: true,
                    ..Reply::failure(Failure::internal(format!(
                        "the run is busy ({} followers at once)",
                        limits.connections
                    )))
                };
                write_line(&mut write, &reply_line(&busy), limits.idle).await?;
                return write.shutdown().await;
            };
            let Ok(mut events) = controller.subscribe().await else { return Ok(()) };
            loop {
                let msg = match events.recv().await {
                    Ok(rec) => {
                        let line = render::record_line(&rec, json);
                        serde_json::json!({"seq": rec.seq, "line": line})
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        serde_json::json!({"seq": 0, "line": format!("… {n} events not shown (see `orch-log events`)")})
                    }
                    Err(_) => return Ok(()),
                };
                if write_line(&mut write, &msg.to_string(), limits.idle).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(query) => match controller.control(move |j| Ok(execute(&query, j))).await {
            Ok(reply) => reply,
            Err(e) => Reply::failure(e.into()),
        },
    };
    write_line(&mut write, &reply_line(&reply), limits.idle).await?;
    drop(permit);
    write.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn small() -> Limits {
        Limits {
            max_request: 16,
            idle: std::time::Duration::from_millis(200),
            connections: 2,
            accept_pause: std::time::Duration::from_millis(10),
        }
    }

    #[test]
    fn the_socket_never_holds_more_than_half_the_descriptors_left() {
        let limits = Limits::default();
        assert_eq!(descriptor_budget(&limits, None), 64 * 2 + BUSY_SPARE);
        assert_eq!(descriptor_budget(&limits, Some(20_000)), 64 * 2 + BUSY_SPARE);
        assert_eq!(descriptor_budget(&limits, Some(30)), 15);
        assert_eq!(descriptor_budget(&limits, Some(0)), 1);
        assert!(spare_descriptors().is_some_and(|n| n > 0));
    }

    #[tokio::test]
    async fn a_request_is_one_bounded_line_sent_in_time() {
        let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
        client.write_all(b"{\"query\":\"ping\"}\n").await.unwrap();
        assert_eq!(read_request(server, &small()).await.unwrap(), "{\"query\":\"ping\"}");

        // Longer than the limit, newline or not: refused after reading no more than the limit.
        let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&vec![b'x'; 1 << 20]).await;
            client
        });
        assert_eq!(read_request(server, &small()).await, Err(Unread::TooLarge));
        drop(writer);

        // Nothing sent: let go after the idle limit.
        let (_client, server) = tokio::net::UnixStream::pair().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(read_request(server, &small()).await, Err(Unread::Idle));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        // Half a line, then silence: let go too.
        let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
        client.write_all(b"{\"query\"").await.unwrap();
        assert_eq!(read_request(server, &small()).await, Err(Unread::Idle));

        // Closed at once: nothing to answer.
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        drop(client);
        assert_eq!(read_request(server, &small()).await, Err(Unread::Closed));
    }

    #[test]
    fn a_busy_reply_says_so_and_older_replies_still_parse() {
        let busy = Reply { busy: true, ..Reply::default() };
        let back: Reply = serde_json::from_str(&reply_line(&busy)).unwrap();
        assert!(back.busy);
        let old: Reply = serde_json::from_str(r#"{"code":0,"stdout":"x","stderr":"","error":null}"#).unwrap();
        assert!(!old.busy);
        assert!(!reply_line(&Reply::default()).contains("busy"));
    }

    #[test]
    fn only_additions_and_verdicts_change_the_journal() {
        assert!(Query::Human { id: "t".into(), verdict: Verdict::Approve }.changes());
        assert!(!Query::Status { json: true }.changes());
        assert!(!Query::Verify.changes());
        assert!(!Query::Follow { json: true }.changes());
    }
}
