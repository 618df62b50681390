//! The plan of a run, from the journal's state and a selection: which tasks it is about (with their dependencies),
//! what recovery a supervisor that died leaves to do, which blocked tasks get another chance, and the events that
//! say so. Pure: the Scheduler kills what the plan names, journals its events and starts the run.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::graph::{blocked_reason, change};
use super::messages::Selection;
use crate::error::EngineError;
use crate::journal::event::{Event, RunStarted};
use crate::journal::{State, TaskView};
use crate::ops;
use crate::settings::ProjectSettings;
use crate::types::{AttemptRef, TaskKey, TaskState};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The tasks of the run: those selected and what they depend on, in configured projects.
    pub selected: BTreeSet<TaskKey>,
    /// Every task as it will be once [`Plan::events`] are journaled.
    pub views: HashMap<TaskKey, TaskView>,
    /// Projects whose new tasks join the run (`None`: the run has an explicit task list).
    pub open_to: Option<BTreeSet<String>>,
    /// Attempts a supervisor that died left open: whatever they started may still run, and is to be killed before
    /// their tasks start again.
    pub interrupted: Vec<AttemptRef>,
    /// Recovery, unblocking, and the run's start, in that order.
    pub events: Vec<Event>,
}

/// The plan of a run of `selection` over `state`, in the `configured` projects, by process `pid`.
pub(crate) fn plan(
    state: &State,
    configured: &HashMap<String, Arc<ProjectSettings>>,
    selection: &Selection,
    pid: u32,
) -> Result<Plan, EngineError> {
    for p in &selection.projects {
        if !configured.contains_key(p) {
            return Err(EngineError::UnknownProject(format!("`{p}` is not in the configuration")));
        }
    }
    let mut keys = BTreeSet::new();
    for t in &selection.tasks {
        let k = state.resolve(t).map_err(EngineError::UnknownTask)?;
        if !configured.contains_key(&k.project) {
            return Err(EngineError::UnknownProject(format!(
                "`{}` (of task {k}) is not in the configuration",
                k.project
            )));
        }
        keys.insert(k);
    }
    let in_selection = |project: &String| selection.projects.is_empty() || selection.projects.contains(project);
    if selection.tasks.is_empty() {
        keys = state
            .tasks
            .keys()
            .filter(|k| configured.contains_key(&k.project) && in_selection(&k.project))
            .cloned()
            .collect();
    }
    let selected: BTreeSet<TaskKey> =
        ops::with_dependencies(state, &keys).into_iter().filter(|k| configured.contains_key(&k.project)).collect();
    let interrupted = state
        .tasks
        .iter()
        .filter(|(_, v)| v.state == TaskState::Running)
        .filter_map(|(key, v)| {
            v.attempts
                .last()
                .filter(|a| a.ended_ms.is_none())
                .map(|a| AttemptRef { key: key.clone(), attempt: a.number })
        })
        .collect();
    let mut views: HashMap<TaskKey, TaskView> = state.tasks.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut events = ops::recovery_events(state);
    apply(&mut views, &events);
    // Blocked tasks whose dependencies no longer block them get another chance.
    let unblock: Vec<Event> = selected
        .iter()
        .filter(|k| views.get(*k).is_some_and(|v| v.state == TaskState::Blocked))
        .filter(|k| blocked_reason(&views, k).is_none())
        .map(|k| change(k, TaskState::Blocked, TaskState::Pending, "its dependencies no longer block it"))
        .collect();
    apply(&mut views, &unblock);
    events.extend(unblock);
    events.push(Event::RunStarted(RunStarted { pid, selected: selected.iter().map(|k| k.to_string()).collect() }));
    let open_to = selection.tasks.is_empty().then(|| configured.keys().filter(|p| in_selection(p)).cloned().collect());
    Ok(Plan { selected, views, open_to, interrupted, events })
}

/// Takes the state changes among `events` into `views`, by the projection's own rule.
pub(crate) fn apply(views: &mut HashMap<TaskKey, TaskView>, events: &[Event]) {
    for e in events {
        if let Event::TaskStateChanged(c) = e {
            if let Some(v) = views.get_mut(&TaskKey::new(&c.project, &c.task)) {
                v.change_state(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::event::TaskAdded;
    use crate::journal::EventRecord;
    use crate::settings::{AgentSettings, ProjectSettings};

    fn record(seq: u64, event: Event) -> EventRecord {
        EventRecord { seq, time_us: seq as i64 * 1000, event }
    }

    fn added(id: &str, deps: &[&str]) -> Event {
        Event::TaskAdded(TaskAdded {
            spec: crate::actors::scheduler::graph::tests::spec(id, deps),
            source: "config".into(),
        })
    }

    fn configured() -> HashMap<String, Arc<ProjectSettings>> {
        let p = ProjectSettings::new("p", "/nonexistent/ws", AgentSettings::command("true", vec![]));
        [("p".to_string(), Arc::new(p))].into_iter().collect()
    }

    #[test]
    fn a_task_selection_takes_its_dependencies_and_closes_the_run_to_new_tasks() -> Result<(), EngineError> {
        let records = [record(1, added("a", &[])), record(2, added("b", &["a"])), record(3, added("c", &[]))];
        let state = State::rebuild(records.iter());
        let sel = Selection { projects: vec![], tasks: vec!["b".into()] };
        let plan = plan(&state, &configured(), &sel, 7)?;
        assert_eq!(plan.selected.iter().map(|k| k.task.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(plan.open_to.is_none());
        assert!(matches!(plan.events.last(), Some(Event::RunStarted(r)) if r.pid == 7 && r.selected == ["p/a", "p/b"]));
        let all = super::plan(&state, &configured(), &Selection::default(), 7)?;
        assert_eq!(all.selected.len(), 3);
        assert_eq!(all.open_to, Some(["p".to_string()].into_iter().collect()));
        Ok(())
    }

    #[test]
    fn an_unknown_project_or_task_is_refused_by_name() {
        let state = State::rebuild([record(1, added("a", &[]))].iter());
        let sel = Selection { projects: vec!["q".into()], tasks: vec![] };
        let e = plan(&state, &configured(), &sel, 1).expect_err("unknown project");
        assert!(e.to_string().contains("`q`"), "{e}");
        let sel = Selection { projects: vec![], tasks: vec!["nope".into()] };
        assert!(plan(&state, &configured(), &sel, 1).is_err());
    }

    #[test]
    fn an_attempt_left_open_is_recovered_and_its_task_runs_again() -> Result<(), EngineError> {
        use crate::journal::event::AttemptStarted;
        let records = [
            record(1, added("a", &[])),
            record(2, change(&TaskKey::new("p", "a"), TaskState::Pending, TaskState::Running, "starting")),
            record(
                3,
                Event::AttemptStarted(AttemptStarted {
                    project: "p".into(),
                    task: "a".into(),
                    attempt: 1,
                    agent: "command".into(),
                    program: "true".into(),
                    prompt_tokens: None,
                    prompt_bytes: 0,
                    prompt_excerpt: String::new(),
                    resume_session: None,
                }),
            ),
        ];
        let state = State::rebuild(records.iter());
        let plan = plan(&state, &configured(), &Selection::default(), 1)?;
        assert_eq!(plan.interrupted, vec![AttemptRef { key: TaskKey::new("p", "a"), attempt: 1 }]);
        assert_eq!(plan.views[&TaskKey::new("p", "a")].state, TaskState::Pending, "the view is as the events make it");
        assert!(matches!(&plan.events[0], Event::AttemptInterrupted(i) if i.attempt == 1));
        Ok(())
    }
}
