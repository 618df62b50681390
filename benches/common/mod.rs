//! What the benches share: a project whose agent is a shell line, with numbered tasks.

use std::path::PathBuf;
use std::time::Duration;

use orch_actors::settings::*;
use orch_actors::TaskSpec;

/// The agent of the benches: it writes its task id to out.txt and says so, at once.
pub const WRITE_OUT: &str = "echo \"$ORCH_TASK_ID\" > out.txt; echo done";

/// A project `name` in `workspace` (created), one session at a time, no checks, whose agent is `sh -c script`, with
/// `tasks` tasks named `t000`… and the priority `priority(i)` gives the i-th.
pub fn command_project(
    name: &str,
    workspace: PathBuf,
    script: &str,
    tasks: usize,
    priority: impl Fn(usize) -> u8,
) -> ProjectSettings {
    let agent = AgentSettings {
        timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..AgentSettings::command("sh", vec!["-c".into(), script.into()])
    };
    ProjectSettings {
        create_workspace: true,
        check_timeout: Duration::from_secs(30),
        tasks: (0..tasks)
            .map(|i| TaskSpec {
                project: name.into(),
                id: format!("t{i:03}"),
                title: format!("Task {i}"),
                description: "Write out.txt.".into(),
                priority: priority(i),
                depends_on: vec![],
                acceptance: vec![],
            })
            .collect(),
        ..ProjectSettings::new(name, workspace, agent)
    }
}
