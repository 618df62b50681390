//! Property tests of the journal: every event kind round-trips through the record format, replaying a random run
//! gives exactly the live projection (and the one persisted beside the events), and damage is reported, never a
//! panic.

use orch_actors::journal::codec;
use orch_actors::journal::event::*;
use orch_actors::journal::{EventFilter, Journal, State};
use orch_actors::types::{ChangeKind, ContentHash, Decision, Factor, Finding, Severity, TaskSpec, TaskState};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("api".to_string()), Just("web".to_string()), "[a-z]{1,6}"]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", Just(String::new()), Just("multi\nline ✓ 'quoted' \"text\"".to_string())]
}

fn state() -> impl Strategy<Value = TaskState> {
    prop::sample::select(TaskState::ALL.to_vec())
}

fn decision() -> impl Strategy<Value = Decision> {
    prop::sample::select(vec![Decision::Proceed, Decision::Retry, Decision::Clarify, Decision::Escalate])
}

fn hash() -> impl Strategy<Value = ContentHash> {
    any::<[u8; 32]>().prop_map(ContentHash)
}

fn spec(project: String, id: String) -> impl Strategy<Value = TaskSpec> {
    (text(), text(), 1u8..=10, prop::collection::vec(name(), 0..3), prop::collection::vec(text(), 0..3)).prop_map(
        move |(title, description, priority, depends_on, acceptance)| TaskSpec {
            project: project.clone(),
            id: id.clone(),
            title,
            description,
            priority,
            depends_on,
            acceptance,
        },
    )
}

/// Any event about `project/task`, attempt numbers in 1..=3.
fn event_about(project: String, task: String) -> impl Strategy<Value = Event> {
    let (p, t) = (project.clone(), task.clone());
    let a = 1u32..=3;
    prop_oneof![
        (text(), prop::collection::vec(text(), 0..3)).prop_map({
            let p = p.clone();
            move |(workspace, checks)| {
                Event::ProjectRegistered(ProjectRegistered { project: p.clone(), workspace, checks })
            }
        }),
        spec(p.clone(), t.clone()).prop_map(|spec| Event::TaskAdded(TaskAdded { spec, source: "config".into() })),
        spec(p.clone(), t.clone()).prop_map(|spec| Event::TaskUpdated(TaskUpdated { spec })),
        (any::<u32>(), prop::collection::vec(text(), 0..3))
            .prop_map(|(pid, selected)| Event::RunStarted(RunStarted { pid, selected })),
        (text(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(outcome, completed, needs_human, cancelled)| {
            Event::RunFinished(RunFinished { outcome, completed, needs_human, cancelled })
        }),
        (a.clone(), text(), text(), prop::option::of(any::<u32>()), text(), prop::option::of(text())).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, agent, program, prompt_tokens, prompt_excerpt, resume_session)| {
                Event::AttemptStarted(AttemptStarted {
                    project: p.clone(),
                    task: t.clone(),
                    attempt,
                    agent,
                    program,
                    prompt_tokens,
                    prompt_bytes: prompt_excerpt.len() as u32,
                    prompt_excerpt,
                    resume_session,
                })
            }
        }),
        (a.clone(), text(), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, stream, text)| {
                Event::AgentOutput(AgentOutput { project: p.clone(), task: t.clone(), attempt, stream, text })
            }
        }),
        (
            a.clone(),
            prop::option::of(any::<i32>()),
            prop::option::of(any::<i32>()),
            prop::sample::select(vec!["none", "wall_clock", "idle"]),
            any::<u64>(),
            any::<u64>(),
            text(),
            prop::option::of(text())
        )
            .prop_map({
                let (p, t) = (p.clone(), t.clone());
                move |(attempt, exit_code, signal, timeout, duration_ms, bytes, result, session_id)| {
                    Event::AgentExited(AgentExited {
                        project: p.clone(),
                        task: t.clone(),
                        attempt,
                        exit_code,
                        signal,
                        timeout: timeout.into(),
                        duration_ms,
                        duration_us: duration_ms.saturating_mul(1000),
                        stdout_bytes: bytes,
                        stderr_bytes: bytes / 2,
                        result,
                        session_id,
                        report: (duration_ms % 2 == 0).then(|| orch_actors::types::AgentReport {
                            subtype: "success".into(),
                            is_error: duration_ms % 3 == 0,
                            num_turns: 3,
                            input_tokens: bytes,
                            output_tokens: bytes / 3,
                            cache_creation_tokens: 1,
                            cache_read_tokens: 2,
                            cost_usd: 0.25,
                            permission_denials: vec!["Bash: rm -rf /".into()],
                            terminal_reason: "completed".into(),
                            api_error_status: Some(529),
                        }),
                        tool_calls: 2,
                        orphans_killed: 1,
                        unparsed_lines: 0,
                    })
                }
            }),
        (
            a.clone(),
            text(),
            prop::sample::select(vec![ChangeKind::Created, ChangeKind::Modified, ChangeKind::Deleted]),
            prop::option::of(hash()),
            prop::option::of(hash()),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map({
                let (p, t) = (p.clone(), t.clone());
                move |(attempt, path, change, before, after, size, live)| {
                    let c =
                        FileChanged { project: p.clone(), task: t.clone(), attempt, path, change, before, after, size };
                    if live {
                        Event::FileTouched(c)
                    } else {
                        Event::FileChanged(c)
                    }
                }
            }),
        (a.clone(), any::<bool>(), prop::collection::vec((text(), text()), 0..3)).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, ok, f)| {
                Event::Validated(Validated {
                    project: p.clone(),
                    task: t.clone(),
                    attempt,
                    ok,
                    findings: f
                        .into_iter()
                        .map(|(code, message)| Finding { code, severity: Severity::Warning, message })
                        .collect(),
                })
            }
        }),
        (a.clone(), text(), any::<bool>(), prop::option::of(any::<i32>()), any::<bool>(), any::<u64>(), text())
            .prop_map({
                let (p, t) = (p.clone(), t.clone());
                move |(attempt, command, passed, exit_code, timed_out, duration_ms, output_tail)| {
                    Event::CheckFinished(CheckFinished {
                        project: p.clone(),
                        task: t.clone(),
                        attempt,
                        command,
                        passed,
                        exit_code,
                        timed_out,
                        duration_ms,
                        duration_us: duration_ms / 3,
                        output_tail,
                    })
                }
            }),
        (a.clone(), 0.0f64..=1.0, prop::collection::vec((text(), 0.0f64..=1.0, 0.0f64..=1.0, text()), 0..4)).prop_map(
            {
                let (p, t) = (p.clone(), t.clone());
                move |(attempt, score, fs)| {
                    Event::Scored(Scored {
                        project: p.clone(),
                        task: t.clone(),
                        attempt,
                        score,
                        factors: fs
                            .into_iter()
                            .map(|(name, value, weight, detail)| Factor { name, value, weight, detail })
                            .collect(),
                    })
                }
            }
        ),
        (a.clone(), decision(), text(), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, decision, reason, feedback)| {
                Event::Decided(Decided { project: p.clone(), task: t.clone(), attempt, decision, reason, feedback })
            }
        }),
        (state(), state(), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(from, to, reason)| {
                Event::TaskStateChanged(TaskStateChanged { project: p.clone(), task: t.clone(), from, to, reason })
            }
        }),
        (a.clone(), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, reason)| {
                Event::AttemptInterrupted(AttemptInterrupted { project: p.clone(), task: t.clone(), attempt, reason })
            }
        }),
        text().prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |answer| Event::HumanAnswered(HumanAnswered { project: p.clone(), task: t.clone(), answer })
        }),
        (prop::sample::select(vec!["approve", "reject", "cancel"]), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(verdict, reason)| {
                Event::HumanVerdict(HumanVerdict {
                    project: p.clone(),
                    task: t.clone(),
                    verdict: verdict.into(),
                    reason,
                })
            }
        }),
        (a.clone(), text(), text(), text(), any::<u32>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, purpose, outcome, error, try_number, tokens, latency_us, scoped)| {
                Event::LlmCalled(LlmCalled {
                    project: scoped.then(|| p.clone()),
                    task: scoped.then(|| t.clone()),
                    attempt: scoped.then_some(attempt),
                    purpose,
                    provider: "openai".into(),
                    model: "smollm2".into(),
                    outcome,
                    try_number,
                    prompt_tokens: tokens,
                    completion_tokens: tokens / 7,
                    latency_us,
                    error,
                })
            }
        }),
        (a.clone(), any::<bool>(), 0u32..=100, prop::collection::vec(text(), 0..3), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, available, score, issues, error)| {
                Event::Reviewed(Reviewed {
                    project: p.clone(),
                    task: t.clone(),
                    attempt,
                    available,
                    verdict: if available { "accept".into() } else { String::new() },
                    score,
                    unmet_acceptance: issues.iter().rev().cloned().collect(),
                    issues,
                    error,
                })
            }
        }),
        (a.clone(), text(), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, breakpoint, detail)| {
                Event::BreakpointHit(BreakpointHit { project: p.clone(), task: t.clone(), attempt, breakpoint, detail })
            }
        }),
        (a.clone(), text(), text()).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(attempt, question, answer)| {
                Event::LlmAnswered(LlmAnswered { project: p.clone(), task: t.clone(), attempt, question, answer })
            }
        }),
        (any::<bool>(), any::<bool>(), text(), prop_oneof![Just("command"), Just("webhook")]).prop_map({
            let (p, t) = (p.clone(), t.clone());
            move |(scoped, ok, error, channel)| {
                Event::Notified(Notified {
                    project: scoped.then(|| p.clone()),
                    task: scoped.then(|| t.clone()),
                    about: if scoped { "task_escalated".into() } else { "run_finished".into() },
                    channel: channel.into(),
                    ok,
                    error,
                })
            }
        }),
        (1u32..=3, prop::collection::vec(text(), 0..3), prop::collection::vec(text(), 0..2)).prop_map(
            move |(from_attempt, restored, conflicts)| {
                Event::RolledBack(RolledBack {
                    project: project.clone(),
                    task: task.clone(),
                    from_attempt,
                    restored,
                    conflicts,
                })
            }
        ),
    ]
}

fn any_event() -> impl Strategy<Value = Event> {
    (name(), name()).prop_flat_map(|(p, t)| event_about(p, t))
}

/// A plausible run: tasks are added first, then random events about them.
fn random_run() -> impl Strategy<Value = Vec<Event>> {
    let keys = vec![("api", "a"), ("api", "b"), ("web", "c")];
    let adds: Vec<BoxedStrategy<Event>> = keys
        .iter()
        .map(|(p, t)| {
            spec(p.to_string(), t.to_string())
                .prop_map(|spec| Event::TaskAdded(TaskAdded { spec, source: "config".into() }))
                .boxed()
        })
        .collect();
    let body = prop::collection::vec(
        prop::sample::select(keys).prop_flat_map(|(p, t)| event_about(p.to_string(), t.to_string())),
        0..60,
    );
    (adds, body).prop_map(|(mut adds, body)| {
        adds.extend(body);
        adds
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_event_kind_round_trips(event in any_event(), time_us in any::<i64>(), seq in 1u64..u64::MAX) {
        let bytes = codec::encode_event(time_us, &event).expect("encodes");
        let back = codec::decode_event(seq, &bytes).expect("decodes");
        prop_assert_eq!(back.seq, seq);
        prop_assert_eq!(back.time_us, time_us);
        prop_assert_eq!(&back.event, &event);
        let header = codec::decode_header(&bytes).expect("header");
        prop_assert_eq!(header.kind, event.kind_code());
        let key = codec::scope_key(&event);
        prop_assert_eq!(header.scope_key, key.as_bytes());
    }

    #[test]
    fn any_flipped_byte_is_detected(event in any_event(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = codec::encode_event(0, &event).expect("encodes");
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(codec::decode_event(1, &bytes).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_the_live_projection(events in random_run(), split in 1usize..8) {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = {
            let mut j = Journal::open(dir.path(), true).expect("open");
            // Appended in several batches, as a run would.
            let chunk = events.len().div_ceil(split).max(1);
            for c in events.chunks(chunk) {
                j.append(c.to_vec()).expect("append");
            }
            j.flush().expect("flush");
            j.state().clone()
        };
        // sled lets go of its lock from a background thread, a moment after the handle is dropped.
        prop_assert!(Journal::wait_released(dir.path(), std::time::Duration::from_secs(10)));
        let j = Journal::open(dir.path(), false).expect("reopen");
        let records: Vec<_> = j.scan(EventFilter::default()).collect::<Result<_, _>>().expect("scan");
        prop_assert_eq!(records.len(), events.len());
        let rebuilt = State::rebuild(records.iter());
        prop_assert_eq!(&rebuilt, &live);
        prop_assert_eq!(j.state(), &live);
        prop_assert!(j.verify().expect("verify").is_whole());
    }
}

#[test]
fn damaged_and_missing_records_are_reported_with_their_sequence() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut j = Journal::open(dir.path(), true)?;
    let ev = |i: u32| {
        Event::RunFinished(RunFinished { outcome: format!("o{i}"), completed: i, needs_human: 0, cancelled: 0 })
    };
    j.append((0..5).map(ev).collect())?;
    j.flush()?;
    let mut raw = j.raw_event_for_tests(3).ok_or("event 3")?;
    let last = raw.len() - 1;
    raw[last] ^= 0xff;
    j.corrupt_event_for_tests(3, &raw)?;
    let mut unknown = j.raw_event_for_tests(4).ok_or("event 4")?;
    unknown[0] = 99;
    j.corrupt_event_for_tests(4, &unknown)?;
    j.corrupt_event_for_tests(9, &codec::encode_event(0, &ev(9))?)?;
    let report = j.verify()?;
    let about: Vec<&str> = report.problems.iter().map(|p| p.about.as_str()).collect();
    assert_eq!(about, vec!["event 3", "event 4", "sequence"], "{:?}", report.problems);
    assert!(report.problems[0].what.contains("checksum"));
    assert!(report.problems[1].what.contains("unknown record format version 99"));
    assert!(report.problems[2].what.contains("events 6..=8 are missing"));
    // Scanning goes on past damage, naming it.
    let results: Vec<_> = j.scan(EventFilter::default()).collect();
    assert_eq!(results.len(), 6);
    assert!(results[2].as_ref().err().map(|e| e.to_string()).unwrap_or_default().contains("event 3"));
    Ok(())
}

#[test]
fn filters_select_by_task_project_kind_and_time() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut j = Journal::open(dir.path(), true)?;
    let answered = |p: &str, t: &str| {
        Event::HumanAnswered(HumanAnswered { project: p.into(), task: t.into(), answer: "x".into() })
    };
    j.append(vec![answered("api", "a"), answered("api", "ab"), answered("apix", "a"), answered("web", "a")])?;
    let count = |f: EventFilter| j.scan(f).count();
    let key = orch_actors::TaskKey::new("api", "a");
    assert_eq!(count(EventFilter { task: Some(key), ..EventFilter::default() }), 1);
    assert_eq!(count(EventFilter { project: Some("api".into()), ..EventFilter::default() }), 2);
    assert_eq!(count(EventFilter { kinds: vec![15], ..EventFilter::default() }), 4);
    assert_eq!(count(EventFilter { kinds: vec![0], ..EventFilter::default() }), 0);
    assert_eq!(count(EventFilter { since_ms: Some(i64::MAX), ..EventFilter::default() }), 0);
    assert_eq!(count(EventFilter { after_seq: 3, ..EventFilter::default() }), 1);
    Ok(())
}

#[test]
fn a_second_opener_is_told_the_journal_is_locked() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let _j = Journal::open(dir.path(), true)?;
    match Journal::open(dir.path(), false) {
        Err(orch_actors::JournalError::Locked { .. }) => Ok(()),
        Err(e) => Err(format!("expected Locked, got {e}").into()),
        Ok(_) => Err("a second open succeeded".into()),
    }
}

#[test]
fn opening_a_missing_journal_read_only_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Journal::open(&dir.path().join("nope"), false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("no journal at"), "{err}");
}

#[test]
fn every_change_to_a_task_view_is_persisted_even_for_an_attempt_it_does_not_know(
) -> Result<(), Box<dyn std::error::Error>> {
    // Each event that changes a task's view must mark it touched, or the view persisted for the next open
    // differs from the one a replay builds. A clarify about an attempt the view never saw started is one such.
    let dir = tempfile::tempdir()?;
    let spec = TaskSpec {
        project: "api".into(),
        id: "a".into(),
        title: String::new(),
        description: String::new(),
        priority: 1,
        depends_on: Vec::new(),
        acceptance: Vec::new(),
    };
    let started = |attempt| {
        Event::AttemptStarted(AttemptStarted {
            project: "api".into(),
            task: "a".into(),
            attempt,
            agent: String::new(),
            program: String::new(),
            prompt_tokens: None,
            prompt_bytes: 0,
            prompt_excerpt: String::new(),
            resume_session: None,
        })
    };
    let clarify = Event::Decided(Decided {
        project: "api".into(),
        task: "a".into(),
        attempt: 7,
        decision: Decision::Clarify,
        reason: String::new(),
        feedback: String::new(),
    });
    let live = {
        let mut j = Journal::open(dir.path(), true)?;
        j.append(vec![Event::TaskAdded(TaskAdded { spec, source: "config".into() }), started(1), started(2)])?;
        j.append(vec![clarify])?;
        j.flush()?;
        j.state().clone()
    };
    assert!(Journal::wait_released(dir.path(), std::time::Duration::from_secs(10)));
    let j = Journal::open(dir.path(), false)?;
    assert_eq!(j.state(), &live);
    Ok(())
}

#[test]
fn an_append_that_cannot_be_stored_changes_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut j = Journal::open(dir.path(), true)?;
    let answered =
        |task: String| Event::HumanAnswered(HumanAnswered { project: "p".into(), task, answer: "yes".into() });
    // The second event's scope key (its task id) is too long for a record: the whole append is refused.
    let err = j.append(vec![answered("ok".into()), answered("x".repeat(70_000))]).expect_err("too large");
    assert!(err.to_string().contains("event 2"), "{err}");
    assert!(!j.has_staged());
    assert_eq!(j.next_seq(), 1);
    let stored = j.append(vec![answered("ok".into())])?;
    assert_eq!(stored[0].seq, 1);
    j.flush()?;
    let report = j.verify()?;
    assert!(report.is_whole(), "{:?}", report.problems);
    assert_eq!(j.scan(EventFilter::default()).count(), 1);
    Ok(())
}

/// Keys that are the journal's own identifiers, left as they are by the redaction (see `Event::redacted`).
const IDENTIFIERS: [&str; 6] = ["project", "task", "id", "depends_on", "selected", "branch"];

/// Every string leaf of `v` outside the identifiers, as a JSON pointer.
fn string_leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(_) => out.push(at),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                string_leaves(x, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if !IDENTIFIERS.contains(&k.as_str()) {
                    string_leaves(x, format!("{at}/{k}"), out);
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever string of whatever event holds a secret — found through serde, not through the redaction's own list
    /// of fields, so a field it forgot fails here — what the journal stores and hands back holds none of it.
    #[test]
    fn a_secret_in_any_string_of_any_event_is_never_stored(
        event in any_event(),
        secret in "[A-Z0-9]{8,24}",
        encoded in any::<bool>(),
    ) {
        let mut value = serde_json::to_value(&event).expect("serializes");
        let mut leaves = Vec::new();
        string_leaves(&value, String::new(), &mut leaves);
        let shown = if encoded { secret.bytes().map(|b| format!("%{b:02x}")).collect() } else { secret.clone() };
        // Plant it in every leaf that stays a valid event with it (enum names and hashes do not).
        let mut planted = 0;
        for leaf in leaves {
            let mut tried = value.clone();
            if let Some(serde_json::Value::String(s)) = tried.pointer_mut(&leaf) {
                *s = format!("{s} {shown}\n{s}");
            }
            if serde_json::from_value::<Event>(tried.clone()).is_ok() {
                value = tried;
                planted += 1;
            }
        }
        let event: Event = serde_json::from_value(value).expect("still an event");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::open(dir.path(), true).expect("open");
        j.set_redactor(std::sync::Arc::new(orch_actors::redact::Redactor::new([&secret])));
        let staged = j.append(vec![event]).expect("appends");
        let stored: Vec<_> = j.scan(EventFilter::default()).collect::<Result<_, _>>().expect("reads");
        for rec in staged.iter().chain(&stored) {
            let mut text = Vec::new();
            string_leaves(&serde_json::to_value(&rec.event).expect("serializes"), String::new(), &mut text);
            let json = serde_json::to_value(&rec.event).expect("serializes");
            for leaf in text {
                let s = json.pointer(&leaf).and_then(|v| v.as_str()).unwrap_or_default();
                prop_assert!(!s.contains(&secret) && !s.contains(&shown), "{leaf} holds it: {s:?}");
            }
            prop_assert_eq!(json.to_string().matches(orch_actors::redact::MARKER).count() >= planted, true);
        }
    }
}
