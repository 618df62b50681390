//! Running child processes the way orch needs them: in their own process group, with a wall-clock limit, an
//! optional no-output limit, output captured line by line, and nothing left behind.
//!
//! A process group is not enough to find everything an agent started: Claude Code runs each Bash tool call in a
//! session of its own (`setsid`), and a background process whose parent exits is adopted by init. So every process
//! is started with a unique tag in its environment (`ORCH_PROCESS_TAG`), which its descendants inherit; and, where
//! cgroup v2 can be used ([`crate::cgroup`], `containment = "auto"`), in a cgroup of its own, which no descendant
//! can leave by itself — not even one that cleared its environment (`env -i`). When it ends — by itself, on a
//! timeout or on a stop — its cgroup is killed (`cgroup.kill`) and removed, then whatever still carries the tag is
//! killed (the fallback without a cgroup, and a belt with one). Timeouts and stops send SIGTERM to the group first,
//! so that an agent can stop its own children, then SIGKILL.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::settings::Containment;
pub use crate::types::Stream;

/// What ended a process: itself, or orch (a limit, or a request to stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// It ended by itself.
    Itself,
    /// It ran past its wall-clock limit.
    WallClock,
    /// It printed nothing for too long.
    Idle,
    /// It was stopped on request (the run stopping, a human cancelling).
    Request,
}

impl EndedBy {
    /// The name used in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Itself => "none",
            EndedBy::WallClock => "wall_clock",
            EndedBy::Idle => "idle",
            EndedBy::Request => "stopped",
        }
    }
}

/// What to run.
pub struct Spec<'a> {
    /// The program.
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// Variables not inherited from orch (secrets, [`crate::redact::Redactor::hidden_env`]); `env` may still set
    /// one.
    pub hide_env: &'a [String],
    /// Written to stdin, which is then closed; `None`: stdin is /dev/null.
    pub stdin: Option<String>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// No-output limit.
    pub idle_timeout: Option<Duration>,
    /// How long a SIGTERM'd group gets to exit before SIGKILL.
    pub grace: Duration,
    /// The attempt this process works for ([`attempt_tag`]): its tag starts with it, so that whatever the attempt
    /// started can be found and killed after a crash of the supervisor ([`kill_attempt`]).
    pub attempt: Option<&'a str>,
    /// Run it in the Landlock sandbox, writable only beneath these paths ([`crate::sandbox::enter`]).
    pub sandbox: Option<&'a [std::path::PathBuf]>,
    /// How what it starts is kept from outliving it: in a cgroup of its own where one can be had, or by its tag.
    pub containment: crate::settings::Containment,
}

/// How it ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Whether we ended it.
    pub timeout: EndedBy,
    /// Wall time from spawn until it was reaped (the sweep for what it left behind is not included).
    pub duration: Duration,
    /// Bytes on stdout.
    pub stdout_bytes: u64,
    /// Bytes on stderr.
    pub stderr_bytes: u64,
    /// Processes it left behind that had to be killed.
    pub orphans_killed: u32,
}

impl Exit {
    /// Exited 0 by itself.
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.timeout == EndedBy::Itself
    }
}

/// Why a process could not be run.
#[derive(Debug, thiserror::Error)]
#[error("cannot start `{program}` in {cwd}: {source}")]
pub struct SpawnError {
    /// The program.
    pub program: String,
    /// The working directory.
    pub cwd: String,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// Spawns `cmd` from a thread of its own that first enters the Landlock sandbox: Landlock restricts the calling
/// thread and what it starts, so the child is sandboxed and orch is not (the thread ends with the spawn). No extra
/// process and no `unsafe` `pre_exec` are needed.
async fn spawn_sandboxed(mut cmd: Command, writable: Vec<std::path::PathBuf>) -> std::io::Result<Child> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("orch-sandbox".into()).spawn(move || {
        // The child is registered with the runtime's process driver, as a spawn on a runtime thread would be.
        let _runtime = handle.enter();
        let child = match crate::sandbox::enter(&writable) {
            Ok(_) => cmd.spawn(),
            Err(e) => Err(std::io::Error::other(format!("entering the sandbox: {e}"))),
        };
        let _ = tx.send(child);
    });
    if let Err(e) = spawned {
        return Err(std::io::Error::other(format!("starting the sandbox thread: {e}")));
    }
    rx.await.unwrap_or_else(|_| Err(std::io::Error::other("the sandbox thread ended without a result")))
}

/// Runs a process to its end, sending each output line to `lines` (when given) as it comes. `stop` ends it early.
pub async fn run(
    spec: Spec<'_>,
    lines: Option<mpsc::UnboundedSender<(Stream, String)>>,
    stop: Option<oneshot::Receiver<()>>,
) -> Result<Exit, SpawnError> {
    let tag = match spec.attempt {
        Some(a) => format!("{a}/{}", new_tag()),
        None => new_tag(),
    };
    let spawn_error =
        |source| SpawnError { program: spec.program.to_string(), cwd: spec.cwd.display().to_string(), source };
    // In a cgroup of its own, entered by the trampoline before the program runs (see `crate::cgroup`; probed off
    // this thread the first time). The program is looked up first, so that a missing one is an error to start, as
    // without the trampoline.
    let group = match spec.containment {
        Containment::Tags => None,
        Containment::Auto => {
            let tag = tag.clone();
            let created = tokio::task::spawn_blocking(move || {
                crate::cgroup::hierarchy().ok().map(|h| h.create(&tag).map(|g| (h, g)))
            })
            .await;
            match created {
                Ok(None) => None, // no cgroup v2 here: said once, when the run started
                Ok(Some(Ok(pair))) => Some(pair),
                Ok(Some(Err(e))) => {
                    tracing::warn!("{e}: `{}` is contained by its tag only", spec.program);
                    None
                }
                Err(e) => {
                    tracing::warn!("creating a cgroup: {e}: `{}` is contained by its tag only", spec.program);
                    None
                }
            }
        }
    };
    if group.is_some() {
        locate(spec.program, spec.cwd, spec.env).map_err(spawn_error)?;
    }
    let mut cmd = match &group {
        None => Command::new(spec.program),
        Some((h, g)) => {
            let mut c = Command::new(h.shell());
            c.arg("-c").arg(crate::cgroup::TRAMPOLINE).arg(g.procs()).arg(spec.program);
            c
        }
    };
    cmd.args(spec.args)
        .current_dir(spec.cwd)
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for k in spec.hide_env {
        cmd.env_remove(k);
    }
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    cmd.env(TAG_VAR, &tag);
    let started = Instant::now();
    let spawned = match spec.sandbox {
        None => cmd.spawn(),
        Some(writable) => {
            let mut writable = writable.to_vec();
            // The trampoline writes its pid there (that one file; nothing else of the cgroup).
            if let Some((_, g)) = &group {
                writable.push(g.procs());
            }
            spawn_sandboxed(cmd, writable).await
        }
    };
    let mut child = spawned.map_err(spawn_error)?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    if let (Some(input), Some(mut stdin)) = (spec.stdin, child.stdin.take()) {
        tokio::spawn(async move {
            // A child that does not read its stdin is not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);

    let deadline = tokio_deadline_after(tokio::time::Instant::now(), spec.timeout);
    let mut stop = stop;
    let mut last_output = tokio::time::Instant::now();
    let mut outcome = EndedBy::Itself;
    let (mut out_bytes, mut err_bytes) = (0u64, 0u64);
    let mut streams_open = true;
    let status = loop {
        let idle_deadline = spec.idle_timeout.map(|d| tokio_deadline_after(last_output, d)).unwrap_or(deadline);
        tokio::select! {
            line = rx.recv(), if streams_open => match line {
                Some((stream, bytes)) => {
                    last_output = tokio::time::Instant::now();
                    match stream {
                        Stream::Stdout => out_bytes += bytes.len() as u64,
                        Stream::Stderr => err_bytes += bytes.len() as u64,
                    }
                    if let Some(l) = &lines {
                        let text = String::from_utf8_lossy(&bytes);
                        let _ = l.send((stream, text.trim_end_matches(['\n', '\r']).to_string()));
                    }
                }
                None => streams_open = false,
            },
            status = child.wait() => {
                // Drain what is left in the pipes (bounded: the group is killed right after).
                break status;
            }
            _ = tokio::time::sleep_until(deadline) => {
                outcome = EndedBy::WallClock;
                break terminate(&mut child, pgid, spec.grace).await;
            }
            _ = tokio::time::sleep_until(idle_deadline), if spec.idle_timeout.is_some() => {
                outcome = EndedBy::Idle;
                break terminate(&mut child, pgid, spec.grace).await;
            }
            _ = async { match stop.as_mut() { Some(s) => { let _ = s.await; } None => std::future::pending::<()>().await } } => {
                outcome = EndedBy::Request;
                break terminate(&mut child, pgid, spec.grace).await;
            }
        }
    };
    // The process's own time ends here; cleaning up after it is the supervisor's.
    let duration = started.elapsed();
    // Whatever it left running goes with it: its cgroup, its group, then anything else that carries its tag.
    let first = pgid.map(|p| p.as_raw() as u32).unwrap_or(0);
    let orphans_killed = tokio::task::spawn_blocking(move || {
        let in_cgroup = match group {
            None => 0,
            Some((_, g)) => g.end(crate::cgroup::END_WAIT).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                0
            }),
        };
        kill_group(pgid);
        in_cgroup + kill_tagged(&tag, first)
    })
    .await
    .unwrap_or(0);
    // Lines already read before the exit are still delivered.
    let drain_until = tokio_deadline_after(tokio::time::Instant::now(), Duration::from_millis(500));
    while streams_open {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some((stream, bytes))) => {
                match stream {
                    Stream::Stdout => out_bytes += bytes.len() as u64,
                    Stream::Stderr => err_bytes += bytes.len() as u64,
                }
                if let Some(l) = &lines {
                    let text = String::from_utf8_lossy(&bytes);
                    let _ = l.send((stream, text.trim_end_matches(['\n', '\r']).to_string()));
                }
            }
            Ok(None) | Err(_) => streams_open = false,
        }
    }
    let status = status.map_err(spawn_error)?;
    use std::os::unix::process::ExitStatusExt;
    Ok(Exit {
        code: status.code(),
        signal: status.signal(),
        timeout: outcome,
        duration,
        stdout_bytes: out_bytes,
        stderr_bytes: err_bytes,
        orphans_killed,
    })
}

/// Whether `program` can be started as exec would find it: a name with a slash as it is (relative to `cwd`), any
/// other on `PATH` (the child's, when `env` sets it, else orch's). The error is the one a spawn would give.
fn locate(program: &str, cwd: &Path, env: &[(String, String)]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |m: &std::fs::Metadata| m.is_file() && m.permissions().mode() & 0o111 != 0;
    if program.contains('/') {
        let meta = std::fs::metadata(cwd.join(program))?;
        return if executable(&meta) {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32))
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/bin:/usr/bin".to_string());
    let found = !program.is_empty()
        && path.split(':').any(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            std::fs::metadata(cwd.join(dir).join(program)).is_ok_and(|m| executable(&m))
        });
    if found {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32))
    }
}

/// The environment variable that marks a process and its descendants.
pub const TAG_VAR: &str = "ORCH_PROCESS_TAG";

fn new_tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{}-{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// How far away a deadline is when `now + d` is past what an `Instant` holds (about 30 years, as tokio does).
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, never panicking: a duration past what an `Instant` holds gives a deadline far enough away never to
/// come (the settings' limits are at most a week; this holds for any duration).
pub fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .or_else(|| now.checked_add(crate::validate::MAX_DURATION))
        .unwrap_or(now)
}

/// [`deadline_after`] on tokio's clock.
pub fn tokio_deadline_after(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(deadline_after(now.into_std(), d))
}

/// The tag prefix of an attempt's processes: the journal (its canonical path, hashed) and the attempt, so that two
/// journals on one machine never take each other's processes for their own.
pub fn attempt_tag(journal: &Path, attempt: &crate::types::AttemptRef) -> String {
    let canonical = journal.canonicalize().unwrap_or_else(|_| journal.to_path_buf());
    let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes()).to_hex();
    format!("orch:{}:{}#{}", &hash[..16], attempt.key, attempt.attempt)
}

/// Kills every process that works for `attempt` (its tag starts with [`attempt_tag`]`/`), wherever it was started
/// from: what an attempt left running when its supervisor died. Returns how many.
pub fn kill_attempt(attempt: &str) -> u32 {
    let prefix = format!("{TAG_VAR}={attempt}/");
    kill_where(0, 3, |var| var.starts_with(prefix.as_bytes()))
}

/// Kills every process (ours excepted) with a pid above `floor` one of whose environment entries `matches`, in up
/// to `passes` passes (processes may fork while one runs); returns how many.
fn kill_where(floor: u32, passes: usize, matches: impl Fn(&[u8]) -> bool) -> u32 {
    let me = std::process::id();
    let mut killed = 0;
    for _ in 0..passes {
        let mut found = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else { return killed };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if pid == me || pid <= floor {
                continue;
            }
            let Ok(environ) = std::fs::read(e.path().join("environ")) else { continue };
            if environ.split(|b| *b == 0).any(&matches) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                found += 1;
            }
        }
        killed += found;
        if found == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL.
async fn terminate(child: &mut Child, pgid: Option<Pid>, grace: Duration) -> std::io::Result<std::process::ExitStatus> {
    if let Some(p) = pgid {
        let _ = killpg(p, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            kill_group(pgid);
            child.wait().await
        }
    }
}

/// Kills every process whose environment carries `tag` (our own process excepted); returns how many. Two passes,
/// for processes that were forking while the first ran.
///
/// Everything the tagged process started was created after it, so its pid is above `first` (the tagged process's
/// own) — unless pids wrapped around since, which the kernel's last-assigned pid tells. Only those pids' environments
/// are read; `first = 0` reads them all.
pub fn kill_tagged(tag: &str, first: u32) -> u32 {
    let needle = format!("{TAG_VAR}={tag}");
    let last = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").ok().and_then(|s| s.trim().parse::<u32>().ok());
    let floor = match last {
        Some(l) if l >= first => first,
        _ => 0, // wrapped around (or unknown): any pid may be a descendant
    };
    kill_where(floor, 2, |var| var == needle.as_bytes())
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(r: R, stream: Stream, tx: mpsc::UnboundedSender<(Stream, Vec<u8>)>) {
    let mut reader = BufReader::new(r);
    loop {
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx.send((stream, buf)).is_err() {
                    break;
                }
            }
        }
    }
}

/// Kills a whole process group; a group that is already gone is fine.
pub fn kill_group(pgid: Option<Pid>) {
    if let Some(p) = pgid {
        let _ = killpg(p, Signal::SIGKILL);
    }
}

/// The environment that tells an attempt's processes (agent and checks) which attempt they belong to:
/// `ORCH_PROJECT`, `ORCH_TASK_ID`, `ORCH_ATTEMPT`, `ORCH_WORKSPACE`.
pub fn attempt_env(attempt: &crate::types::AttemptRef, workspace: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("ORCH_PROJECT".to_string(), attempt.key.project.clone()),
        ("ORCH_TASK_ID".to_string(), attempt.key.task.clone()),
        ("ORCH_ATTEMPT".to_string(), attempt.attempt.to_string()),
        ("ORCH_WORKSPACE".to_string(), workspace.display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_what_an_instant_holds_is_far_away_not_a_panic() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        for d in [Duration::MAX, Duration::from_secs(u64::MAX / 2), Duration::new(u64::MAX, 999_999_999)] {
            let far = deadline_after(now, d);
            assert!(far >= now + crate::validate::MAX_DURATION, "{d:?}");
        }
        let t = tokio::time::Instant::now();
        assert!(tokio_deadline_after(t, Duration::MAX) > t + Duration::from_secs(86_400));
    }
}
