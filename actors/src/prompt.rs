//! Builds an attempt's prompt within a token budget counted with tiktoken (cl100k). The task's description is
//! always carried verbatim; what does not fit is feedback of older attempts, trimmed from its head.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::journal::TaskView;
use crate::redact;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    let b = BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref();
    let _ = BPE_READY.set(());
    b
}

/// Counts tokens the way the budget does (cl100k); falls back to bytes / 4 if the tokenizer cannot load. Large texts
/// are counted in parallel, in pieces cut where the count cannot change (see [`split_points`]).
pub fn count_tokens(text: &str) -> usize {
    let Some(b) = bpe() else { return text.len().div_ceil(4) };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    if text.len() < PARALLEL_FROM || threads < 2 {
        return b.encode_ordinary(text).len();
    }
    let cuts = split_points(text, threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let piece = &text[w[0]..w[1]];
                scope.spawn(move || b.encode_ordinary(piece).len())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}

/// Texts shorter than this are counted on one thread.
const PARALLEL_FROM: usize = 256 * 1024;

/// Offsets that cut `text` into about `parts` pieces, each cut right after a newline that a non-whitespace
/// character follows. cl100k's pre-tokenizer never joins across such a point (a run of newlines ends its piece,
/// and the next piece starts at the character), so the pieces' counts add up to the whole's exactly.
pub fn split_points(text: &str, parts: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = vec![0];
    for k in 1..parts {
        let target = text.len() * k / parts;
        let from = target.max(*cuts.last().unwrap_or(&0) + 1);
        let cut = (from..bytes.len().saturating_sub(1))
            .find(|&i| bytes[i] == b'\n' && !bytes[i + 1].is_ascii_whitespace() && bytes[i + 1] < 0x80);
        if let Some(i) = cut {
            cuts.push(i + 1);
        }
    }
    cuts.push(text.len());
    cuts.dedup();
    cuts
}

/// Loads the tokenizer (about 65 ms) so that later counts do not wait; call it from a background thread at start.
pub fn warm_up() {
    let _ = bpe();
}

/// Counts tokens if the tokenizer is already loaded; `None` instead of waiting for it.
pub fn count_tokens_if_ready(text: &str) -> Option<usize> {
    BPE_READY.get().map(|_| count_tokens(text))
}

static BPE_READY: OnceLock<()> = OnceLock::new();

/// A built prompt.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The text given to the agent.
    pub text: String,
    /// Its size in tokens; `None` when it was not counted because it cannot exceed the budget (a token is at least
    /// one byte, and the prompt has fewer bytes than the budget has tokens) and the tokenizer was still loading.
    pub tokens: Option<usize>,
}

/// Fills `{name}` placeholders in one pass (a value's own braces are left alone); an unknown `{…}` stays as it is.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| (&after[..close], close)) {
            Some((name, close)) if values.iter().any(|(k, _)| *k == name) => {
                out.push_str(values.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).unwrap_or(""));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{placeholders}` a template uses, with the 1-based line each is on.
pub fn placeholders(template: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, line) in template.lines().enumerate() {
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = &after[..close];
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        out.push((name.to_string(), i + 1));
                    }
                    rest = &after[close + 1..];
                }
                None => break,
            }
        }
    }
    out
}

/// What the agent is told about how its work is judged: the protected paths (configured, or the kinds the default
/// covers with the files the checks name), what this task may change anyway, and its scope.
pub fn rules(project: &crate::settings::ProjectSettings, task: &str) -> String {
    let j = &project.judgement;
    let own = j.tasks.get(task).cloned().unwrap_or_default();
    let quote = |v: &[String]| v.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ");
    let mut out = String::from("\n## Rules\n");
    match &j.protected {
        Some(p) if !p.is_empty() => out
            .push_str(&format!("- The checks judge the work by {}: do not modify or delete those files.\n", quote(p))),
        Some(_) => {}
        None => {
            let named: Vec<String> = project
                .checks
                .iter()
                .flat_map(|c| crate::judge::paths::named_by_check(c, &project.workspace))
                .collect();
            out.push_str(&format!(
                "- Do not modify or delete existing tests, test configuration, CI definitions{}: the checks judge the \
                 work by them. Adding new tests is fine.\n",
                if named.is_empty() { String::new() } else { format!(" or {}", quote(&named)) }
            ));
        }
    }
    if !own.may_change.is_empty() {
        out.push_str(&format!("- This task may change {}.\n", quote(&own.may_change)));
    }
    let scope = if own.scope.is_empty() { &j.scope } else { &own.scope };
    if !scope.is_empty() {
        out.push_str(&format!("- Change only files in {}.\n", quote(scope)));
    }
    out.push_str(
        "- Do not delete or empty files the task does not ask you to, work only inside this directory, and leave \
         `.git` alone.\n",
    );
    out
}

/// What goes into a prompt besides the task itself.
pub struct PromptInput<'a> {
    /// The attempt template (see [`crate::settings::PromptTemplates::attempt`]).
    pub template: &'a str,
    /// The task, with its attempts and answers.
    pub task: &'a TaskView,
    /// The project's check commands.
    pub checks: &'a [String],
    /// The attempt about to start.
    pub attempt: u32,
    /// What the agent must leave alone and where its changes belong ([`rules`]), shown with the checks.
    pub rules: &'a str,
    /// Token budget.
    pub budget: usize,
}

/// Builds the prompt for a new attempt.
pub fn build(input: &PromptInput<'_>) -> Prompt {
    let spec = &input.task.spec;
    let section = |heading: &str, items: Vec<String>| {
        if items.is_empty() {
            String::new()
        } else {
            format!("\n## {heading}\n{}", items.iter().map(|i| format!("- {i}\n")).collect::<String>())
        }
    };
    let acceptance = section("Acceptance criteria", spec.acceptance.clone());
    let mut checks = if input.checks.is_empty() {
        String::new()
    } else {
        format!(
            "\n## Checks\nWhen you are done, these commands are run in the workspace and must all pass:\n{}",
            input.checks.iter().map(|c| format!("- `{c}`\n")).collect::<String>()
        )
    };
    checks.push_str(input.rules);
    let answers = section("Answers from a human", input.task.answers.clone());
    let description = spec.description.strip_suffix('\n').unwrap_or(&spec.description);
    let attempt = input.attempt.to_string();
    let base = render(
        input.template,
        &[
            ("title", spec.title.as_str()),
            ("description", description),
            ("acceptance", &acceptance),
            ("checks", &checks),
            ("answers", &answers),
            ("project", spec.project.as_str()),
            ("task", spec.id.as_str()),
            ("attempt", &attempt),
        ],
    );

    // Feedback of earlier attempts, most recent first: it says what failed last.
    let feedback: Vec<(u32, &str)> =
        input.task.attempts.iter().rev().filter_map(|a| a.feedback.as_deref().map(|f| (a.number, f))).collect();
    let full_len = base.len() + feedback.iter().map(|(_, f)| f.len() + 32).sum::<usize>() + 128;
    if full_len <= input.budget && count_tokens_if_ready("").is_none() {
        // It fits whatever the count; do not wait for the tokenizer on the attempt's critical path.
        let mut text = base;
        append_feedback(&mut text, feedback.iter().map(|(n, f)| format!("\n### Attempt {n}\n{f}\n")).collect());
        return Prompt { text, tokens: None };
    }
    let base_tokens = count_tokens(&base);
    if feedback.is_empty() {
        return Prompt { tokens: Some(base_tokens), text: base };
    }
    let mut remaining = input.budget.saturating_sub(base_tokens + count_tokens(FEEDBACK_HEADER));
    let mut sections = Vec::new();
    for (n, text) in feedback {
        let section = format!("\n### Attempt {n}\n{text}\n");
        let t = count_tokens(&section);
        if t <= remaining {
            remaining -= t;
            sections.push(section);
        } else if remaining > 64 {
            // Keep the tail: check output ends with what failed.
            let mut keep = text.len().min(remaining * 3);
            let mut cut;
            loop {
                cut = format!("\n### Attempt {n} (cut to fit)\n…{}\n", redact::tail(text, keep));
                if count_tokens(&cut) <= remaining || keep < 64 {
                    break;
                }
                keep = keep * 3 / 4;
            }
            remaining = remaining.saturating_sub(count_tokens(&cut));
            sections.push(cut);
        }
        // Otherwise no room is left: this and older feedback stay out.
    }
    let mut text = base;
    append_feedback(&mut text, sections);
    Prompt { tokens: Some(count_tokens(&text)), text }
}

const FEEDBACK_HEADER: &str =
    "\n## Feedback from earlier attempts (most recent first)\nThe previous attempt was not accepted. Fix what failed:\n";

fn append_feedback(text: &mut String, sections: Vec<String>) {
    if !sections.is_empty() {
        text.push_str(FEEDBACK_HEADER);
        for s in sections {
            text.push_str(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_in_pieces_gives_exactly_the_whole_count() {
        let mut text = String::new();
        for f in ["prompt.rs", "journal/mod.rs", "actors/scheduler.rs", "agent/claude.rs"] {
            text.push_str(&std::fs::read_to_string(format!("{}/src/{f}", env!("CARGO_MANIFEST_DIR"))).expect("source"));
            text.push_str("  \n\n\t}); // trailing, with spaces\n");
        }
        let b = bpe().expect("tokenizer");
        let whole = b.encode_ordinary(&text).len();
        for parts in [2, 3, 7] {
            let cuts = split_points(&text, parts);
            let sum: usize = cuts.windows(2).map(|w| b.encode_ordinary(&text[w[0]..w[1]]).len()).sum();
            assert_eq!(sum, whole, "{parts} pieces cut at {cuts:?}");
        }
        let big = text.repeat(PARALLEL_FROM / text.len() + 2);
        assert_eq!(count_tokens(&big), b.encode_ordinary(&big).len());
    }
}
