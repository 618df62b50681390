//! Scale benchmarks (`cargo bench --bench scale`):
//! - 10,000 tasks over 100 projects, an agent that exits at once, no checks, `durability = "batch"`: attempts per
//!   second end to end (from `run` to its summary) and the process's peak RSS (VmHWM);
//! - picking the next task with 10,000 queued over 100 projects (the scheduler's ready queue), per pick;
//! - `orch rollback` of an attempt that changed 1,000 files (by a shell command: 500 modified, 250 created, 250
//!   deleted), through `ops::rollback` on the journal the run left;
//! - a file change seen by the FileMonitor and journaled (`file_touched`, `durability = "batch"`): from just after
//!   the agent's write returns to the event's append, for 300 files written 10 ms apart by a Python agent.

use std::time::Instant;

use orch_actors::settings::*;
use orch_actors::{Orchestrator, Selection};

mod common;

const PROJECTS: usize = 100;
const TASKS_PER_PROJECT: usize = 100;

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        notify: Default::default(),
        journal: JournalSettings { path: dir.join("journal"), durability: Durability::Batch },
        llm: LlmSettings::default(),
        orchestration: OrchestrationSettings { max_sessions: 16, ..OrchestrationSettings::default() },
        projects: (0..PROJECTS)
            .map(|p| {
                let name = format!("p{p:03}");
                let ws = dir.join(format!("ws{p:03}"));
                common::command_project(&name, ws, common::WRITE_OUT, TASKS_PER_PROJECT, |i| 1 + (i % 10) as u8)
            })
            .collect(),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let s = settings(dir.path());
    let (attempts, wall) = actix::System::new().block_on(async move {
        let (orch, report) = Orchestrator::start(s).await.expect("start");
        assert_eq!(report.added as usize, PROJECTS * TASKS_PER_PROJECT);
        let t = Instant::now();
        let summary = orch.run(Selection::default()).await.expect("run");
        let wall = t.elapsed();
        let attempts: usize = orch.state().await.expect("state").tasks.values().map(|v| v.attempts.len()).sum();
        assert_eq!(summary.tasks.len(), PROJECTS * TASKS_PER_PROJECT);
        assert!(summary.all_completed(), "every task completes");
        orch.shutdown().await.expect("shutdown");
        (attempts, wall)
    });
    println!(
        "{} tasks over {PROJECTS} projects: {attempts} attempts in {:.2} s = {:.0} attempts/s end to end; peak RSS {:.0} MiB",
        PROJECTS * TASKS_PER_PROJECT,
        wall.as_secs_f64(),
        attempts as f64 / wall.as_secs_f64(),
        peak_rss_mib()
    );
    pick_bench();
    rollback_bench();
    live_change_bench();
}

fn live_change_bench() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let log = dir.path().join("writes.log");
    let script = format!(
        "import time\nlog = open({log:?}, 'w')\nfor i in range(300):\n    with open(f'f{{i:03}}.txt', 'w') as f:\n        f.write('x' * 100)\n    log.write(f'f{{i:03}}.txt {{time.time_ns()}}\\n')\n    time.sleep(0.01)\nlog.close()\nprint('done')\n",
        log = log.display().to_string()
    );
    let mut s = settings(dir.path());
    s.projects.truncate(1);
    s.projects[0].tasks.truncate(1);
    s.projects[0].agent.program = "python3".into();
    s.projects[0].agent.args = vec!["-c".into(), script];
    // It logs its writes beside the workspace (the file must exist for the sandbox to allow it).
    std::fs::write(&log, "").expect("writes.log");
    s.projects[0].agent.sandbox.writable.push(log.clone());
    s.orchestration.breakpoints.max_changed_files = 5000;
    let arrivals = actix::System::new().block_on(async move {
        let (orch, _) = Orchestrator::start(s).await.expect("start");
        let mut rx = orch.subscribe().await.expect("subscribe");
        let collector = actix::spawn(async move {
            let mut seen = std::collections::HashMap::new();
            while let Ok(r) = rx.recv().await {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
                match &r.event {
                    orch_actors::Event::FileTouched(c) => {
                        seen.entry(c.path.clone()).or_insert(now);
                    }
                    orch_actors::Event::RunFinished(_) => break,
                    _ => {}
                }
            }
            seen
        });
        orch.run(Selection::default()).await.expect("run");
        let seen = collector.await.expect("collector");
        orch.shutdown().await.expect("shutdown");
        seen
    });
    let mut lat: Vec<f64> = std::fs::read_to_string(&log)
        .expect("writes.log")
        .lines()
        .filter_map(|l| {
            let (name, t) = l.split_once(' ')?;
            let written: u128 = t.parse().ok()?;
            let seen = *arrivals.get(name)?;
            Some(seen.saturating_sub(written) as f64 / 1e6)
        })
        .collect();
    assert!(lat.len() >= 290, "only {} of 300 writes were seen live", lat.len());
    lat.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "a file change seen and journaled live ({} of 300 writes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms after the write",
        lat.len(),
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
}

fn rollback_bench() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("src")).expect("ws");
    for i in 0..750 {
        std::fs::write(ws.join(format!("src/f{i:04}.txt")), format!("original {i}\n").repeat(40)).expect("file");
    }
    let script = "for i in $(seq -w 0 499); do echo changed >> src/f0$i.txt; done; \
                  for i in $(seq 500 749); do rm src/f0$i.txt; done; \
                  for i in $(seq 1000 1249); do echo new > src/n$i.txt; done; echo done";
    let mut s = settings(dir.path());
    s.projects.truncate(1);
    s.projects[0].workspace = ws.clone();
    s.projects[0].tasks.truncate(1);
    s.projects[0].agent.args = vec!["-c".into(), script.into()];
    s.orchestration.breakpoints.max_changed_files = 5000;
    s.orchestration.breakpoints.max_deleted_files = 5000;
    let journal = s.journal.path.clone();
    actix::System::new().block_on(async move {
        let (orch, _) = Orchestrator::start(s).await.expect("start");
        orch.run(Selection::default()).await.expect("run");
        orch.shutdown().await.expect("shutdown");
    });
    let mut j = orch_actors::Journal::open(&journal, false).expect("journal");
    let t = Instant::now();
    let report = orch_actors::ops::rollback(&mut j, "p000/t000", Some(1), false).expect("rollback");
    let took = t.elapsed();
    assert_eq!(report.restored.len(), 1000, "{} conflicts", report.conflicts.len());
    assert!(report.conflicts.is_empty());
    assert_eq!(std::fs::read_to_string(ws.join("src/f0000.txt")).expect("restored"), "original 0\n".repeat(40));
    assert!(!ws.join("src/n1000.txt").exists());
    println!(
        "rollback of an attempt that changed 1000 files (500 modified, 250 created, 250 deleted): {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
}

fn pick_bench() {
    use orch_actors::actors::scheduler::ReadyQueue;
    let mut q = ReadyQueue::default();
    let mut seq = 0u64;
    for p in 0..PROJECTS {
        for i in 0..TASKS_PER_PROJECT {
            seq += 1;
            q.insert(orch_actors::TaskKey::new(format!("p{p:03}"), format!("t{i:03}")), 1 + (i % 10) as u8, seq);
        }
    }
    // Half the projects are busy (their slot is taken): a pick skips them.
    let busy: std::collections::HashSet<String> = (0..PROJECTS / 2).map(|p| format!("p{:03}", p * 2)).collect();
    let n = 20_000;
    let mut picked = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        let k = q.pick(|project| !busy.contains(project)).expect("a ready task");
        picked.push(k);
        // Put it back at the end of its priority, as if a new task of that priority arrived.
        let k = picked.last().cloned().expect("picked");
        seq += 1;
        q.insert(k, 5, seq);
    }
    let per = t.elapsed() / n as u32;
    println!("picking the next task with {} queued over {PROJECTS} projects, half of them busy: {:.2} µs per pick (pick + re-queue)", PROJECTS * TASKS_PER_PROJECT, per.as_secs_f64() * 1e6);
}
