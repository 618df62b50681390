//! The `orch-log` command line: read-only views of the journal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use orch_actors::journal::{EventFilter, Journal};
use orch_actors::{Event, JournalError};

use crate::common::{self, Failure, EXIT_OK};
use crate::control::{self, Query};
use crate::render;

/// Inspect the history orch recorded.
#[derive(Debug, Parser)]
#[command(name = "orch-log", version, propagate_version = true)]
pub struct Cli {
    /// The config file naming the journal (else $ORCH_CONFIG, else ./orch.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The journal directory (instead of a config file).
    #[arg(long, global = true, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// More diagnostics on stderr (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to show.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The events, oldest first.
    Events {
        /// Only this project's events.
        #[arg(long)]
        project: Option<String>,
        /// Only this task's events (`ID` or `project/ID`).
        #[arg(long)]
        task: Option<String>,
        /// Only events of this kind (repeatable), e.g. decided, check_finished.
        #[arg(long = "kind", value_name = "K")]
        kinds: Vec<String>,
        /// Only events at or after this time: RFC 3339, or a duration ago such as 10m or 2h.
        #[arg(long)]
        since: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// A task's timeline: attempts, agent activity, checks, scores, decisions, file changes.
    Show {
        /// `ID` or `project/ID`.
        id: String,
    },
    /// New events as they are written (Ctrl-C to stop).
    Follow {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Per project: tasks by state, attempts, agent time, tokens, cost.
    Stats {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's checksum and the sequence; exit 0 when whole, 1 when not.
    Verify,
    /// Write into DIR a new journal holding every record (and blob) that can still be read from this one, its
    /// projections rebuilt; report what was lost. Exit 0 when nothing was, 1 when something was.
    Recover {
        /// Where the new journal goes (a new or empty directory).
        dir: PathBuf,
    },
}

impl Cli {
    /// Runs the command; returns the exit code.
    pub fn run(self) -> Result<u8, Failure> {
        let path = common::journal_path(self.config.as_deref(), self.journal.as_deref())?;
        match self.command {
            Command::Events { project, task, kinds, since, json } => events(&path, project, task, kinds, since, json),
            Command::Show { id } => show(&path, &id),
            Command::Follow { json } => follow(&path, json),
            Command::Stats { json } => stats(&path, json),
            Command::Verify => verify(&path),
            Command::Recover { dir } => recover(&path, &dir),
        }
    }
}

fn parse_since(s: &str) -> Result<i64, Failure> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let t = SystemTime::now().checked_sub(d).unwrap_or(UNIX_EPOCH);
        return Ok(t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0));
    }
    Err(Failure::usage(format!("--since `{s}`: not an RFC 3339 time (2026-11-25T10:00:00Z) nor a duration (10m, 2h)")))
}

fn kind_codes(kinds: &[String]) -> Result<Vec<u16>, Failure> {
    kinds
        .iter()
        .map(|k| {
            Event::KINDS.iter().position(|n| n == k).map(|i| i as u16).ok_or_else(|| {
                Failure::usage(format!("--kind `{k}` is not an event kind; kinds: {}", Event::KINDS.join(", ")))
            })
        })
        .collect()
}

fn events(
    path: &Path,
    project: Option<String>,
    task: Option<String>,
    kinds: Vec<String>,
    since: Option<String>,
    json: bool,
) -> Result<u8, Failure> {
    let query = Query::Events {
        project,
        task,
        kinds: kind_codes(&kinds)?,
        since_ms: since.as_deref().map(parse_since).transpose()?,
        json,
    };
    control::dispatch(path, query, false)
}

fn show(path: &Path, id: &str) -> Result<u8, Failure> {
    control::dispatch(path, Query::Show { id: id.to_string() }, false)
}

fn stats(path: &Path, json: bool) -> Result<u8, Failure> {
    control::dispatch(path, Query::Stats { json }, false)
}

fn verify(path: &Path) -> Result<u8, Failure> {
    if let Some(reply) = control::ask(path, &Query::Verify) {
        return reply?.print();
    }
    // Opened without the damage warning of the other commands: verify names every damaged record itself.
    let j = Journal::open(path, false)?;
    control::execute(&Query::Verify, &j).0.print()
}

fn recover(path: &Path, dir: &Path) -> Result<u8, Failure> {
    if control::ask(path, &Query::Ping).is_some() {
        return Err(Failure::usage(format!(
            "a run is supervising the journal at {}: stop it before recovering the journal",
            path.display()
        )));
    }
    // A journal too damaged to open: its storage's snapshot (an index it can rebuild) is left out of a scratch
    // copy, so that the log is read as far as it is whole.
    let scratch;
    let from = match Journal::open(path, false) {
        Err(JournalError::Damaged { what, .. }) => {
            eprintln!("the journal cannot be opened as it is ({what}); reading its log without its snapshot");
            scratch = tempfile::tempdir_in(dir.parent().unwrap_or(Path::new(".")))
                .map_err(|e| Failure::internal(format!("a scratch directory beside {}: {e}", dir.display())))?;
            copy_without_snapshots(path, scratch.path())
                .map_err(|e| Failure::internal(format!("copying {} to read it: {e}", path.display())))?;
            Journal::open(scratch.path(), false)?
        }
        other => other?,
    };
    let report = orch_actors::journal::recover::recover(&from, dir)?;
    println!(
        "recovered {} event(s) and {} blob(s) from {} into {}",
        report.events,
        report.blobs,
        path.display(),
        dir.display()
    );
    if report.is_complete() {
        println!("nothing was lost");
        return Ok(EXIT_OK);
    }
    println!("lost:");
    for l in &report.lost {
        println!("  {l}");
    }
    println!(
        "to go on with the recovered journal: move {} aside and {} into its place (or point `[journal] path` at it)",
        path.display(),
        dir.display()
    );
    Ok(common::EXIT_INTERNAL)
}

/// Copies a journal directory, leaving out its storage snapshots (`snap.*`).
fn copy_without_snapshots(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with("snap.") {
            continue;
        }
        if e.file_type()?.is_dir() {
            std::fs::create_dir_all(to.join(&name))?;
            copy_without_snapshots(&e.path(), &to.join(&name))?;
        } else {
            std::fs::copy(e.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// Prints new events as they are written: streamed live from the run holding the journal, and between runs read
/// from the journal itself (polled), without a gap or a repeat when a run starts or ends.
fn follow(path: &Path, json: bool) -> Result<u8, Failure> {
    let mut after: Option<u64> = None;
    let mut told = false;
    loop {
        if let Some(last) = control::follow_live(path, json, after.unwrap_or(0)) {
            // The run ended: catch up from the journal with what came after the last event streamed (the run's
            // last events may have been appended after the stream closed).
            if last > 0 {
                after = Some(after.unwrap_or(0).max(last));
            }
            told = false;
        }
        match Journal::open(path, false) {
            Ok(j) => {
                told = false;
                // Start from the end: only new events.
                let from = *after.get_or_insert(j.next_seq().saturating_sub(1));
                let filter = EventFilter { after_seq: from, ..EventFilter::default() };
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for r in j.scan(filter) {
                    match r {
                        Ok(rec) => {
                            after = Some(rec.seq);
                            let line = render::record_line(&rec, json);
                            if writeln!(out, "{line}").is_err() {
                                return Ok(EXIT_OK);
                            }
                        }
                        Err(e) => eprintln!("warning: {e}"),
                    }
                }
                let _ = out.flush();
            }
            Err(JournalError::Locked { .. }) => {
                // A run is starting (its socket is not up yet) or has no socket: wait.
                if !told {
                    eprintln!("a run holds the journal; waiting for its control socket");
                    told = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
