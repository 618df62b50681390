//! The dependency graph of a run's tasks: who depends on whom, what blocks a task, when it is ready. Pure: it reads
//! task views and says what follows; the run applies it.

use std::collections::{BTreeSet, HashMap};

use crate::journal::event::{Event, TaskStateChanged};
use crate::journal::TaskView;
use crate::types::{TaskKey, TaskState};

/// How the reason of a task blocked by a dependency begins (not one blocked in a cycle: that one stays blocked).
pub(crate) const DEPENDS_ON: &str = "depends on ";

/// The event that moves `key` from `from` to `to`, saying why.
pub(crate) fn change(key: &TaskKey, from: TaskState, to: TaskState, reason: impl Into<String>) -> Event {
    Event::TaskStateChanged(TaskStateChanged {
        project: key.project.clone(),
        task: key.task.clone(),
        from,
        to,
        reason: reason.into(),
    })
}

/// Who depends on each task, among `selected`.
pub(crate) fn dependants(
    selected: &BTreeSet<TaskKey>,
    views: &HashMap<TaskKey, TaskView>,
) -> HashMap<TaskKey, Vec<TaskKey>> {
    let mut out: HashMap<TaskKey, Vec<TaskKey>> = HashMap::new();
    for k in selected {
        if let Some(v) = views.get(k) {
            for d in v.spec.dependency_keys() {
                out.entry(d).or_default().push(k.clone());
            }
        }
    }
    out
}

/// Why `key` cannot run because of a dependency (missing, or in a state that blocks its dependants), or `None`.
pub(crate) fn blocked_reason(views: &HashMap<TaskKey, TaskView>, key: &TaskKey) -> Option<String> {
    let view = views.get(key)?;
    for d in view.spec.dependency_keys() {
        match views.get(&d) {
            None => return Some(format!("{DEPENDS_ON}{d}, which does not exist")),
            Some(dv) if dv.state.blocks_dependants() => {
                return Some(format!("{DEPENDS_ON}{d}, which is {}", dv.state));
            }
            Some(_) => {}
        }
    }
    None
}

/// Every dependency of `key` is completed.
pub(crate) fn deps_completed(views: &HashMap<TaskKey, TaskView>, key: &TaskKey) -> bool {
    views.get(key).is_some_and(|v| {
        v.spec.dependency_keys().iter().all(|d| views.get(d).is_some_and(|dv| dv.state == TaskState::Completed))
    })
}

/// A task blocked by a dependency that no longer blocks it (a human answered or approved the dependency). A task
/// blocked in a cycle is not: nothing has changed for it.
pub(crate) fn unblockable(views: &HashMap<TaskKey, TaskView>, key: &TaskKey) -> bool {
    views.get(key).is_some_and(|v| {
        v.state == TaskState::Blocked
            && v.reason.as_deref().is_some_and(|r| r.starts_with(DEPENDS_ON))
            && blocked_reason(views, key).is_none()
    })
}

/// The events that block, in a cycle, the `pending` tasks that nothing will ever make ready.
pub(crate) fn cycle(pending: &[TaskKey]) -> Vec<Event> {
    let names = pending.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
    pending
        .iter()
        .map(|k| change(k, TaskState::Pending, TaskState::Blocked, format!("dependency cycle among {names}")))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::TaskSpec;

    /// Task `p/id`, depending on `deps`.
    pub(crate) fn spec(id: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            project: "p".into(),
            id: id.into(),
            title: id.into(),
            description: String::new(),
            priority: 5,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            acceptance: vec![],
        }
    }

    /// A view of task `p/id` in `state`, depending on `deps`, added at `seq`.
    pub(crate) fn view(id: &str, state: TaskState, deps: &[&str], seq: u64) -> TaskView {
        TaskView {
            spec: spec(id, deps),
            state,
            reason: state.blocks_dependants().then(|| format!("{id} is {state}")),
            added_seq: seq,
            attempts: vec![],
            attempts_since_reset: 0,
            answers: vec![],
            resume_session: None,
        }
    }

    pub(crate) fn views(list: Vec<TaskView>) -> HashMap<TaskKey, TaskView> {
        list.into_iter().map(|v| (v.spec.key(), v)).collect()
    }

    fn key(id: &str) -> TaskKey {
        TaskKey::new("p", id)
    }

    #[test]
    fn a_missing_or_blocking_dependency_is_named_and_a_completed_one_is_not() {
        let vs = views(vec![
            view("a", TaskState::Completed, &[], 1),
            view("b", TaskState::Escalated, &[], 2),
            view("c", TaskState::Pending, &["a"], 3),
            view("d", TaskState::Pending, &["a", "b"], 4),
            view("e", TaskState::Pending, &["zz"], 5),
        ]);
        assert_eq!(blocked_reason(&vs, &key("c")), None);
        assert!(deps_completed(&vs, &key("c")));
        assert_eq!(blocked_reason(&vs, &key("d")).as_deref(), Some("depends on p/b, which is escalated"));
        assert!(!deps_completed(&vs, &key("d")));
        assert_eq!(blocked_reason(&vs, &key("e")).as_deref(), Some("depends on p/zz, which does not exist"));
    }

    #[test]
    fn only_a_dependency_block_that_no_longer_holds_is_lifted() {
        let mut b = view("b", TaskState::Blocked, &["a"], 2);
        b.reason = Some("depends on p/a, which is escalated".into());
        let mut c = view("c", TaskState::Blocked, &["a"], 3);
        c.reason = Some("dependency cycle among p/c, p/d".into());
        let mut vs = views(vec![view("a", TaskState::Escalated, &[], 1), b, c]);
        assert!(!unblockable(&vs, &key("b")));
        vs.get_mut(&key("a")).expect("a").state = TaskState::Pending;
        assert!(unblockable(&vs, &key("b")));
        assert!(!unblockable(&vs, &key("c")), "a cycle stays blocked");
    }

    #[test]
    fn dependants_and_cycles_are_read_from_the_selected_tasks() {
        let vs = views(vec![
            view("a", TaskState::Pending, &["b"], 1),
            view("b", TaskState::Pending, &["a"], 2),
            view("c", TaskState::Pending, &["a"], 3),
        ]);
        let selected: BTreeSet<TaskKey> = [key("a"), key("b")].into_iter().collect();
        let deps = dependants(&selected, &vs);
        assert_eq!(deps.get(&key("a")), Some(&vec![key("b")]), "c is not selected");
        let events = cycle(&[key("a"), key("b")]);
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[0], Event::TaskStateChanged(c)
            if c.to == TaskState::Blocked && c.reason == "dependency cycle among p/a, p/b"));
    }
}
