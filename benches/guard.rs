//! The guards' cost per attempt (`cargo bench --bench guard`):
//! - preparing an attempt's guards for claude: its private directory and `TMPDIR`, the hook's rules (the protected
//!   files found by walking a 200-file workspace) and claude's settings file;
//! - entering the sandbox: `true` run through `process::run` in the Landlock sandbox (spawned from a thread that
//!   restricts itself) against the same without it, spawn to reap; the difference of the medians is what the
//!   sandbox adds to starting the agent;
//! - the structural judgement of a task's change (protected paths, collateral damage, outside writes from a tool
//!   log), the pure part of the decision pipeline that issue 9 added.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use orch_actors::agent::{Invocation, ToolCall};
use orch_actors::judge;
use orch_actors::settings::*;
use orch_actors::TaskSpec;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn workspace(dir: &std::path::Path) -> PathBuf {
    let ws = dir.join("ws");
    for i in 0..100 {
        let p = ws.join(format!("src/mod{}/file{i}.py", i % 10));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, format!("def f{i}():\n    return {i}\n")).expect("write");
        let t = ws.join(format!("tests/test_{i}.py"));
        std::fs::create_dir_all(t.parent().expect("parent")).expect("mkdir");
        std::fs::write(&t, format!("assert {i} == {i}\n")).expect("write");
    }
    std::fs::write(ws.join("check.sh"), "python3 -m unittest\n").expect("write");
    ws
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let ws = workspace(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let guard = PathBuf::from(env!("CARGO_BIN_EXE_orch-guard"));
    let mut agent = AgentSettings { kind: AgentKind::ClaudeCode, ..AgentSettings::command("claude", vec![]) };
    agent.helper = Some(guard.clone());
    agent.env.insert("HOME".into(), home.display().to_string());
    let project =
        ProjectSettings { checks: vec!["sh check.sh".into()], ..ProjectSettings::new("p", ws.clone(), agent) };
    let task = TaskSpec {
        project: "p".into(),
        id: "t".into(),
        title: "Fix f3".into(),
        description: "f3 must return 4.".into(),
        priority: 5,
        depends_on: vec![],
        acceptance: vec![],
    };

    let mut prep = Vec::new();
    for _ in 0..200 {
        let inv =
            Invocation { program: "claude".into(), args: vec!["-p".into(), "x".into()], stdin: None, env: vec![] };
        let t = Instant::now();
        let (guard, inv) = orch_actors::sandbox::prepare(&project, &task, inv).expect("prepare");
        prep.push(t.elapsed());
        assert!(inv.args.iter().any(|a| a == "--settings"));
        drop(guard);
    }
    println!(
        "guards prepared per attempt (claude: private TMPDIR, hook rules over a 200-file workspace, settings file): median {}",
        us(median(prep))
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let writable = vec![ws.clone(), dir.path().join("tmp")];
    let run_in = |sandbox: Option<&[PathBuf]>, containment: orch_actors::settings::Containment| {
        let mut v = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let exit = rt
                .block_on(orch_actors::test_util::run(
                    orch_actors::test_util::Spec {
                        program: "/bin/true",
                        args: &[],
                        cwd: &ws,
                        env: &[],
                        hide_env: &[],
                        stdin: None,
                        timeout: Duration::from_secs(10),
                        idle_timeout: None,
                        grace: Duration::from_secs(1),
                        attempt: None,
                        sandbox,
                        containment,
                    },
                    None,
                    None,
                ))
                .expect("run");
            v.push(t.elapsed());
            assert!(exit.success());
        }
        median(v)
    };
    let run = |sandbox| run_in(sandbox, orch_actors::settings::Containment::Tags);
    let bare = run(None);
    let sandboxed = run(Some(&writable));
    println!(
        "entering the sandbox (true through process::run, in the sandbox vs not, median of 100): {} vs {}: +{} per attempt; Landlock here: {:?}",
        us(sandboxed),
        us(bare),
        us(sandboxed.saturating_sub(bare)),
        orch_actors::sandbox::probe()
    );
    // A cgroup of its own: created, entered by the trampoline, killed and removed (probed once before timing).
    match orch_actors::cgroup::hierarchy() {
        Ok(_) => {
            let contained = run_in(None, orch_actors::settings::Containment::Auto);
            println!(
                "a cgroup per process (true through process::run, containment auto vs tags, median of 100): {} vs {}: +{} per process",
                us(contained),
                us(bare),
                us(contained.saturating_sub(bare))
            );
        }
        Err(why) => println!("a cgroup per process: not measured, cgroup v2 cannot be used here ({why})"),
    }

    // The structural judgement of a change of 50 files, 2 of them protected, with a 40-call tool log.
    let protection =
        judge::paths::Protection::new(judge::paths::default_protected(&project.checks, &ws), &[]).expect("globs");
    let changes: Vec<orch_actors::actors::file_monitor::FileChange> = (0..50)
        .map(|i| orch_actors::actors::file_monitor::FileChange {
            path: if i < 2 { format!("tests/test_{i}.py") } else { format!("src/mod{}/file{i}.py", i % 10) },
            kind: orch_actors::types::ChangeKind::Modified,
            before: Some(orch_actors::types::ContentHash::of(format!("b{i}").as_bytes())),
            after: Some(orch_actors::types::ContentHash::of(format!("a{i}").as_bytes())),
            size: 30,
        })
        .collect();
    let calls: Vec<ToolCall> = (0..40)
        .map(|i| ToolCall {
            name: if i % 2 == 0 { "Bash".into() } else { "Write".into() },
            target: if i % 2 == 0 {
                format!("python3 -m unittest tests/test_{i}.py > out{i}.log")
            } else {
                ws.join(format!("src/mod1/file{i}.py")).display().to_string()
            },
            ..ToolCall::default()
        })
        .collect();
    let text = judge::task_text(&task);
    let mut judged = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let p = judge::evidence::protected_changes(&changes, &protection);
        let c = judge::evidence::collateral(
            &changes,
            &judge::evidence::TaskText { text: &text, scope: &[] },
            &protection,
            |_| None,
        )
        .expect("collateral");
        let o = judge::tools::outside_writes(&calls, &ws, Some(&home), &[]);
        judged.push(t.elapsed());
        assert_eq!((p.len(), c.is_none(), o.len()), (2, true, 0));
    }
    println!("structural judgement of a 50-file change with a 40-call tool log: median {}", us(median(judged)));
}
