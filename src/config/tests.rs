//! The loader, read as a user meets it: defaults, layers, and errors that name the line and the key.

use super::*;
use orch_actors::settings::OrchestrationSettings;

fn load_text(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().map_err(|e| ConfigError::flag("tempdir", e.to_string()))?;
    let p = dir.path().join("orch.toml");
    std::fs::write(&p, text).map_err(|e| ConfigError::flag("write", e.to_string()))?;
    load_with_env(Some(&p), env, &Overrides::default())
}

#[test]
fn the_defaults_are_config_default_toml_and_agree_with_the_engine() -> Result<(), ConfigError> {
    // Without a file, every value comes from config/default.toml; the engine's own defaults are the same.
    let c = load_with_env(None, &[], &Overrides::default())?;
    assert_eq!(c.settings.orchestration, orch_actors::settings::OrchestrationSettings::default());
    assert_eq!(c.settings.llm, orch_actors::settings::LlmSettings::default());
    assert_eq!(c.settings.notify, orch_actors::settings::NotifySettings::default());
    assert_eq!(c.settings.journal.durability, orch_actors::settings::Durability::Sync);
    assert!(c.settings.projects.is_empty());
    // A file that sets one key of a section keeps the defaults of the others.
    let c = load_text("[orchestration.decision]\nhigh_confidence = 0.9\n", &[])?;
    assert_eq!(c.settings.orchestration.decision.high_confidence, 0.9);
    assert_eq!(c.settings.orchestration.decision.medium_confidence, 0.65);
    assert_eq!(c.settings.orchestration.max_attempts, 3);
    Ok(())
}

#[test]
fn an_engine_rule_broken_by_the_second_of_two_projects_is_reported_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().display();
    let text = format!(
        "[[projects]]\nname = \"a\"\nworkspace = \"{ws}\"\n\n[[projects]]\nname = \"b\"\nworkspace = \"{ws}\"\n\
         max_sessions = 0\n[[projects.tasks]]\nid = \"t\"\ntitle = \"T\"\n[[projects.tasks]]\nid = \"t\"\ntitle = \"U\"\n"
    );
    let e = load_text(&text, &[]).expect_err("max_sessions = 0");
    assert_eq!((e.line, e.key.as_deref()), (Some(8), Some("projects.max_sessions")), "{e}");
    let e = load_text(&text.replace("max_sessions = 0", "max_sessions = 2"), &[]).expect_err("twice");
    assert_eq!((e.line, e.key.as_deref()), (Some(13), Some("projects.tasks.id")), "{e}");
    assert!(e.message.contains("defined twice"), "{e}");
    let text = text.replace("max_sessions = 0", "max_sessions = 2");
    let e =
        load_text(&text.replace("id = \"t\"\ntitle = \"T\"", "id = \"../x\"\ntitle = \"T\""), &[]).expect_err("bad id");
    assert_eq!((e.line, e.key.as_deref()), (Some(10), Some("projects.tasks.id")), "{e}");
}

#[test]
fn a_value_from_the_environment_is_blamed_on_its_variable() {
    let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let e = load_text("[orchestration]\nmax_sessions = 2\n", &env("ORCH_ORCHESTRATION__MAX_SESSIONS", "many"))
        .expect_err("not a number");
    assert_eq!(e.source, "environment variable ORCH_ORCHESTRATION__MAX_SESSIONS", "{e}");
    assert_eq!(e.line, None, "{e}");
    let e = load_text("", &env("ORCH_ORCHESTRATION__MAX_SESSIONS", "0")).expect_err("zero");
    assert_eq!(e.source, "environment variable ORCH_ORCHESTRATION__MAX_SESSIONS", "{e}");
    assert_eq!(e.key.as_deref(), Some("orchestration.max_sessions"), "{e}");
    let e = load_text("", &env("ORCH_AGENT__PROGRAMM", "claude")).expect_err("unknown key");
    assert_eq!(e.source, "environment variable ORCH_AGENT__PROGRAMM", "{e}");
    assert!(e.message.contains("programm"), "{e}");
    let e = load_text("", &env("ORCH_AGENT__PROGRAM__X", "claude")).expect_err("not a table");
    assert!(e.message.contains("`program` is not a table"), "{e}");
    // The file's own errors still name their line while the environment sets other keys.
    let e = load_text("[journal]\ndurability = \"often\"\n", &env("ORCH_AGENT__PROGRAM", "claude"))
        .expect_err("bad durability");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("journal.durability")), "{e}");
}

#[test]
fn the_engine_defaults_are_the_config_defaults() -> Result<(), ConfigError> {
    let c = load_text(DEFAULT_TOML, &[])?;
    assert_eq!(c.settings.orchestration, OrchestrationSettings::default());
    Ok(())
}

#[test]
fn containment_is_read_from_the_file_and_the_environment_and_checked() -> Result<(), ConfigError> {
    use orch_actors::settings::Containment;
    assert_eq!(load_text("", &[])?.settings.orchestration.containment, Containment::Auto);
    let c = load_text("[orchestration]\ncontainment = \"tags\"\n", &[])?;
    assert_eq!(c.settings.orchestration.containment, Containment::Tags);
    let env = vec![("ORCH_ORCHESTRATION__CONTAINMENT".to_string(), "tags".to_string())];
    assert_eq!(load_text("", &env)?.settings.orchestration.containment, Containment::Tags);
    let e = load_text("[orchestration]\ncontainment = \"docker\"\n", &[]).expect_err("unknown containment");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("orchestration.containment")), "{e}");
    assert!(e.message.contains("auto") && e.message.contains("tags"), "{e}");
    Ok(())
}

#[test]
fn an_unknown_table_is_named_not_the_table_before_it() {
    let e = load_text("[journal]\npath = \"j\"\n\n[[hostz]]\nname = \"a\"\n", &[]).expect_err("unknown table");
    assert_eq!(e.line, Some(4), "{e}");
    assert_eq!(e.key.as_deref(), Some("hostz"), "{e}");
}

#[test]
fn judgement_keys_are_read_and_their_globs_checked() -> Result<(), ConfigError> {
    let dir = tempfile::tempdir().map_err(|e| ConfigError::flag("tempdir", e.to_string()))?;
    std::fs::create_dir_all(dir.path().join("ws")).map_err(|e| ConfigError::flag("mkdir", e.to_string()))?;
    let p = dir.path().join("orch.toml");
    let load = |text: &str| {
        std::fs::write(&p, text).expect("write");
        load_with_env(Some(&p), &[], &Overrides::default())
    };
    let c = load(
        "[agent]\nsandbox = \"none\"\nwritable = [\"shared\"]\nsandbox_required = true\n[[projects]]\nname = \"p\"\n\
         workspace = \"ws\"\nprotected = [\"tests/**\"]\nscope = [\"src/**\"]\n[[projects.tasks]]\nid = \"t\"\n\
         title = \"T\"\nscope = [\"src/a/**\"]\nmay_change = [\"tests/a.py\"]\n",
    )?;
    let project = &c.settings.projects[0];
    assert_eq!(project.judgement.protected, Some(vec!["tests/**".to_string()]));
    assert_eq!(project.judgement.scope, vec!["src/**".to_string()]);
    assert_eq!(project.judgement.tasks["t"].may_change, vec!["tests/a.py".to_string()]);
    assert_eq!(project.agent.sandbox.mode, orch_actors::settings::SandboxMode::None);
    assert_eq!(project.agent.sandbox.writable, vec![dir.path().join("shared")]);
    assert!(project.agent.sandbox.required);
    let e = load("[[projects]]\nname = \"p\"\nworkspace = \"ws\"\nprotected = [\"tests/[\"]\n").expect_err("bad glob");
    assert!(e.message.contains("`tests/[` is not a glob") && e.line == Some(4), "{e}");
    assert_eq!(e.key.as_deref(), Some("projects.protected"), "{e}");
    let e = load("[agent]\nsandbox = \"docker\"\n").expect_err("unknown sandbox");
    assert_eq!(e.line, Some(2), "{e}");
    Ok(())
}

#[test]
fn prompt_templates_are_read_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("good.md"), "Do this: {description}\n({task})\n").expect("write");
    std::fs::write(dir.path().join("bad.md"), "# {title}\n{descripton}\n").expect("write");
    std::fs::write(dir.path().join("none.md"), "# {title}\n").expect("write");
    let p = dir.path().join("orch.toml");
    let load = |prompts: &str| {
        std::fs::write(&p, format!("[prompts]\n{prompts}\n")).expect("write");
        load_with_env(Some(&p), &[], &Overrides::default())
    };
    let c = load("attempt = \"good.md\"\nreview = \"good.md\"").expect("loads");
    assert_eq!(c.settings.orchestration.prompts.attempt, "Do this: {description}\n({task})\n");
    let e = load("attempt = \"bad.md\"").expect_err("unknown placeholder");
    assert!(e.source.ends_with("bad.md") && e.line == Some(2) && e.message.contains("{descripton}"), "{e}");
    let e = load("attempt = \"none.md\"").expect_err("no description");
    assert!(e.message.contains("has no {description}"), "{e}");
    let e = load("attempt = \"missing.md\"").expect_err("missing file");
    assert_eq!(e.line, Some(2));
}

#[test]
fn misspelled_key_names_line_and_key() {
    let err = load_text("[orchestration]\nmax_sessions = 2\nmax_atempts = 3\n", &[]).expect_err("must fail");
    assert_eq!(err.line, Some(3));
    assert_eq!(err.key.as_deref(), Some("orchestration.max_atempts"));
    assert!(err.message.contains("unknown field `max_atempts`"), "{}", err.message);
}

#[test]
fn on_retry_is_keep_or_rollback() {
    let project = "[[projects]]\nname = \"p\"\nworkspace = \".\"\n";
    let c = load_text(&format!("{project}on_retry = \"rollback\"\n"), &[]).expect("valid");
    assert_eq!(c.settings.projects[0].on_retry, orch_actors::settings::OnRetry::Rollback);
    let c = load_text(project, &[]).expect("valid");
    assert_eq!(c.settings.projects[0].on_retry, orch_actors::settings::OnRetry::Keep);
    let err = load_text(&format!("{project}on_retry = \"undo\"\n"), &[]).expect_err("must fail");
    assert_eq!(err.line, Some(4));
    assert!(err.message.contains("unknown variant `undo`, expected `keep` or `rollback`"), "{}", err.message);
}

#[test]
fn notify_takes_a_command_and_an_http_webhook() {
    let c = load_text("[notify]\ncommand = \"cat\"\nwebhook = \"https://hooks.example/x\"\n", &[]).expect("valid");
    assert_eq!(c.settings.notify.webhook, "https://hooks.example/x");
    assert!(c.settings.notify.enabled());
    let err = load_text("[notify]\nwebhook = \"hooks.example/x\"\n", &[]).expect_err("must fail");
    assert_eq!((err.line, err.key.as_deref()), (Some(2), Some("notify.webhook")));
    assert!(err.message.contains("not an http:// or https:// URL"), "{}", err.message);
}

#[test]
fn worktree_isolation_needs_a_repository_and_merge_needs_worktrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().display().to_string();
    let project = format!("[[projects]]\nname = \"p\"\nworkspace = \"{ws}\"\n");
    let err = load_text(&format!("{project}isolation = \"worktree\"\n"), &[]).expect_err("not a repository");
    assert_eq!((err.line, err.key.as_deref()), (Some(4), Some("projects.isolation")));
    assert!(err.message.contains("needs a git repository"), "{}", err.message);
    let err = load_text(&format!("{project}merge = \"fast-forward\"\n"), &[]).expect_err("merge without worktree");
    assert_eq!(err.key.as_deref(), Some("projects.merge"));
    let err = load_text(&format!("{project}isolation = \"chroot\"\n"), &[]).expect_err("unknown");
    assert!(err.message.contains("unknown variant `chroot`"), "{}", err.message);
}

#[test]
fn wrong_type_names_line_and_key() {
    let err = load_text("[journal]\ndurability = 5\n", &[]).expect_err("must fail");
    assert_eq!(err.line, Some(2));
    assert_eq!(err.key.as_deref(), Some("journal.durability"));
}

#[test]
fn impossible_value_names_line_and_key() {
    let err = load_text("[orchestration.decision]\nhigh_confidence = 0.5\nmedium_confidence = 0.9\n", &[])
        .expect_err("must fail");
    assert_eq!(err.line, Some(3));
    assert_eq!(err.key.as_deref(), Some("orchestration.decision.medium_confidence"));
}

#[test]
fn environment_overrides_the_file() -> Result<(), ConfigError> {
    let env = vec![
        ("ORCH_ORCHESTRATION__MAX_SESSIONS".to_string(), "7".to_string()),
        ("ORCH_PROJECT".to_string(), "not config".to_string()),
    ];
    let c = load_text("[orchestration]\nmax_sessions = 2\n", &env)?;
    assert_eq!(c.settings.orchestration.max_sessions, 7);
    Ok(())
}

#[test]
fn bad_environment_value_names_the_variable() {
    let env = vec![("ORCH_JOURNAL__DURABILITY".to_string(), "sometimes".to_string())];
    let err = load_text("", &env).expect_err("must fail");
    assert_eq!(err.key.as_deref(), Some("journal.durability"));
}

#[test]
fn unknown_dependency_is_an_error_with_its_line() {
    let text = "[[projects]]\nname = \"a\"\nworkspace = \".\"\n[[projects.tasks]]\nid = \"x\"\ntitle = \"X\"\ndepends_on = [\"nope\"]\n";
    let err = load_text(text, &[]).expect_err("must fail");
    assert_eq!(err.line, Some(7));
    assert!(err.message.contains("a/nope"));
}

#[test]
fn an_unset_llm_key_matters_only_to_what_calls_the_llm() -> Result<(), ConfigError> {
    let text = "[llm]\nprovider = \"openai\"\napi_key_env = \"ORCH_TEST_KEY\"\n";
    let c = load_text(text, &[])?;
    let e = c.llm_key_missing.expect("the key is missing");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("llm.api_key_env")), "{e}");
    assert!(e.message.contains("`ORCH_TEST_KEY`"), "{e}");
    let c = load_text(text, &[("ORCH_TEST_KEY".into(), "sk-test-123456".into())])?;
    assert!(c.llm_key_missing.is_none());
    assert_eq!(c.settings.llm.api_key.as_deref(), Some("sk-test-123456"));
    // No LLM, no key needed.
    let c = load_text("[llm]\napi_key_env = \"ORCH_TEST_KEY\"\n", &[])?;
    assert!(c.llm_key_missing.is_none());
    Ok(())
}
