//! What `orch run` shows while it works. On a terminal: a live view — a progress bar per project (its selected
//! tasks settled), a line with the tasks running now, and the run's progress lines (attempts, failed checks,
//! decisions, escalations) scrolling above them. Not on a terminal: the progress lines alone, one per event.

use std::collections::BTreeMap;
use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use orch_actors::journal::State;
use orch_actors::{Event, TaskKey, TaskState};

/// The progress line an event deserves, if any, with nothing in it a terminal would act on.
pub fn progress_line(e: &Event) -> Option<String> {
    line(e).map(crate::render::visible)
}

fn line(e: &Event) -> Option<String> {
    match e {
        Event::AttemptStarted(a) => Some(format!("▶ {}/{}  attempt {} started", a.project, a.task, a.attempt)),
        Event::CheckFinished(c) if !c.passed => Some(format!(
            "  {}/{}  check `{}` failed{}",
            c.project,
            c.task,
            c.command,
            c.exit_code.map(|x| format!(" (exit {x})")).unwrap_or_default()
        )),
        Event::Decided(d) => {
            Some(format!("  {}/{}  attempt {}: {} — {}", d.project, d.task, d.attempt, d.decision, d.reason))
        }
        Event::TaskStateChanged(c) => match c.to {
            TaskState::Completed => Some(format!("✓ {}/{}  completed", c.project, c.task)),
            TaskState::Escalated => Some(format!("! {}/{}  escalated: {}", c.project, c.task, c.reason)),
            TaskState::Blocked => Some(format!("✗ {}/{}  blocked: {}", c.project, c.task, c.reason)),
            TaskState::Failed => Some(format!("✗ {}/{}  failed: {}", c.project, c.task, c.reason)),
            _ => None,
        },
        Event::AttemptInterrupted(i) => {
            Some(format!("  {}/{}  attempt {} interrupted: {}", i.project, i.task, i.attempt, i.reason))
        }
        Event::ProviderPaused(p) => Some(format!("⏸ provider {} paused: {}", p.provider, p.reason)),
        Event::ProviderResumed(p) => Some(format!("⏵ provider {} resumed", p.provider)),
        _ => None,
    }
}

/// Where progress goes.
pub enum Progress {
    /// Plain lines on stdout.
    Lines,
    /// The live view.
    Live(Box<LiveView>),
}

impl Progress {
    /// The live view when stdout is a terminal, else plain lines. `state`: the journal as the run starts.
    pub fn new(state: State) -> Progress {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            Progress::Live(Box::new(LiveView::new(state, ProgressDrawTarget::stdout())))
        } else {
            Progress::Lines
        }
    }

    /// Shows one event.
    pub fn event(&mut self, e: &Event) {
        match self {
            Progress::Lines => {
                if let Some(l) = progress_line(e) {
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "{l}");
                    let _ = out.flush();
                }
            }
            Progress::Live(v) => v.event(e),
        }
    }

    /// A note between events ("… N events not shown").
    pub fn note(&mut self, line: &str) {
        match self {
            Progress::Lines => println!("{line}"),
            Progress::Live(v) => {
                let _ = v.multi.println(line);
            }
        }
    }

    /// Leaves the final picture on screen.
    pub fn finish(&mut self) {
        if let Progress::Live(v) = self {
            v.finish();
        }
    }
}

/// The live view: one bar per project with selected tasks, one line of running tasks.
pub struct LiveView {
    multi: MultiProgress,
    state: State,
    bars: BTreeMap<String, ProgressBar>,
    /// Selected tasks and whether each is settled.
    tasks: BTreeMap<TaskKey, bool>,
    running_bar: ProgressBar,
    running: BTreeMap<TaskKey, u32>,
}

impl LiveView {
    /// A view drawing to `target`.
    pub fn new(state: State, target: ProgressDrawTarget) -> LiveView {
        let multi = MultiProgress::with_draw_target(target);
        let running_bar = multi.add(ProgressBar::new_spinner());
        running_bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        running_bar.enable_steady_tick(std::time::Duration::from_millis(120));
        LiveView { multi, state, bars: BTreeMap::new(), tasks: BTreeMap::new(), running_bar, running: BTreeMap::new() }
    }

    fn bar(&mut self, project: &str) -> &ProgressBar {
        if !self.bars.contains_key(project) {
            let bar = self.multi.insert_before(&self.running_bar, ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {wide_msg}")
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(project.to_string());
            self.bars.insert(project.to_string(), bar);
        }
        &self.bars[project]
    }

    fn recount(&mut self, project: &str) {
        let (total, done) = self
            .tasks
            .iter()
            .filter(|(k, _)| k.project == project)
            .fold((0u64, 0u64), |(t, d), (_, s)| (t + 1, d + u64::from(*s)));
        let bar = self.bar(project).clone();
        bar.set_length(total);
        bar.set_position(done);
    }

    fn show_running(&self) {
        if self.running.is_empty() {
            self.running_bar.set_message("nothing running");
        } else {
            let list: Vec<String> = self.running.iter().map(|(k, a)| format!("{k}#{a}")).collect();
            self.running_bar.set_message(format!("running: {}", list.join(", ")));
        }
    }

    /// Shows one event.
    pub fn event(&mut self, e: &Event) {
        match e {
            Event::RunStarted(r) => {
                for k in &r.selected {
                    if let Some(key) = TaskKey::parse_qualified(k) {
                        let done = self.state.tasks.get(&key).is_some_and(|v| v.state.is_settled());
                        self.tasks.insert(key, done);
                    }
                }
                let projects: std::collections::BTreeSet<String> =
                    self.tasks.keys().map(|k| k.project.clone()).collect();
                for p in projects {
                    self.recount(&p);
                }
                self.show_running();
            }
            Event::TaskAdded(a) => {
                // A task added to a run under way (through the control socket).
                let key = a.spec.key();
                if self.bars.contains_key(&key.project) {
                    self.tasks.insert(key.clone(), false);
                    self.recount(&key.project);
                }
            }
            Event::AttemptStarted(a) => {
                self.running.insert(TaskKey::new(&a.project, &a.task), a.attempt);
                self.show_running();
            }
            Event::TaskStateChanged(c) => {
                let key = TaskKey::new(&c.project, &c.task);
                if c.from == TaskState::Running {
                    self.running.remove(&key);
                    self.show_running();
                }
                if let Some(s) = self.tasks.get_mut(&key) {
                    *s = c.to.is_settled();
                    self.recount(&c.project);
                }
            }
            Event::Decided(d) => {
                let msg = format!("last: {} #{} {}", d.task, d.attempt, d.decision);
                self.bar(&d.project).set_message(msg);
            }
            _ => {}
        }
        if let Some(l) = progress_line(e) {
            let _ = self.multi.println(l);
        }
    }

    /// Stops the spinner; the bars stay as they are.
    pub fn finish(&mut self) {
        self.running_bar.finish_and_clear();
        for b in self.bars.values() {
            b.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_actors::journal::event::{AttemptStarted, Decided, RunStarted, TaskStateChanged};

    #[test]
    fn the_view_counts_settled_tasks_per_project_and_lists_running_ones() {
        let mut v = LiveView::new(State::default(), ProgressDrawTarget::hidden());
        v.event(&Event::RunStarted(RunStarted { pid: 1, selected: vec!["p/a".into(), "p/b".into(), "q/c".into()] }));
        assert_eq!((v.bars["p"].length(), v.bars["p"].position()), (Some(2), 0));
        v.event(&Event::AttemptStarted(AttemptStarted {
            project: "p".into(),
            task: "a".into(),
            attempt: 1,
            agent: "command".into(),
            program: "sh".into(),
            prompt_tokens: None,
            prompt_bytes: 1,
            prompt_excerpt: String::new(),
            resume_session: None,
        }));
        assert_eq!(v.running_bar.message(), "running: p/a#1");
        v.event(&Event::Decided(Decided {
            project: "p".into(),
            task: "a".into(),
            attempt: 1,
            decision: orch_actors::Decision::Proceed,
            reason: "ok".into(),
            feedback: String::new(),
        }));
        v.event(&Event::TaskStateChanged(TaskStateChanged {
            project: "p".into(),
            task: "a".into(),
            from: TaskState::Running,
            to: TaskState::Completed,
            reason: "ok".into(),
        }));
        assert_eq!(v.bars["p"].position(), 1);
        assert_eq!(v.bars["p"].message(), "last: a #1 proceed");
        assert_eq!(v.running_bar.message(), "nothing running");
        assert_eq!(v.bars["q"].length(), Some(1));
    }
}
