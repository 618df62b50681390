//! orch's own time per attempt with the real `claude` (`cargo bench --bench claude`): the real-claude scenarios
//! (`tests/scenarios/`) run through the release `orch` binary against the Messages-API stand-in; for each attempt,
//! from the journal's microsecond timestamps, the wall time from "running" to the decision's state change, minus
//! the agent process's wall time and the checks' — what is left is orch's own (there is no LLM here).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use orch_actors::journal::event::Event;
use orch_actors::journal::{EventFilter, Journal};
use orch_actors::TaskState;
use support::messages_api::{Scenario, StandIn};

const CHECK: &str = "[ -f calc.sh ] && [ \"$(sh calc.sh 2 3)\" = 5 ]\n";

fn run_scenario(claude: &Path, scenario: &str, durability: &str) -> Vec<f64> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let root = dir.path();
    let ws = root.join("ws");
    std::fs::create_dir_all(&ws).expect("ws");
    std::fs::create_dir_all(root.join("home")).expect("home");
    std::fs::write(ws.join("check.sh"), CHECK).expect("check");
    let ws = ws.canonicalize().expect("ws");
    let s = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(scenario));
    let standin = StandIn::start(s, &ws);
    std::fs::write(
        root.join("orch.toml"),
        format!(
            "[journal]\npath = \"j\"\ndurability = \"{durability}\"\n[agent]\nkind = \"claude-code\"\nprogram = \"{}\"\nargs = [\"--allowedTools\", \"Write\", \"Edit\", \"Bash\", \"Read\"]\n[agent.env]\nANTHROPIC_BASE_URL = \"{}\"\nANTHROPIC_API_KEY = \"sk-bench\"\nCLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\"\nHOME = \"{}\"\n[[projects]]\nname = \"calc\"\nworkspace = \"ws\"\nchecks = [\"sh check.sh\"]\n[[projects.tasks]]\nid = \"add\"\ntitle = \"Add\"\ndescription = \"Write calc.sh: `sh calc.sh A B` prints the sum of A and B.\"\n",
            claude.display(),
            standin.url(),
            root.join("home").display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .arg("run")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .expect("orch");
    assert!(out.status.success(), "{scenario}: {}", String::from_utf8_lossy(&out.stderr));
    let j = Journal::open(&root.join("j"), false).expect("journal");
    let mut overheads = Vec::new();
    let (mut start, mut agent, mut checks) = (None, 0i64, 0i64);
    for r in j.scan(EventFilter::default()) {
        let r = r.expect("record");
        match &r.event {
            Event::TaskStateChanged(c) if c.to == TaskState::Running => {
                start = Some(r.time_us);
                agent = 0;
                checks = 0;
            }
            Event::AgentExited(x) => agent += x.duration_us as i64,
            Event::CheckFinished(c) => checks += c.duration_us as i64,
            Event::TaskStateChanged(c) if c.from == TaskState::Running => {
                if let Some(s) = start.take() {
                    overheads.push((r.time_us - s - agent - checks) as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }
    overheads
}

fn main() {
    let claude = support::claude();
    for durability in ["batch", "sync"] {
        let mut all = Vec::new();
        for _ in 0..4 {
            for s in ["one-attempt.toml", "retry-after-failed-check.toml", "overloaded-twice.toml"] {
                all.extend(run_scenario(&claude, s, durability));
            }
        }
        all.sort_by(|a, b| a.total_cmp(b));
        eprintln!("{durability}: {:?}", all.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>());
        let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
        println!(
            "orch's own time per attempt with the real claude ({durability}, {} attempts): median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            all.len(),
            q(0.5),
            q(0.9),
            q(1.0)
        );
    }
}
