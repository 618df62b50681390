//! Which paths the checks judge by (protected), which belong to a task (scope, named in its text), and which are
//! build by-products that no rule looks at.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Where tests live in the common ecosystems: modifying or deleting one that existed is tampering with the checks.
pub const TEST_LOCATIONS: &[&str] = &[
    "tests/**",
    "test/**",
    "spec/**",
    "**/tests/**",
    "**/test/**",
    "**/spec/**",
    "**/__tests__/**",
    "**/test_*.py",
    "**/*_test.py",
    "**/*_test.go",
    "**/*.test.*",
    "**/*.spec.*",
    "**/*_spec.rb",
    "**/*Test.java",
    "**/*Tests.cs",
    "**/testdata/**",
];

/// Test-runner configuration: creating one is tampering too (a new `conftest.py` can deselect every test).
pub const RUNNER_CONFIG: &[&str] = &[
    "**/conftest.py",
    "pytest.ini",
    "tox.ini",
    "setup.cfg",
    ".coveragerc",
    "noxfile.py",
    "jest.config.*",
    "vitest.config.*",
    ".mocharc*",
    "karma.conf.*",
    "phpunit.xml*",
    ".rspec",
];

/// Continuous-integration definitions.
pub const CI: &[&str] = &[
    ".github/**",
    ".gitlab-ci.yml",
    ".gitlab/**",
    ".circleci/**",
    "Jenkinsfile",
    ".travis.yml",
    "azure-pipelines.yml",
    ".buildkite/**",
    ".drone.yml",
    "bitbucket-pipelines.yml",
    ".woodpecker.yml",
    ".woodpecker/**",
];

/// By-products of building and testing, never judged: caches, compiled files, dependencies.
pub const GENERATED: &[&str] = &[
    "**/__pycache__/**",
    "**/*.pyc",
    "**/.pytest_cache/**",
    "**/.mypy_cache/**",
    "**/.ruff_cache/**",
    "**/.tox/**",
    "**/.nox/**",
    "**/node_modules/**",
    "**/*.egg-info/**",
    "**/.coverage",
    "**/.coverage.*",
    "target/**",
];

/// Programs whose configuration file is what a check line running them judges by.
const PROGRAM_FILES: &[(&str, &[&str])] = &[
    ("make", &["Makefile", "makefile", "GNUmakefile"]),
    ("just", &["justfile", "Justfile"]),
    ("tox", &["tox.ini"]),
    ("nox", &["noxfile.py"]),
    ("pytest", &["pytest.ini", "**/conftest.py"]),
];

/// A glob as orch reads them: relative to the workspace, `*` stays within one directory, `**` crosses them.
pub fn glob(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .map_err(|e| format!("`{pattern}` is not a glob: {e}"))
}

/// The globs as one set.
/// Compiling a glob set costs about a millisecond; every attempt of a project asks for the same few sets, so they
/// are compiled once per process and shared (a set is cheap to clone).
pub fn set<S: AsRef<str>>(patterns: &[S]) -> Result<GlobSet, String> {
    type Cache = std::sync::Mutex<std::collections::HashMap<Vec<String>, GlobSet>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let key: Vec<String> = patterns.iter().map(|p| p.as_ref().to_string()).collect();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(set) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(set);
    }
    let mut b = GlobSetBuilder::new();
    for p in &key {
        b.add(glob(p)?);
    }
    let set = b.build().map_err(|e| e.to_string())?;
    if let Ok(mut c) = cache.lock() {
        // Bounded: a long-lived embedder with ever-new patterns does not grow it without end.
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, set.clone());
    }
    Ok(set)
}

/// Splits a shell line into words, roughly as `sh` does for plain words and quotes (no expansion); operators
/// (`;`, `&&`, `|`, redirections) become words of their own.
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            Some(_) => cur.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    has = true;
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                        has = true;
                    }
                }
                c if c.is_whitespace() => {
                    if has || !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                        has = false;
                    }
                    if c == '\n' {
                        words.push(";".into());
                    }
                }
                ';' | '|' | '&' | '(' | ')' | '<' | '>' => {
                    // `2>`, `&>`: a redirection's file descriptor belongs to the operator.
                    let fd = (c == '>' || c == '<') && !cur.is_empty() && cur.chars().all(|d| d.is_ascii_digit());
                    if (has || !cur.is_empty()) && !fd {
                        words.push(std::mem::take(&mut cur));
                        has = false;
                    }
                    let mut op = std::mem::take(&mut cur);
                    op.push(c);
                    while let Some(&n) = chars.peek() {
                        if matches!(n, '|' | '&' | '>' | '<') && op.len() < 3 {
                            op.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    words.push(op);
                }
                _ => cur.push(c),
            },
        }
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Whether a shell word is an operator that ends a simple command.
pub fn is_separator(word: &str) -> bool {
    matches!(word, ";" | "&&" | "||" | "|" | "&" | "(" | ")" | "|&")
}

/// Whether a shell word is a redirection operator (its target is the next word).
pub fn is_redirection(word: &str) -> bool {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    matches!(w, ">" | ">>" | ">|" | "&>" | "&>>" | ">&")
}

/// The files and directories a check line names that exist in the workspace, as globs (`check.sh`, `tests/**`),
/// with the configuration files of the programs it runs.
pub fn named_by_check(line: &str, workspace: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut at_command = true;
    let mut after_cd = false;
    for word in shell_words(line) {
        if is_separator(&word) {
            at_command = true;
            continue;
        }
        // `PYTHONPATH=src cmd`: an assignment names an environment, not a file the check judges by.
        let assignment = word
            .split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if at_command && assignment {
            continue;
        }
        let program = at_command.then(|| word.rsplit('/').next().unwrap_or(&word).to_string());
        at_command = false;
        // `cd src`: where the check runs, not what it judges by.
        if std::mem::replace(&mut after_cd, program.as_deref() == Some("cd")) {
            continue;
        }
        if let Some(p) = program.as_deref() {
            for (name, files) in PROGRAM_FILES {
                if p == *name || (p.starts_with("python") && *name == "pytest" && line.contains("pytest")) {
                    out.extend(files.iter().map(|f| f.to_string()));
                }
            }
        }
        // A flag's value (`--rootdir=tests`, `-s tests` is a word of its own).
        let candidate = word.rsplit_once('=').map(|(_, v)| v).unwrap_or(&word);
        let candidate = candidate.trim_start_matches("./").trim_end_matches('/');
        if candidate.is_empty()
            || candidate.starts_with('-')
            || candidate.starts_with('/')
            || candidate.split('/').any(|c| c == ".." || c == "." || c.is_empty())
            || candidate.contains(['*', '?', '$', '`'])
        {
            continue;
        }
        // `tests/test_calc.py::test_add` names the file.
        let candidate = candidate.split("::").next().unwrap_or(candidate);
        let path = workspace.join(candidate);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => out.push(format!("{candidate}/**")),
            Ok(_) => out.push(candidate.to_string()),
            Err(_) => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The default protected paths of a project: what its checks name, the usual test locations, runner configuration
/// and CI definitions.
pub fn default_protected(checks: &[String], workspace: &Path) -> Vec<String> {
    let mut out: Vec<String> = checks.iter().flat_map(|c| named_by_check(c, workspace)).collect();
    out.extend(TEST_LOCATIONS.iter().chain(RUNNER_CONFIG).chain(CI).map(|s| s.to_string()));
    out.sort();
    out.dedup();
    out
}

/// Files protected only because a check command names them (a data file the check reads, say), which the task's
/// own text names: the task is to change them. Test locations, runner configuration and CI definitions are never
/// freed this way (a task that says "make tests/test_calc.py pass" may not edit it); `may_change` does that.
pub fn freed_by_task(checks: &[String], workspace: &Path, task_text: &str) -> Vec<String> {
    let Ok(kinds) = set(&TEST_LOCATIONS.iter().chain(RUNNER_CONFIG).chain(CI).collect::<Vec<_>>()) else {
        return Vec::new();
    };
    checks
        .iter()
        .flat_map(|c| named_by_check(c, workspace))
        .filter(|p| !p.contains('*') && !kinds.is_match(p) && is_data(p) && named_by_task(p, task_text))
        .collect()
}

/// Whether a file is data a check reads rather than code a check runs (by its extension).
fn is_data(path: &str) -> bool {
    const DATA: &[&str] =
        &["json", "yaml", "yml", "toml", "txt", "csv", "tsv", "md", "rst", "xml", "html", "ini", "cfg", "conf"];
    path.rsplit_once('.').is_some_and(|(_, ext)| DATA.contains(&ext.to_ascii_lowercase().as_str()))
}

/// What protects a task's checks: the protected paths, which of them count even when newly created (runner
/// configuration and the files the checks name), and what the task may change anyway.
#[derive(Debug, Clone)]
pub struct Protection {
    /// The globs, as configured or derived (shown to the agent and in findings).
    pub patterns: Vec<String>,
    /// The globs the task may change although protected.
    pub may_change: Vec<String>,
    protected: GlobSet,
    created_counts: GlobSet,
    may_change_set: GlobSet,
    generated: GlobSet,
}

impl Protection {
    /// The protection of a task: `patterns` protected, `may_change` allowed; runner configuration counts when
    /// created, too.
    pub fn new(patterns: Vec<String>, may_change: &[String]) -> Result<Self, String> {
        // Only runner configuration counts when new: a file a check looks for may well be the task's to write.
        let created: Vec<String> = RUNNER_CONFIG.iter().map(|s| s.to_string()).collect();
        Ok(Protection {
            protected: set(&patterns)?,
            created_counts: set(&created)?,
            may_change_set: set(may_change)?,
            generated: set(GENERATED)?,
            patterns,
            may_change: may_change.to_vec(),
        })
    }

    /// Whether changing `path` (relative, `/`-separated) is tampering with the checks; `existed`: it was there
    /// before the task.
    pub fn guards(&self, path: &str, existed: bool) -> bool {
        if self.may_change_set.is_match(path) || self.generated.is_match(path) {
            return false;
        }
        if existed {
            self.protected.is_match(path)
        } else {
            self.created_counts.is_match(path) && self.protected.is_match(path)
        }
    }

    /// Whether `path` is protected at all (for the hook that refuses edits before they happen).
    pub fn is_protected(&self, path: &str) -> bool {
        !self.may_change_set.is_match(path) && !self.generated.is_match(path) && self.protected.is_match(path)
    }
}

/// The protection of one task of a project: its protected paths (configured, or derived from the checks and the
/// usual locations), what it may change anyway (its `may_change`, and with derived paths the data files its checks
/// read that its text names).
pub fn task_protection(
    project: &crate::settings::ProjectSettings,
    task: &str,
    task_text: &str,
) -> Result<Protection, String> {
    let own = project.judgement.tasks.get(task).cloned().unwrap_or_default();
    let mut may_change = own.may_change;
    let patterns = match &project.judgement.protected {
        Some(p) => p.clone(),
        None => {
            may_change.extend(freed_by_task(&project.checks, &project.workspace, task_text));
            default_protected(&project.checks, &project.workspace)
        }
    };
    Protection::new(patterns, &may_change)
}

/// Whether `path` is a by-product of building or testing.
pub fn generated(path: &str) -> bool {
    static SET: std::sync::OnceLock<Option<GlobSet>> = std::sync::OnceLock::new();
    SET.get_or_init(|| set(GENERATED).ok()).as_ref().is_some_and(|s| s.is_match(path))
}

/// Whether the task's text names `path`: its whole path, its file name, or (three letters or more) its stem or
/// one of its directories, as a word.
pub fn named_by_task(path: &str, text: &str) -> bool {
    let text = text.to_lowercase();
    let path = path.to_lowercase();
    if text.contains(&path) {
        return true;
    }
    let file = path.rsplit('/').next().unwrap_or(&path);
    let stem = file.split('.').next().unwrap_or(file);
    let mut names = vec![file];
    if stem.len() >= 3 {
        names.push(stem);
    }
    names.extend(path.split('/').rev().skip(1).filter(|d| d.len() >= 3));
    names.iter().any(|n| contains_word(&text, n))
}

fn contains_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = text[i + word.len()..].chars().next().is_none_or(|c| !is_word(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_shell_lines_into_words_and_operators() {
        assert_eq!(shell_words("sh check.sh && echo 'a b'"), vec!["sh", "check.sh", "&&", "echo", "a b"]);
        assert_eq!(shell_words("echo x >> ../out.txt"), vec!["echo", "x", ">>", "../out.txt"]);
        assert_eq!(shell_words("cmd 2>/dev/null|tee log"), vec!["cmd", "2>", "/dev/null", "|", "tee", "log"]);
        assert_eq!(shell_words("echo \"$A\">f"), vec!["echo", "$A", ">", "f"]);
    }

    #[test]
    fn the_checks_name_their_scripts_and_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("check.sh"), "exit 0").expect("write");
        std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
        std::fs::create_dir(dir.path().join("scripts")).expect("mkdir");
        std::fs::write(dir.path().join("scripts/run.sh"), "").expect("write");
        assert_eq!(named_by_check("sh check.sh", dir.path()), vec!["check.sh"]);
        assert_eq!(named_by_check("python3 -m unittest discover -s tests -q", dir.path()), vec!["tests/**"]);
        assert_eq!(named_by_check("./scripts/run.sh --fast && make test", dir.path()).len(), 4);
        assert!(named_by_check("cargo test --quiet", dir.path()).is_empty());
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        assert_eq!(
            named_by_check("PYTHONPATH=src python3 -m unittest discover -s tests -t .", dir.path()),
            vec!["tests/**"]
        );
        assert!(named_by_check("cd src && make", dir.path()).iter().all(|p| !p.starts_with("src")));
        assert!(named_by_check("python -m pytest -q", dir.path()).contains(&"pytest.ini".to_string()));
    }

    #[test]
    fn tests_are_protected_new_tests_are_not_runner_configuration_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("check.sh"), "exit 0").expect("write");
        let checks = vec!["sh check.sh".to_string()];
        let p = Protection::new(default_protected(&checks, dir.path()), &[]).expect("globs");
        assert!(p.guards("tests/test_calc.py", true));
        assert!(p.guards("pkg/tests/test_x.py", true));
        assert!(p.guards("test_calc.py", true) && p.guards("src/a_test.go", true) && p.guards("web/a.test.ts", true));
        assert!(p.guards("check.sh", true) && !p.guards("USAGE.md", false));
        assert!(!p.guards("tests/test_new.py", false), "a new test file is fine");
        assert!(
            p.guards("conftest.py", false) && p.guards("tests/conftest.py", false) && p.guards("pytest.ini", false)
        );
        assert!(p.guards(".github/workflows/ci.yml", true));
        assert!(!p.guards("calc.py", true) && !p.guards("src/testing.py", true) && !p.guards("latest/x.py", true));
        assert!(!p.guards("tests/__pycache__/test_calc.cpython-311.pyc", true));
        let allowed = Protection::new(default_protected(&checks, dir.path()), &["tests/**".into()]).expect("globs");
        assert!(!allowed.guards("tests/test_calc.py", true) && allowed.guards("check.sh", true));
    }

    #[test]
    fn a_data_file_a_check_reads_is_freed_when_the_task_names_it_a_script_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("settings.json"), "{}").expect("write");
        std::fs::write(dir.path().join("check.sh"), "").expect("write");
        let checks = vec!["grep -q 4 settings.json".to_string(), "sh check.sh".to_string()];
        assert_eq!(freed_by_task(&checks, dir.path(), "set precision to 4 in settings.json"), vec!["settings.json"]);
        assert!(freed_by_task(&checks, dir.path(), "make check.sh pass").is_empty());
        assert!(freed_by_task(&checks, dir.path(), "fix calc.py").is_empty());
    }

    #[test]
    fn a_task_names_files_by_path_name_stem_or_directory() {
        assert!(named_by_task("old_calc.sh", "Remove the obsolete old_calc.sh"));
        assert!(named_by_task("src/legacy.py", "Delete the legacy module"));
        assert!(named_by_task("docs/guide.md", "Rewrite the docs for the new flag"));
        assert!(!named_by_task("README.md", "Write calc.sh: it prints the sum"));
        assert!(!named_by_task("lib/a.sh", "Write calc.sh"), "two letters are too short to count");
        assert!(!named_by_task("notes.md", "Denotes the sum"), "a word, not a part of one");
    }
}
