//! What an agent claims in its final answer, checked against the evidence: a file it says it wrote that did not
//! change, a verification it says it ran with no command run, tests it says pass while the checks fail, and answers
//! that are no answer at all ("Mock response", "I cannot…"), work it admits is unfinished, and placeholders it
//! left in the files it changed.

/// A claim read from an agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// "I created / wrote / updated `path`".
    ChangedFile(String),
    /// "tests pass", "all checks passed".
    TestsPass,
    /// "I ran / verified / tested …".
    Verified,
}

const CHANGE_VERBS: &[&str] = &[
    "created",
    "wrote",
    "written",
    "added",
    "updated",
    "modified",
    "changed",
    "edited",
    "fixed",
    "implemented",
    "rewrote",
    "refactored",
    "saved",
];
const PASS_PHRASES: &[&str] = &[
    "tests pass",
    "tests passed",
    "test passes",
    "tests are passing",
    "all tests pass",
    "checks pass",
    "checks passed",
    "all green",
    "tests now pass",
    "tests succeed",
    "build passes",
];
const VERIFY_PHRASES: &[&str] = &[
    "i ran",
    "i've run",
    "i have run",
    "i verified",
    "i've verified",
    "i tested",
    "i've tested",
    "ran the tests",
    "verified that",
];
const NON_ANSWERS: &[&str] = &[
    "mock response",
    "i cannot",
    "i can't",
    "i am unable",
    "i'm unable",
    "i am not able",
    "i'm not able",
    "as an ai",
    "i don't have access",
    "i do not have access",
    "lorem ipsum",
    "todo: implement",
];

/// Phrases by which an answer admits that the work is not all done.
const INCOMPLETE: &[&str] = &[
    "not yet implemented",
    "not implemented yet",
    "is not implemented",
    "are not implemented",
    "isn't implemented",
    "haven't implemented",
    "have not implemented",
    "didn't implement",
    "did not implement",
    "didn't get to",
    "did not get to",
    "i couldn't",
    "i could not",
    "i was unable",
    "i wasn't able",
    "i was not able",
    "partially implemented",
    "partial implementation",
    "only partially",
    "still needs to be",
    "remains to be done",
    "left as a todo",
    "left a todo",
    "stubbed out",
    "placeholder implementation",
    "not finished",
    "unfinished",
];

/// Markers of unfinished code: a line an attempt adds that carries one is a placeholder.
const PLACEHOLDERS: &[&str] = &["TODO", "FIXME", "unimplemented!", "todo!(", "NotImplementedError", "not implemented"];

/// A word that looks like a file path: has a dot or a slash, no spaces, and is not a sentence end.
fn path_like(word: &str) -> Option<String> {
    let w = word.trim_matches(|c: char| "`'\"*,;:()[]".contains(c)).trim_end_matches('.');
    let has_ext = w.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && !ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let plausible = (has_ext || (w.contains('/') && w.len() > 1))
        && !w.starts_with("http")
        && !w.contains("..")
        && w.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && !w.chars().all(|c| c.is_ascii_digit() || c == '.');
    plausible.then(|| w.trim_start_matches("./").to_string())
}

/// The claims in an answer.
pub fn claims(answer: &str) -> Vec<Claim> {
    let lower = answer.to_lowercase();
    let mut out = Vec::new();
    for sentence in answer.split(['\n', '!', '?']).flat_map(|l| l.split(". ")) {
        let words: Vec<&str> = sentence.split_whitespace().collect();
        let Some(verb_at) = words
            .iter()
            .position(|w| CHANGE_VERBS.contains(&w.to_lowercase().trim_matches(|c: char| !c.is_alphanumeric())))
        else {
            continue;
        };
        // Paths named in the rest of the sentence after the verb.
        for w in &words[verb_at + 1..] {
            if let Some(p) = path_like(w) {
                let c = Claim::ChangedFile(p);
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    if PASS_PHRASES.iter().any(|p| lower.contains(p)) {
        out.push(Claim::TestsPass);
    }
    if VERIFY_PHRASES.iter().any(|p| lower.contains(p)) {
        out.push(Claim::Verified);
    }
    out
}

/// The phrase that makes an answer a non-answer, if one does.
pub fn non_answer(answer: &str) -> Option<&'static str> {
    let lower = answer.trim().to_lowercase();
    NON_ANSWERS.iter().copied().find(|p| lower.starts_with(p) || (lower.len() < 200 && lower.contains(p)))
}

/// The phrase by which an answer admits unfinished work, if it does.
pub fn admits_incomplete(answer: &str) -> Option<&'static str> {
    let lower = answer.to_lowercase();
    INCOMPLETE.iter().copied().find(|p| lower.contains(p))
}

/// Whether any line of `text` carries a placeholder marker (what [`placeholders_added`] looks for).
pub fn has_placeholder(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok_and(|t| PLACEHOLDERS.iter().any(|m| t.contains(m)))
}

/// Lines of `after` (1-based line number and text) that carry a placeholder marker and are not in `before`: what an
/// attempt added that says the work is unfinished. Binary contents have none.
pub fn placeholders_added(before: Option<&[u8]>, after: &[u8]) -> Vec<(usize, String)> {
    let (Ok(after), before) = (std::str::from_utf8(after), before.and_then(|b| std::str::from_utf8(b).ok())) else {
        return Vec::new();
    };
    let marked = |l: &str| PLACEHOLDERS.iter().any(|m| l.contains(m));
    let mut old: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for l in before.unwrap_or("").lines().filter(|l| marked(l)) {
        *old.entry(l.trim()).or_default() += 1;
    }
    let mut out = Vec::new();
    for (i, l) in after.lines().enumerate().filter(|(_, l)| marked(l)) {
        match old.get_mut(l.trim()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push((i + 1, l.trim().to_string())),
        }
    }
    out
}

/// Whether a claimed path is among the changed ones (the claim may be absolute, or relative to a subdirectory).
pub fn seen(claimed: &str, changed: &[String], workspace: &std::path::Path) -> bool {
    let ws = workspace.display().to_string();
    let rel = claimed.strip_prefix(&format!("{ws}/")).unwrap_or(claimed);
    changed.iter().any(|c| c == rel || c.ends_with(&format!("/{rel}")) || rel.ends_with(&format!("/{c}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_tests_and_verifications() {
        let c = claims("I created `src/calc.py` and updated README.md. All tests pass; I ran the test suite.");
        assert_eq!(
            c,
            vec![
                Claim::ChangedFile("src/calc.py".into()),
                Claim::ChangedFile("README.md".into()),
                Claim::TestsPass,
                Claim::Verified
            ]
        );
    }

    #[test]
    fn ignores_numbers_urls_and_sentences_without_a_verb() {
        assert!(claims("Version 1.2 is out. See https://x.y/z.html for notes.").is_empty());
        assert!(claims("calc.py looks fine to me").is_empty());
    }

    #[test]
    fn finds_non_answers() {
        assert_eq!(non_answer("Mock response"), Some("mock response"));
        assert_eq!(non_answer("I cannot do that without access to the repository."), Some("i cannot"));
        assert_eq!(non_answer("Wrote calc.sh; it adds."), None);
    }

    #[test]
    fn finds_admitted_unfinished_work() {
        assert_eq!(
            admits_incomplete("Added addition. Subtraction is not implemented yet."),
            Some("not implemented yet")
        );
        assert_eq!(admits_incomplete("I could not find a way to run the tests."), Some("i could not"));
        assert_eq!(admits_incomplete("Wrote calc.sh. I didn't change anything else."), None);
    }

    #[test]
    fn finds_only_placeholders_the_change_added() {
        let before = b"a\n# TODO: old note\nb\n";
        let after = b"a\n# TODO: old note\nb\n# TODO: handle subtraction\nraise NotImplementedError\n";
        assert_eq!(
            placeholders_added(Some(before), after),
            vec![(4, "# TODO: handle subtraction".to_string()), (5, "raise NotImplementedError".to_string())]
        );
        assert_eq!(placeholders_added(None, b"fn f() { todo!() }\n"), vec![(1, "fn f() { todo!() }".to_string())]);
        assert!(placeholders_added(Some(after), after).is_empty());
        assert!(has_placeholder(after) && !has_placeholder(b"a\nb\n") && !has_placeholder(&[0xff, b'T']));
        assert!(placeholders_added(None, &[0xff, 0xfe, b'T', b'O', b'D', b'O']).is_empty());
    }

    #[test]
    fn matches_claimed_paths_to_changes() {
        let ws = std::path::Path::new("/w");
        let changed = vec!["src/calc.py".to_string()];
        assert!(seen("src/calc.py", &changed, ws));
        assert!(seen("/w/src/calc.py", &changed, ws));
        assert!(seen("calc.py", &changed, ws));
        assert!(!seen("README.md", &changed, ws));
    }
}
