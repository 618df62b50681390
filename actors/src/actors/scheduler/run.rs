//! A run under way, and what follows from it: which tasks are blocked or ready now (a pass over what changed),
//! which start next (slots, starvation order, budgets), when the run is over. Plain code: the Scheduler journals
//! the events these return and talks to the world. The views are the journal's; a change the run makes before the
//! journal answers goes through the projection's own rule ([`TaskView::change_state`]), never by hand.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use tokio::sync::oneshot;

use super::budgets::{budget_hit, BudgetHit, Usage};
use super::graph::{self, change};
use super::messages::{RunSummary, TaskOutcome};
use super::plan::{self, Plan};
use super::queue::{ReadyQueue, Slots};
use crate::actors::agent_session::AgentSession;
use crate::actors::file_monitor::FileMonitor;
use crate::error::EngineError;
use crate::journal::event::{BreakpointHit, Event};
use crate::journal::TaskView;
use crate::settings::{OrchestrationSettings, ProjectSettings};
use crate::types::{TaskKey, TaskState};

/// See the module documentation.
pub(crate) struct RunState {
    /// Since when each project with ready tasks has been waiting for a session.
    pub waiting_since: HashMap<String, Instant>,
    /// When the pending starvation timer fires.
    pub wake_at: Option<Instant>,
    /// The FileMonitor of each task working in a worktree of its own.
    pub task_monitors: HashMap<TaskKey, Addr<FileMonitor>>,
    /// Providers paused after a rate limit: until when (ms since the epoch).
    pub paused: HashMap<String, i64>,
    /// Rate limits in a row per provider (reset by an attempt of it that was not rate limited).
    pub rate_streak: HashMap<String, u32>,
    /// Ready tasks, in start order.
    pub ready: ReadyQueue,
    /// Who depends on whom, among the selected tasks.
    pub dependants: HashMap<TaskKey, Vec<TaskKey>>,
    /// Tasks to look at again on the next pass (their state or their dependencies' changed).
    pub dirty: Vec<TaskKey>,
    /// Projects whose new tasks join the run (`None`: the run has an explicit task list).
    pub open_to: Option<BTreeSet<String>>,
    /// What each project's tasks used, over the journal's history.
    pub usage: HashMap<String, Usage>,
    /// What this run's attempts used.
    pub run_usage: Usage,
    /// The tasks of the run.
    pub selected: BTreeSet<TaskKey>,
    /// Every task, as the journal has it (and as the run's own events will make it).
    pub views: HashMap<TaskKey, TaskView>,
    /// Tasks with an attempt under way; `None` while its start is being journaled.
    pub running: HashMap<TaskKey, Option<Addr<AgentSession>>>,
    /// Background work the run waits for before it ends: journal appends, notifications, git, rollbacks.
    pub in_flight: usize,
    /// Whom the run's end is told.
    pub done: Option<oneshot::Sender<Result<RunSummary, EngineError>>>,
    /// A stop was asked for.
    pub stopping: bool,
    /// The journal failed: what it said.
    pub failed: Option<EngineError>,
}

/// The tasks a pass starts, and the events to journal first.
#[derive(Debug, Default)]
pub(crate) struct Picks {
    /// Tasks whose attempt starts once `events` are on record.
    pub starting: Vec<TaskKey>,
    /// State changes (and budget breakpoints) to journal.
    pub events: Vec<Event>,
    /// When the next pass is due even if nothing else happens (a project's wait runs out), if a new timer is needed.
    pub wake: Option<Instant>,
}

/// What the run does when nothing is running or being journaled.
#[derive(Debug, PartialEq)]
pub(crate) enum Idle {
    /// Tasks wait for a paused provider: its resume goes on.
    Wait,
    /// Pending tasks wait on each other: block them (these events), then look again.
    Cycle(Vec<Event>),
    /// The run is over.
    Finish,
}

impl RunState {
    /// The run of `plan`, whose end is told to `done`.
    pub(crate) fn new(plan: Plan, done: oneshot::Sender<Result<RunSummary, EngineError>>) -> Self {
        let Plan { selected, views, open_to, .. } = plan;
        let mut usage: HashMap<String, Usage> = HashMap::new();
        for v in views.values() {
            usage.entry(v.spec.project.clone()).or_default().shift(Usage::default(), Usage::of(v));
        }
        RunState {
            waiting_since: HashMap::new(),
            wake_at: None,
            task_monitors: HashMap::new(),
            paused: HashMap::new(),
            rate_streak: HashMap::new(),
            ready: ReadyQueue::default(),
            dependants: graph::dependants(&selected, &views),
            dirty: selected.iter().cloned().collect(),
            open_to,
            usage,
            run_usage: Usage::default(),
            selected,
            views,
            running: HashMap::new(),
            in_flight: 0,
            done: Some(done),
            stopping: false,
            failed: None,
        }
    }

    /// Takes in a task's view as the journal now has it: its usage counts toward its project's and the run's, and
    /// the next pass looks at it again.
    pub(crate) fn take_view(&mut self, v: TaskView) {
        let key = v.spec.key();
        let (before, after) = (self.views.get(&key).map(Usage::of).unwrap_or_default(), Usage::of(&v));
        self.usage.entry(key.project.clone()).or_default().shift(before, after);
        self.run_usage.shift(before, after);
        self.dirty.push(key.clone());
        self.views.insert(key, v);
    }

    /// A task changed from outside the run (a human, a task added): a new task of the run's projects joins it.
    pub(crate) fn join(&mut self, v: &TaskView) {
        let key = v.spec.key();
        if !self.selected.contains(&key) && self.open_to.as_ref().is_some_and(|p| p.contains(&key.project)) {
            self.selected.insert(key.clone());
            for d in v.spec.dependency_keys() {
                self.dependants.entry(d).or_default().push(key.clone());
            }
        }
    }

    /// Pushes `event` and takes it into the views.
    fn record(&mut self, events: &mut Vec<Event>, event: Event) {
        plan::apply(&mut self.views, std::slice::from_ref(&event));
        events.push(event);
    }

    fn dependants_of(&self, key: &TaskKey, changed: bool) -> impl Iterator<Item = (TaskKey, bool)> + '_ {
        self.dependants.get(key).into_iter().flatten().map(move |d| (d.clone(), changed))
    }

    /// Looks at the tasks whose state or whose dependencies' states changed: blocked now, ready now, or neither.
    /// Blocking propagates along chains; a dependency that completed (or is pending again) lets its dependants go on.
    pub(crate) fn settle(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut work: Vec<(TaskKey, bool)> = std::mem::take(&mut self.dirty).into_iter().map(|k| (k, true)).collect();
        while let Some((k, changed)) = work.pop() {
            if !self.selected.contains(&k) {
                continue;
            }
            let Some(state) = self.views.get(&k).map(|v| v.state) else { continue };
            if state == TaskState::Pending {
                if let Some(reason) = graph::blocked_reason(&self.views, &k) {
                    self.record(&mut events, change(&k, TaskState::Pending, TaskState::Blocked, reason));
                    self.ready.remove(&k);
                    work.extend(self.dependants_of(&k, true));
                    continue;
                }
                match self.views.get(&k) {
                    Some(v) if !self.running.contains_key(&k) && graph::deps_completed(&self.views, &k) => {
                        let (priority, seq) = (v.spec.priority, v.added_seq);
                        self.ready.insert(k.clone(), priority, seq);
                    }
                    _ => {
                        self.ready.remove(&k);
                    }
                }
                // Pending again (answered, approved…): dependants it blocked may go on.
                if changed {
                    work.extend(self.dependants_of(&k, false));
                }
            } else if graph::unblockable(&self.views, &k) {
                let ev = change(&k, TaskState::Blocked, TaskState::Pending, "its dependencies no longer block it");
                self.record(&mut events, ev);
                work.push((k, true));
            } else {
                self.ready.remove(&k);
                if changed && (state == TaskState::Completed || state.blocks_dependants()) {
                    work.extend(self.dependants_of(&k, false));
                }
            }
        }
        events
    }

    /// Picks the tasks to start now — projects that waited past `max_wait` first (the longest-waiting first), then
    /// highest priority, then oldest — while sessions are free, each in a project with a free slot and a free
    /// workspace. A task whose project or run budget is spent goes to a human instead, saying which budget.
    pub(crate) fn choose(
        &mut self,
        projects: &HashMap<String, Arc<ProjectSettings>>,
        orchestration: &OrchestrationSettings,
        now: Instant,
    ) -> Picks {
        let mut picks = Picks::default();
        let mut slots = Slots::default();
        for k in self.running.keys() {
            if let Some(p) = projects.get(&k.project) {
                slots.take(p);
            }
        }
        let mut starved: Vec<(Instant, String)> = self
            .waiting_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= orchestration.max_wait)
            .map(|(p, since)| (*since, p.clone()))
            .collect();
        starved.sort();
        let mut starved: VecDeque<String> = starved.into_iter().map(|(_, p)| p).collect();
        while self.running.len() + picks.starting.len() < orchestration.max_sessions {
            let paused = &self.paused;
            let free = |slots: &Slots, name: &str| {
                projects.get(name).is_some_and(|p| slots.free(p, &orchestration.provider_max_sessions, paused))
            };
            let mut picked = None;
            while let Some(p) = starved.pop_front() {
                if free(&slots, &p) {
                    picked = self.ready.pick_in(&p);
                    if picked.is_some() {
                        break;
                    }
                }
            }
            let Some(key) = picked.or_else(|| self.ready.pick(|name| free(&slots, name))) else { break };
            let in_project = self.usage.get(&key.project).copied().unwrap_or_default();
            if let Some(BudgetHit { name, detail }) =
                budget_hit(&orchestration.breakpoints, &key.project, in_project, self.run_usage)
            {
                let attempt = self.views.get(&key).and_then(|v| v.attempts.last()).map(|a| a.number).unwrap_or(0);
                picks.events.push(Event::BreakpointHit(BreakpointHit {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt,
                    breakpoint: name.clone(),
                    detail: detail.clone(),
                }));
                let ev = change(&key, TaskState::Pending, TaskState::Escalated, format!("breakpoint {name}: {detail}"));
                self.record(&mut picks.events, ev);
                continue;
            }
            let Some(project) = projects.get(&key.project) else { continue };
            slots.take(project);
            self.record(
                &mut picks.events,
                change(&key, TaskState::Pending, TaskState::Running, "an attempt is starting"),
            );
            picks.starting.push(key);
        }
        // Who waits now, and since when: a project with ready tasks and no session. One that got a session starts
        // waiting afresh when it has none again.
        let waiting: Vec<String> = self
            .ready
            .projects()
            .filter(|p| slots.per_project.get(p).copied().unwrap_or(0) == 0)
            .map(str::to_string)
            .collect();
        self.waiting_since.retain(|p, _| waiting.contains(p));
        for p in waiting {
            self.waiting_since.entry(p).or_insert(now);
        }
        // A pass when the oldest wait runs out, in case nothing else happens by then (one timer at a time).
        if let Some(oldest) = self.waiting_since.values().min().copied() {
            let due = crate::process::deadline_after(oldest, orchestration.max_wait);
            if self.wake_at.is_none_or(|w| w <= now || due < w) {
                self.wake_at = Some(due);
                picks.wake = Some(due);
            }
        }
        for key in &picks.starting {
            self.running.insert(key.clone(), None);
        }
        picks
    }

    /// What to do when nothing is running or being journaled.
    pub(crate) fn idle(&self) -> Idle {
        if !self.stopping && self.failed.is_none() {
            if !self.paused.is_empty() && !self.ready.is_empty() {
                return Idle::Wait;
            }
            // Pending tasks that nothing will ever make ready wait on each other: a cycle.
            let stuck: Vec<TaskKey> = self
                .selected
                .iter()
                .filter(|k| self.views.get(*k).is_some_and(|v| v.state == TaskState::Pending))
                .cloned()
                .collect();
            if !stuck.is_empty() {
                return Idle::Cycle(graph::cycle(&stuck));
            }
        }
        Idle::Finish
    }

    /// Every selected task with its state and reason.
    pub(crate) fn summary(&self) -> RunSummary {
        RunSummary {
            tasks: self
                .selected
                .iter()
                .filter_map(|k| {
                    self.views.get(k).map(|v| TaskOutcome { key: k.clone(), state: v.state, reason: v.reason.clone() })
                })
                .collect(),
            interrupted: self.stopping,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::actors::scheduler::graph::tests::{view, views};
    use crate::settings::AgentSettings;

    fn run_of(list: Vec<TaskView>) -> RunState {
        let views = views(list);
        let selected = views.keys().cloned().collect();
        let (tx, _rx) = oneshot::channel();
        RunState::new(Plan { selected, views, open_to: None, interrupted: vec![], events: vec![] }, tx)
    }

    fn projects(max_sessions: usize) -> HashMap<String, Arc<ProjectSettings>> {
        let mut p = ProjectSettings::new("p", "/nonexistent/ws", AgentSettings::command("true", vec![]));
        p.max_sessions = max_sessions;
        p.isolation = crate::settings::Isolation::Worktree;
        [("p".to_string(), Arc::new(p))].into_iter().collect()
    }

    fn states(run: &RunState) -> Vec<(String, TaskState)> {
        let mut v: Vec<_> = run.views.iter().map(|(k, v)| (k.task.clone(), v.state)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn blocking_propagates_along_a_chain_and_the_views_follow_the_events() {
        let mut run = run_of(vec![
            view("a", TaskState::Failed, &[], 1),
            view("b", TaskState::Pending, &["a"], 2),
            view("c", TaskState::Pending, &["b"], 3),
            view("d", TaskState::Pending, &[], 4),
        ]);
        let events = run.settle();
        assert_eq!(events.len(), 2, "b and c are blocked: {events:?}");
        let reason = run.views[&TaskKey::new("p", "c")].reason.clone();
        assert_eq!(reason.as_deref(), Some("depends on p/b, which is blocked"));
        assert_eq!(
            states(&run),
            [
                ("a".into(), TaskState::Failed),
                ("b".into(), TaskState::Blocked),
                ("c".into(), TaskState::Blocked),
                ("d".into(), TaskState::Pending)
            ]
        );
        assert!(!run.ready.is_empty(), "d is ready");
        // A human approves a: b and c go on, b first (c still waits for b).
        let mut a = run.views[&TaskKey::new("p", "a")].clone();
        a.state = TaskState::Completed;
        run.take_view(a);
        let events = run.settle();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(run.views[&TaskKey::new("p", "b")].state, TaskState::Pending);
        assert_eq!(run.views[&TaskKey::new("p", "c")].state, TaskState::Pending);
    }

    #[test]
    fn picks_follow_priority_then_age_within_the_session_limits() {
        let mut hi = view("hi", TaskState::Pending, &[], 3);
        hi.spec.priority = 9;
        let mut run =
            run_of(vec![view("old", TaskState::Pending, &[], 1), view("new", TaskState::Pending, &[], 2), hi]);
        run.settle();
        let orch = OrchestrationSettings { max_sessions: 2, ..OrchestrationSettings::default() };
        let picks = run.choose(&projects(4), &orch, Instant::now());
        let started: Vec<_> = picks.starting.iter().map(|k| k.task.as_str()).collect();
        assert_eq!(started, ["hi", "old"]);
        assert_eq!(run.views[&TaskKey::new("p", "hi")].state, TaskState::Running);
        assert_eq!(picks.events.len(), 2);
        // Both sessions are taken: nothing more starts.
        assert!(run.choose(&projects(4), &orch, Instant::now()).starting.is_empty());
    }

    #[test]
    fn a_spent_run_budget_escalates_instead_of_starting() {
        let mut run = run_of(vec![view("a", TaskState::Pending, &[], 1)]);
        run.settle();
        run.run_usage = Usage { tokens: 1_000, cost_usd: 0.0 };
        let mut orch = OrchestrationSettings::default();
        orch.breakpoints.run_token_budget = 500;
        let picks = run.choose(&projects(1), &orch, Instant::now());
        assert!(picks.starting.is_empty());
        assert!(matches!(&picks.events[0], Event::BreakpointHit(b) if b.breakpoint == "run_token_budget"));
        let a = &run.views[&TaskKey::new("p", "a")];
        assert_eq!(a.state, TaskState::Escalated);
        assert!(a.reason.as_deref().is_some_and(|r| r.starts_with("breakpoint run_token_budget")), "{:?}", a.reason);
    }

    #[test]
    fn a_waiting_project_asks_for_a_pass_when_its_wait_runs_out() {
        let mut run = run_of(vec![view("a", TaskState::Pending, &[], 1)]);
        run.settle();
        let orch = OrchestrationSettings { max_wait: Duration::from_secs(5), ..OrchestrationSettings::default() };
        let now = Instant::now();
        let picks = run.choose(&projects(0), &orch, now);
        assert!(picks.starting.is_empty(), "no slot in p");
        assert_eq!(picks.wake, Some(now + Duration::from_secs(5)));
        assert!(run.choose(&projects(0), &orch, now).wake.is_none(), "one timer at a time");
    }

    #[test]
    fn pending_tasks_nothing_can_start_are_a_cycle_and_a_paused_provider_is_waited_for() {
        let mut run = run_of(vec![view("a", TaskState::Pending, &["b"], 1), view("b", TaskState::Pending, &["a"], 2)]);
        run.settle();
        assert!(matches!(run.idle(), Idle::Cycle(e) if e.len() == 2));
        let mut run = run_of(vec![view("a", TaskState::Pending, &[], 1)]);
        run.settle();
        run.paused.insert("command".into(), i64::MAX);
        assert_eq!(run.idle(), Idle::Wait);
        run.stopping = true;
        assert_eq!(run.idle(), Idle::Finish);
    }
}
