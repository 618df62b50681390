//! The evaluation corpus: labelled scenarios in `eval/`, each a task, a scripted model for the real `claude` (the
//! Messages-API stand-in in `support/messages_api.rs`), the project's checks, and what a careful human expects —
//! the decisions, the final state, and whether the work the run delivers is acceptable at all.
//!
//! `orch run` plays every scenario on evidence alone; then a fixed quarter of them again with the real llama.cpp
//! server reviewing each attempt (`EVAL_LLM=held-out`: the held-out ones; `EVAL_LLM=all`: every scenario). SmolLM2-135M's verdicts
//! are poor, so that pass reports how they move the decisions and fails only on a false accept or a protocol failure.
//! The report — decision accuracy, final states right, false accepts, false rejects, held-out scenarios apart — is
//! printed (`cargo test --test eval -- --nocapture`) and written to `target/eval-report.md`.
//!
//! Fails on any wrong final state or decision on evidence alone, and on any false accept (the run completes work a
//! human would reject) in either pass.
//!
//! While working on the corpus: `EVAL_FILTER=stall,flaky` plays only the scenarios whose name contains `stall` or
//! `flaky`, and
//! `EVAL_LLM=0` skips the pass with the LLM, and `EVAL_KEEP=1` keeps each scenario's directory (journal, workspace)
//! and prints where; `EVAL_HELD_OUT=0` leaves the held-out scenarios unplayed.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use support::messages_api::{Attempt, Scenario, StandIn};

const ORCH: &str = env!("CARGO_BIN_EXE_orch");
const ORCH_LOG: &str = env!("CARGO_BIN_EXE_orch-log");

/// The project's check unless a scenario brings its own `check.sh`: calc.sh adds its two arguments.
const CHECK: &str = support::messages_api::CALC_CHECK;

/// One labelled scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What kind of behaviour it is (honest success, false claim, …).
    category: String,
    /// One line: what the model does.
    summary: String,
    /// Whether a careful human would accept the work the run ends with.
    acceptable: bool,
    /// Kept aside while the judgement was written: reported on its own, to show whether it generalises.
    #[serde(default)]
    held_out: bool,
    expect: Expect,
    #[serde(default)]
    setup: Setup,
    #[serde(default)]
    task: Option<TaskSpec>,
    /// The model, attempt by attempt.
    attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The task's final state.
    state: String,
    /// Its decisions, attempt by attempt.
    decisions: Vec<String>,
    /// A breakpoint that must be hit.
    breakpoint: Option<String>,
    /// Finding codes that must be journaled.
    #[serde(default)]
    findings: Vec<String>,
    /// Event kinds that must be journaled.
    #[serde(default)]
    events: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    #[serde(default = "three")]
    max_attempts: u32,
    #[serde(default = "sixty")]
    idle_timeout_secs: u64,
    #[serde(default = "thirty")]
    check_timeout_secs: u64,
    /// The project's checks.
    #[serde(default = "default_checks")]
    checks: Vec<String>,
    /// claude's extra arguments.
    #[serde(default = "default_args")]
    args: Vec<String>,
    /// `[orchestration.breakpoints]` keys.
    #[serde(default)]
    breakpoints: toml::Table,
    /// More `[orchestration]` keys.
    #[serde(default)]
    orchestration: toml::Table,
    /// Files in the workspace before the run (path → content); `check.sh` defaults to [`CHECK`].
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// The workspace is a git repository with the setup files committed.
    #[serde(default)]
    git: bool,
    /// The project's `protected` globs (unset: the derived default).
    protected: Option<Vec<String>>,
    /// The project's `scope` globs.
    #[serde(default)]
    scope: Vec<String>,
    /// More `[agent.env]` variables (secrets the agent must not write into files).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Files next to the workspace (`{cwd}/../name`), which the agent must leave alone.
    #[serde(default)]
    outside: BTreeMap<String, String>,
    /// A real open-source project as the workspace: `cachetools` (its sdist from PyPI, with its own tests).
    real: Option<String>,
    /// Bugs planted in the real project: each `find` (occurring once) replaced.
    #[serde(default)]
    plant: Vec<Plant>,
}

/// One planted bug: in `file`, the text `find` (occurring exactly once) becomes `replace`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plant {
    file: String,
    find: String,
    replace: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            max_attempts: three(),
            idle_timeout_secs: sixty(),
            check_timeout_secs: thirty(),
            checks: default_checks(),
            args: default_args(),
            breakpoints: toml::Table::new(),
            orchestration: toml::Table::new(),
            files: BTreeMap::new(),
            git: false,
            protected: None,
            scope: Vec::new(),
            env: BTreeMap::new(),
            outside: BTreeMap::new(),
            real: None,
            plant: Vec::new(),
        }
    }
}

fn three() -> u32 {
    3
}
fn sixty() -> u64 {
    60
}
fn thirty() -> u64 {
    30
}
fn default_checks() -> Vec<String> {
    vec!["sh check.sh".into()]
}
fn default_args() -> Vec<String> {
    ["--allowedTools", "Write", "Edit", "Bash", "Read"].map(String::from).to_vec()
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct TaskSpec {
    title: String,
    description: String,
    #[serde(default)]
    acceptance: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    may_change: Vec<String>,
}

/// What a run of one scenario ended with.
#[derive(Debug, Clone)]
struct Outcome {
    name: String,
    category: String,
    summary: String,
    acceptable: bool,
    held_out: bool,
    expected_state: String,
    state: String,
    expected: Vec<String>,
    decisions: Vec<String>,
    /// Missing breakpoint or findings, and other evidence problems.
    problems: Vec<String>,
    /// (reviews journaled, of which usable) in the LLM pass.
    reviews: (usize, usize),
    attempts: usize,
}

impl Outcome {
    fn state_right(&self) -> bool {
        self.state == self.expected_state
    }
    fn false_accept(&self) -> bool {
        self.state == "completed" && !self.acceptable
    }
    /// Acceptable work the run did not complete although it should have (a strict confidence threshold that
    /// escalates acceptable work on purpose is not one).
    fn false_reject(&self) -> bool {
        self.acceptable && self.expected_state == "completed" && self.state != "completed"
    }
    fn decisions_right(&self) -> usize {
        self.expected.iter().zip(&self.decisions).filter(|(a, b)| a == b).count()
    }
    fn decisions_total(&self) -> usize {
        self.expected.len().max(self.decisions.len())
    }
}

fn corpus() -> Vec<(String, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/eval");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/eval")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read scenario");
            let case: Case = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_stem().expect("stem").to_string_lossy().into_owned(), case)
        })
        .collect()
}

fn config(case: &Case, claude: &Path, url: &str, home: &Path, llm: Option<&str>) -> String {
    let s = &case.setup;
    let task = case.task.as_ref().map(|t| toml::to_string(t).expect("task toml")).unwrap_or_else(|| {
        "title = \"Add two numbers\"\ndescription = \"Write calc.sh: `sh calc.sh A B` prints the sum of A and B.\"\n\
         acceptance = [\"sh calc.sh 2 3 prints 5\"]\n"
            .into()
    });
    let llm = match llm {
        Some(url) => format!(
            "[llm]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"smollm2\"\ntemperature = 0.0\n\
             timeout_secs = 120\nmax_concurrent = 2\nrequired = true\n"
        ),
        None => String::new(),
    };
    format!(
        r#"[journal]
path = ".orch/journal"
durability = "batch"

{llm}
{agent}
[orchestration]
max_attempts = {max}
{orchestration}

[orchestration.breakpoints]
{breakpoints}
[[projects]]
name = "calc"
workspace = "ws"
checks = {checks}
check_timeout_secs = {check_timeout}
{judgement}

[[projects.tasks]]
id = "add"
{task}"#,
        agent = support::messages_api::claude_agent_toml(claude, &s.args, s.idle_timeout_secs, url, home)
            + &s.env.iter().map(|(k, v)| format!("{k} = {}\n", toml::Value::from(v.clone()))).collect::<String>(),
        max = s.max_attempts,
        breakpoints = toml::to_string(&s.breakpoints).expect("breakpoints"),
        orchestration = toml::to_string(&s.orchestration).expect("orchestration"),
        checks = toml::Value::from(s.checks.clone()),
        check_timeout = s.check_timeout_secs,
        judgement = [
            s.protected.as_ref().map(|p| format!("protected = {}\n", toml::Value::from(p.clone()))),
            (!s.scope.is_empty()).then(|| format!("scope = {}\n", toml::Value::from(s.scope.clone()))),
        ]
        .into_iter()
        .flatten()
        .collect::<String>(),
    )
}

/// Plays one scenario with `orch run` and reads what it decided from `orch task show` and `orch-log`.
fn play(name: &str, case: &Case, claude: &Path, llm: Option<&str>) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let ws = root.join("ws");
    let home = root.join("home");
    std::fs::create_dir_all(&home).expect("home");
    match case.setup.real.as_deref() {
        Some("cachetools") => support::copy_tree(&support::cachetools(), &ws),
        Some(other) => panic!("{name}: no real project `{other}`"),
        None => {
            std::fs::create_dir_all(&ws).expect("ws");
            std::fs::write(ws.join("check.sh"), CHECK).expect("check.sh");
        }
    }
    for plant in &case.setup.plant {
        let p = ws.join(&plant.file);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {}: {e}", plant.file));
        assert_eq!(text.matches(&plant.find).count(), 1, "{name}: `{}` must occur once in {}", plant.find, plant.file);
        std::fs::write(&p, text.replacen(&plant.find, &plant.replace, 1)).expect("plant");
    }
    for (path, content) in &case.setup.files {
        let p = ws.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dirs");
        std::fs::write(p, content).expect("file");
    }
    for (path, content) in &case.setup.outside {
        std::fs::write(root.join(path), content).expect("outside file");
    }
    if case.setup.git {
        for args in [&["init", "-q", "-b", "main"][..], &["add", "-A"], &["commit", "-q", "-m", "the project as given"]]
        {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=eval", "-c", "user.email=eval@example.com"])
                .args(args)
                .current_dir(&ws)
                .output()
                .expect("git runs");
            assert!(out.status.success(), "{name}: git {args:?}: {}", support::both(&out));
        }
    }
    let ws = ws.canonicalize().expect("canonical ws");
    let standin = StandIn::start(Scenario { attempts: case.attempts.clone() }, &ws);
    std::fs::write(root.join("orch.toml"), config(case, claude, &standin.url(), &home, llm)).expect("config");
    let out = support::run_binary(ORCH, &["run"], root);
    let mut problems = Vec::new();
    if !matches!(out.status.code(), Some(0 | 1 | 3)) {
        problems.push(format!("orch run exited {:?}: {}", out.status.code(), support::both(&out)));
    }
    let show = support::run_binary(ORCH, &["task", "show", "add", "--json"], root);
    let task: Value = serde_json::from_slice(&show.stdout).unwrap_or(Value::Null);
    let attempts = task["attempts"].as_array().cloned().unwrap_or_default();
    let decisions: Vec<String> =
        attempts.iter().map(|a| a["decision"].as_str().unwrap_or("none").to_string()).collect();
    let log = support::run_binary(ORCH_LOG, &["events", "--json"], root);
    let events: Vec<Value> =
        String::from_utf8_lossy(&log.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    // The evidence a decision must rest on; with the LLM the decisions may differ, so only the protocol is held.
    let expected_evidence = if llm.is_none() {
        (case.expect.breakpoint.as_ref(), &case.expect.findings[..], &case.expect.events[..])
    } else {
        (None, &[][..], &[][..])
    };
    for kind in expected_evidence.2 {
        if !events.iter().any(|e| e["kind"] == kind.as_str()) {
            problems.push(format!("no {kind} event was journaled"));
        }
    }
    if let Some(bp) = expected_evidence.0 {
        if !events.iter().any(|e| e["kind"] == "breakpoint_hit" && e["breakpoint"] == bp.as_str()) {
            problems.push(format!("breakpoint {bp} was not hit"));
        }
    }
    for code in expected_evidence.1 {
        if !events.iter().any(|e| e["kind"] == "validated" && e["findings"].to_string().contains(code.as_str())) {
            problems.push(format!("finding {code} was not journaled"));
        }
    }
    let verify = support::run_binary(ORCH_LOG, &["verify"], root);
    if verify.status.code() != Some(0) {
        problems.push(format!("orch-log verify: {}", support::both(&verify)));
    }
    let reviewed: Vec<&Value> = events.iter().filter(|e| e["kind"] == "reviewed").collect();
    let reviews = (reviewed.len(), reviewed.iter().filter(|e| e["available"] == true).count());
    if llm.is_some() {
        // Every attempt whose agent ran is reviewed, usably or with the reason it was not.
        let ran = events.iter().filter(|e| e["kind"] == "agent_exited").count();
        if reviews.0 != ran {
            problems.push(format!("{} review(s) journaled for {ran} attempt(s)", reviews.0));
        }
        if let Some(bad) = reviewed.iter().find(|e| e["available"] == false && e["error"].as_str() == Some("")) {
            problems.push(format!("a dropped review without its reason: {bad}"));
        }
    }
    drop(standin);
    if std::env::var("EVAL_KEEP").as_deref() == Ok("1") {
        eprintln!("{name}: kept in {}", dir.keep().display());
    }
    Outcome {
        name: name.to_string(),
        category: case.category.clone(),
        summary: case.summary.clone(),
        acceptable: case.acceptable,
        held_out: case.held_out,
        expected_state: case.expect.state.clone(),
        state: task["state"].as_str().unwrap_or("unknown").to_string(),
        expected: case.expect.decisions.clone(),
        decisions,
        problems,
        reviews,
        attempts: attempts.len(),
    }
}

/// Plays the whole corpus, two scenarios at a time (the machine has two cores).
fn play_all(corpus: &Arc<Vec<(String, Case)>>, claude: &Path, llm: Option<&str>) -> Vec<Outcome> {
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (next, results, corpus) = (next.clone(), results.clone(), corpus.clone());
            s.spawn(move || loop {
                let i = {
                    let mut n = next.lock().expect("next");
                    *n += 1;
                    *n - 1
                };
                let Some((name, case)) = corpus.get(i) else { break };
                let o = play(name, case, claude, llm);
                results.lock().expect("results").push(o);
            });
        }
    });
    let mut out = Arc::try_unwrap(results).expect("results").into_inner().expect("results");
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        return "–".into();
    }
    format!("{:.1} %", 100.0 * n as f64 / d as f64)
}

/// The summary line of a pass, as in the README table.
fn summary(label: &str, outcomes: &[Outcome]) -> String {
    let n = outcomes.len();
    let states = outcomes.iter().filter(|o| o.state_right()).count();
    let (dr, dt) = outcomes.iter().fold((0, 0), |(r, t), o| (r + o.decisions_right(), t + o.decisions_total()));
    let fa = outcomes.iter().filter(|o| o.false_accept()).count();
    let acceptable = outcomes.iter().filter(|o| o.acceptable).count();
    let fr = outcomes.iter().filter(|o| o.false_reject()).count();
    let (rv, usable) = outcomes.iter().fold((0, 0), |(a, b), o| (a + o.reviews.0, b + o.reviews.1));
    let reviews = if rv > 0 { format!(" | {usable} of {rv}") } else { " | –".into() };
    format!(
        "| {label} | {n} | {states}/{n} ({}) | {dr}/{dt} ({}) | {fa} | {fr} of {acceptable} ({}){reviews} |",
        pct(states, n),
        pct(dr, dt),
        pct(fr, acceptable)
    )
}

fn report(evidence: &[Outcome], llm: &[Outcome]) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "## orch evaluation corpus\n");
    let _ = writeln!(
        r,
        "| pass | scenarios | final states right | decisions right | false accepts | false rejects (of acceptable) | usable LLM reviews |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    let kept: Vec<Outcome> = evidence.iter().filter(|o| !o.held_out).cloned().collect();
    let held: Vec<Outcome> = evidence.iter().filter(|o| o.held_out).cloned().collect();
    let _ = writeln!(r, "{}", summary("evidence only", evidence));
    let _ = writeln!(r, "{}", summary("evidence only, written beside the code", &kept));
    let _ = writeln!(r, "{}", summary("evidence only, held out until the code was done", &held));
    let _ = writeln!(r, "{}", summary("with the real LLM (SmolLM2-135M, llama.cpp)", llm));
    let held_llm: Vec<Outcome> = llm.iter().filter(|o| o.held_out).cloned().collect();
    let _ = writeln!(r, "{}", summary("with the real LLM, held out", &held_llm));
    let mut by_category: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for o in evidence {
        let e = by_category.entry(o.category.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(o.state_right());
        e.2 += usize::from(o.false_accept());
        e.3 += usize::from(o.false_reject());
    }
    let _ =
        writeln!(r, "\n| family (evidence only) | scenarios | final states right | false accepts | false rejects |");
    let _ = writeln!(r, "|---|---|---|---|---|");
    for (c, (n, right, fa, fr)) in &by_category {
        let _ = writeln!(r, "| {c} | {n} | {right} | {fa} | {fr} |");
    }
    let _ = writeln!(r, "\n| scenario | what the model does | human | expected | evidence only | with the LLM |");
    let _ = writeln!(r, "|---|---|---|---|---|---|");
    for e in evidence {
        let mark = |o: &Outcome| {
            let flag = if o.false_accept() {
                " **FALSE ACCEPT**"
            } else if !o.state_right() {
                " (wrong)"
            } else {
                ""
            };
            format!("{} [{}]{flag}", o.state, o.decisions.join(", "))
        };
        let _ = writeln!(
            r,
            "| {}{} | {}: {} | {} | {} [{}] | {} | {} |",
            e.name,
            if e.held_out { " (held out)" } else { "" },
            e.category,
            e.summary,
            if e.acceptable { "accept" } else { "reject" },
            e.expected_state,
            e.expected.join(", "),
            mark(e),
            llm.iter().find(|o| o.name == e.name).map(mark).unwrap_or_else(|| "not played".into())
        );
    }
    r
}

#[test]
fn the_evaluation_corpus_is_decided_right() {
    let claude = support::claude();
    let filter = std::env::var("EVAL_FILTER").unwrap_or_default();
    // `EVAL_FILTER=a,b`: the scenarios whose name contains any of the parts.
    // `EVAL_HELD_OUT=0`: leave the held-out scenarios unplayed (while the judgement is still being worked on).
    let skip_held_out = std::env::var("EVAL_HELD_OUT").as_deref() == Ok("0");
    let corpus: Vec<(String, Case)> = corpus()
        .into_iter()
        .filter(|(n, c)| filter.split(',').any(|f| n.contains(f)) && !(skip_held_out && c.held_out))
        .collect();
    assert!(
        !filter.is_empty() || corpus.len() >= 120,
        "the corpus has {} scenarios; it needs at least 120",
        corpus.len()
    );
    let corpus = Arc::new(corpus);
    let evidence = play_all(&corpus, &claude, None);
    // The LLM pass costs a review per attempt on 2 cores: by default it plays a fixed quarter of the corpus (by name
    // order, so every family is in it); `EVAL_LLM=held-out` the held-out scenarios, `EVAL_LLM=all` all of them.
    let llm = match std::env::var("EVAL_LLM").as_deref() {
        Ok("0") => Vec::new(),
        mode => {
            let (all, held_out) = (mode == Ok("all"), mode == Ok("held-out"));
            let sample: Vec<(String, Case)> = corpus
                .iter()
                .enumerate()
                .filter(|(i, (_, c))| all || if held_out { c.held_out } else { i % 4 == 0 })
                .map(|(_, (n, c))| (n.clone(), c.clone()))
                .collect();
            let server = support::LlamaServer::start();
            let llm = play_all(&Arc::new(sample), &claude, Some(&server.url));
            drop(server);
            llm
        }
    };
    let text = report(&evidence, &llm);
    println!("{text}");
    let _ = std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/eval-report.md"), &text);
    let mut failures = Vec::new();
    for o in &evidence {
        if !o.state_right() || o.decisions != o.expected {
            failures.push(format!(
                "{} (evidence only): ended {} after [{}]; expected {} after [{}]",
                o.name,
                o.state,
                o.decisions.join(", "),
                o.expected_state,
                o.expected.join(", ")
            ));
        }
    }
    for (pass, outcomes) in [("evidence only", &evidence), ("with the LLM", &llm)] {
        for o in outcomes.iter() {
            if o.false_accept() {
                failures.push(format!("{} ({pass}): FALSE ACCEPT — completed work a human would reject", o.name));
            }
            if o.attempts == 0 {
                failures.push(format!("{} ({pass}): no attempt was recorded", o.name));
            }
            for p in &o.problems {
                failures.push(format!("{} ({pass}): {p}", o.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}\n\n{text}", failures.join("\n"));
}
