//! Supervision benchmarks (`cargo bench --bench supervision`):
//! - orch's own time per attempt — everything except the agent process (and checks; there are none here):
//!   attempts run one at a time through the real engine (`durability = "batch"`, then `"sync"`), each timed from
//!   the scheduler journaling "running" to journaling the decision's state change, minus the agent process's own
//!   wall time as measured around spawn and wait;
//! - `orch --help`: the real binary, median of 50 runs.

use std::time::{Duration, Instant};

use orch_actors::journal::event::Event;
use orch_actors::settings::*;
use orch_actors::{Orchestrator, Selection, TaskState};

mod common;

fn settings(dir: &std::path::Path, durability: Durability, tasks: usize) -> Settings {
    Settings {
        notify: Default::default(),
        journal: JournalSettings { path: dir.join("journal"), durability },
        llm: LlmSettings::default(),
        orchestration: OrchestrationSettings { max_sessions: 1, ..OrchestrationSettings::default() },
        projects: vec![common::command_project("bench", dir.join("ws"), common::WRITE_OUT, tasks, |_| 5)],
    }
}

fn overhead(durability: Durability, tasks: usize) -> (Vec<Duration>, f64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let s = settings(dir.path(), durability, tasks);
    actix::System::new().block_on(async move {
        let (orch, _) = Orchestrator::start(s).await.expect("start");
        let mut rx = orch.subscribe().await.expect("subscribe");
        let collector = actix::spawn(async move {
            let mut started: Option<Instant> = None;
            let mut agent_us = 0u64;
            let mut out = Vec::new();
            while let Ok(r) = rx.recv().await {
                match &r.event {
                    Event::TaskStateChanged(c) if c.to == TaskState::Running => started = Some(Instant::now()),
                    Event::AgentExited(x) => agent_us = x.duration_us,
                    Event::TaskStateChanged(c) if c.from == TaskState::Running => {
                        if let Some(s) = started.take() {
                            out.push(s.elapsed().saturating_sub(Duration::from_micros(agent_us)));
                        }
                    }
                    Event::RunFinished(_) => break,
                    _ => {}
                }
            }
            out
        });
        let t = Instant::now();
        let summary = orch.run(Selection::default()).await.expect("run");
        let wall = t.elapsed();
        assert!(summary.all_completed());
        let mut v = collector.await.expect("collector");
        orch.shutdown().await.expect("shutdown");
        v.sort();
        let rate = v.len() as f64 / wall.as_secs_f64();
        (v, rate)
    })
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    for (name, d) in [("batch", Durability::Batch), ("sync", Durability::Sync)] {
        let (v, rate) = overhead(d, 300);
        let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        println!(
            "supervision overhead per attempt ({name}, {} attempts, agent and checks excluded): median {} p90 {} ({rate:.0} attempts/s end to end)",
            v.len(),
            ms(p(0.5)),
            ms(p(0.9))
        );
    }
    let mut t = Vec::new();
    for _ in 0..50 {
        let s = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orch")).arg("--help").output().expect("orch");
        t.push(s.elapsed());
        assert!(out.status.success());
    }
    t.sort();
    println!("`orch --help` (process start to exit, median of 50): {}", ms(t[25]));
}
