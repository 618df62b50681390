//! Journal benchmarks (`cargo bench --bench journal`), with their inputs built outside the timed parts:
//! - append, `batch`: ~1 KiB events through the StateJournal actor (as the engine appends) and through
//!   `Journal::append` directly;
//! - append, `sync`, 64 concurrent writers: p50/p99 latency and throughput, beside the fsync latency of the same
//!   disk measured here;
//! - a journal of 1,000,000 events: `orch-log events --task ID` (scan rate, in process and as the real binary) and
//!   `orch status` (the real binary).
//!
//! Prints one line per figure; the README's Performance table quotes them.

use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use orch_actors::actors::state_journal::{Append, StateJournal};
use orch_actors::journal::event::*;
use orch_actors::journal::{Durability, EventFilter, Journal};
use orch_actors::types::{Decision, TaskSpec, TaskState};
use orch_actors::TaskKey;

fn output_event(i: u64, text: &str) -> Event {
    Event::AgentOutput(AgentOutput {
        project: format!("project-{}", i % 10),
        task: format!("task-{}", i % 100),
        attempt: 1,
        stream: "stdout".into(),
        text: text.to_string(),
    })
}

fn kib_text() -> String {
    "orch writes about one KiB of agent output per event here. ".repeat(18)[..1000].to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn bench_batch_direct(dir: &Path) {
    let text = kib_text();
    let n = 200_000u64;
    let batches: Vec<Vec<Event>> =
        (0..n).collect::<Vec<_>>().chunks(256).map(|c| c.iter().map(|i| output_event(*i, &text)).collect()).collect();
    let mut j = Journal::open(&dir.join("direct"), true).expect("open");
    let t = Instant::now();
    for b in batches {
        j.append(b).expect("append");
    }
    let el = t.elapsed();
    j.flush().expect("flush");
    println!(
        "journal append batch (Journal::append, 256/batch, {} B events): {:.0} events/s",
        codec_len(&text),
        n as f64 / el.as_secs_f64()
    );
}

fn codec_len(text: &str) -> usize {
    orch_actors::journal::codec::encode_event(0, &output_event(1, text)).map(|b| b.len()).unwrap_or(0)
}

fn bench_batch_actor(dir: &Path) {
    let text = kib_text();
    let n = 200_000u64;
    let events: Vec<Event> = (0..n).map(|i| output_event(i, &text)).collect();
    let path = dir.join("actor-batch");
    let rate = actix::System::new().block_on(async move {
        let (actor, _) = StateJournal::new(Journal::open(&path, true).expect("open"), Durability::Batch);
        let addr = actor.start();
        let t = Instant::now();
        // 64 writers, each awaiting its own acknowledgements, one event per message.
        let per = events.len() / 64;
        let mut chunks: Vec<Vec<Event>> = Vec::new();
        let mut it = events.into_iter();
        for _ in 0..64 {
            chunks.push(it.by_ref().take(per).collect());
        }
        let writers = chunks.into_iter().map(|chunk| {
            let addr = addr.clone();
            async move {
                for e in chunk {
                    addr.send(Append(vec![e])).await.expect("mailbox").expect("append");
                }
            }
        });
        futures_join_all(writers).await;
        (per * 64) as f64 / t.elapsed().as_secs_f64()
    });
    println!("journal append batch (StateJournal actor, 64 writers, 1 event/message, ~1 KiB): {rate:.0} events/s");
}

async fn futures_join_all<F: std::future::Future<Output = ()> + 'static>(futs: impl Iterator<Item = F>) {
    let handles: Vec<_> = futs.map(actix::spawn).collect();
    for h in handles {
        h.await.expect("writer");
    }
}

fn fsync_latency(dir: &Path, bytes: usize) -> (Duration, Duration) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join(format!("fsync-probe-{bytes}"))).expect("probe");
    let buf = vec![7u8; bytes];
    let mut lat = Vec::new();
    for _ in 0..300 {
        f.write_all(&buf).expect("write");
        let t = Instant::now();
        f.sync_data().expect("fsync");
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// What one sled flush of one small appended event costs: the floor of a synchronous append.
fn sled_flush_latency(dir: &Path) -> (Duration, Duration) {
    let mut j = Journal::open(&dir.join("flush-probe"), true).expect("open");
    let text = kib_text();
    let mut lat = Vec::new();
    for i in 0..300 {
        j.append(vec![output_event(i, &text)]).expect("append");
        let t = Instant::now();
        j.flush().expect("flush");
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn bench_sync(dir: &Path) {
    let (fs50, fs99) = fsync_latency(dir, 1024);
    let (g50, g99) = fsync_latency(dir, 64 * 1024);
    let (sf50, sf99) = sled_flush_latency(dir);
    println!("sled flush of one appended event (the floor of a sync append): p50 {} p99 {}", fmt(sf50), fmt(sf99));
    let text = kib_text();
    let path = dir.join("actor-sync");
    let (lat, rate) = actix::System::new().block_on(async move {
        let (actor, _) = StateJournal::new(Journal::open(&path, true).expect("open"), Durability::Sync);
        let addr = actor.start();
        let writers = 64;
        let per = 150;
        let t = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let addr = addr.clone();
                let text = text.clone();
                actix::spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let e = output_event((w * per + i) as u64, &text);
                        let s = Instant::now();
                        addr.send(Append(vec![e])).await.expect("mailbox").expect("append");
                        lat.push(s.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.expect("writer"));
        }
        let rate = all.len() as f64 / t.elapsed().as_secs_f64();
        all.sort();
        (all, rate)
    });
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!("fsync latency of this disk (1 KiB write + fdatasync): p50 {} p99 {}", fmt(fs50), fmt(fs99));
    println!(
        "fsync latency of this disk (64 KiB write + fdatasync, one group's worth): p50 {} p99 {}; sync append p99 = {:.2}× its p50",
        fmt(g50),
        fmt(g99),
        p99.as_secs_f64() / g50.as_secs_f64()
    );
    println!(
        "journal append sync (64 concurrent writers, group commit): p50 {} p99 {} = {:.2}× fsync p50, {:.2}× fsync p99; {:.0} events/s",
        fmt(p50),
        fmt(p99),
        p99.as_secs_f64() / fs50.as_secs_f64(),
        p99.as_secs_f64() / fs99.as_secs_f64(),
        rate
    );
}

/// Builds a journal of `n` events over 100 projects × 10 tasks, with projections, as a long history would be.
fn build_large(path: &Path, n: u64) -> TaskKey {
    let mut j = Journal::open(path, true).expect("open");
    let mut batch = Vec::new();
    for p in 0..100 {
        let project = format!("project-{p:03}");
        batch.push(Event::ProjectRegistered(ProjectRegistered {
            project: project.clone(),
            workspace: format!("/work/{project}"),
            checks: vec!["cargo test".into()],
        }));
        for t in 0..10 {
            batch.push(Event::TaskAdded(TaskAdded {
                spec: TaskSpec {
                    project: project.clone(),
                    id: format!("task-{t}"),
                    title: format!("Task {t}"),
                    description: "Make the change described in the ticket.".into(),
                    priority: 5,
                    depends_on: vec![],
                    acceptance: vec![],
                },
                source: "config".into(),
            }));
        }
    }
    j.append(std::mem::take(&mut batch)).expect("append");
    let mut written = 1100u64;
    let mut i = 0u64;
    while written < n {
        let (p, t) = (i % 100, (i / 100) % 10);
        let (project, task) = (format!("project-{p:03}"), format!("task-{t}"));
        let attempt = (i / 1000) as u32 + 1;
        batch.push(Event::AttemptStarted(AttemptStarted {
            project: project.clone(),
            task: task.clone(),
            attempt,
            agent: "claude-code".into(),
            program: "claude".into(),
            prompt_tokens: Some(812),
            prompt_bytes: 3100,
            prompt_excerpt: "# Task: make the change\n\nMake the change described in the ticket.".into(),
            resume_session: None,
        }));
        for k in 0..6 {
            batch.push(Event::AgentOutput(AgentOutput {
                project: project.clone(),
                task: task.clone(),
                attempt,
                stream: "tool_use".into(),
                text: format!("Edit src/module_{k}.rs: replaced 12 lines with 14 lines in fn handle_request"),
            }));
        }
        batch.push(Event::CheckFinished(CheckFinished {
            project: project.clone(),
            task: task.clone(),
            attempt,
            command: "cargo test --quiet".into(),
            passed: true,
            exit_code: Some(0),
            timed_out: false,
            duration_ms: 5000,
            duration_us: 5_000_000,
            output_tail: "test result: ok. 42 passed; 0 failed".into(),
        }));
        batch.push(Event::Decided(Decided {
            project: project.clone(),
            task: task.clone(),
            attempt,
            decision: Decision::Retry,
            reason: "check failed".into(),
            feedback: String::new(),
        }));
        batch.push(Event::TaskStateChanged(TaskStateChanged {
            project,
            task,
            from: TaskState::Running,
            to: TaskState::Pending,
            reason: "retry".into(),
        }));
        written += 10;
        i += 1;
        if batch.len() >= 10_000 {
            j.append(std::mem::take(&mut batch)).expect("append");
        }
    }
    j.append(batch).expect("append");
    j.flush().expect("flush");
    TaskKey::new("project-042", "task-7")
}

fn time_binary(bin: &str, args: &[&str], runs: usize) -> Duration {
    let mut t = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        let out = std::process::Command::new(bin).args(args).output().expect("binary");
        t.push(s.elapsed());
        assert!(out.status.success(), "{bin} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    t.sort();
    percentile(&t, 0.5)
}

fn bench_large(dir: &Path) {
    let n = 1_000_000u64;
    let path = dir.join("large");
    let t = Instant::now();
    let key = build_large(&path, n);
    println!("(built a journal of {n} events in {:.1} s)", t.elapsed().as_secs_f64());
    let total;
    {
        let j = Journal::open(&path, false).expect("open");
        total = j.next_seq() - 1;
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let s = Instant::now();
            let found = j.scan(EventFilter { task: Some(key.clone()), ..EventFilter::default() }).count();
            best = best.min(s.elapsed());
            assert!(found > 0);
        }
        println!(
            "scan for one task over {total} events (in process): {:.0} ms = {:.0} events scanned/s",
            best.as_secs_f64() * 1000.0,
            total as f64 / best.as_secs_f64()
        );
    }
    assert!(Journal::wait_released(&path, Duration::from_secs(10)));
    let p = path.to_str().expect("utf-8 path");
    let events = time_binary(
        env!("CARGO_BIN_EXE_orch-log"),
        &["events", "--journal", p, "--task", &key.to_string(), "--json"],
        3,
    );
    println!(
        "`orch-log events --task ID` on {total} events (process, median of 3): {:.0} ms = {:.0} events scanned/s",
        events.as_secs_f64() * 1000.0,
        total as f64 / events.as_secs_f64()
    );
    // `orch status` reads the config's journal: write a config pointing at it.
    let cfg = dir.join("large.toml");
    std::fs::write(&cfg, format!("[journal]\npath = \"{p}\"\n")).expect("config");
    let status =
        time_binary(env!("CARGO_BIN_EXE_orch"), &["status", "--json", "--config", cfg.to_str().expect("utf-8")], 10);
    println!("`orch status --json` on {total} events (process, median of 10): {:.1} ms", status.as_secs_f64() * 1000.0);
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    // On the disk the build uses (target/), as a journal would be.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    if want("batch") {
        bench_batch_direct(dir.path());
        bench_batch_actor(dir.path());
    }
    if want("sync") {
        bench_sync(dir.path());
    }
    if want("large") {
        bench_large(dir.path());
    }
}
