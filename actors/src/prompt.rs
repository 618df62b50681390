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

/// Counts tokens the way the budget does (cl100k); falls back to bytes / 4 if the tokenizer cannot load.
pub fn count_tokens(text: &str) -> usize {
    match bpe() {
        Some(b) => b.encode_ordinary(text).len(),
        None => text.len().div_ceil(4),
    }
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
    /// Feedback sections left out or cut to fit the budget.
    pub trimmed: usize,
}

/// What goes into a prompt besides the task itself.
pub struct PromptInput<'a> {
    /// The task, with its attempts and answers.
    pub task: &'a TaskView,
    /// The project's check commands.
    pub checks: &'a [String],
    /// The attempt about to start.
    pub attempt: u32,
    /// Token budget.
    pub budget: usize,
}

/// Builds the prompt for a new attempt.
pub fn build(input: &PromptInput<'_>) -> Prompt {
    let spec = &input.task.spec;
    let mut base = String::new();
    base.push_str(&format!("# Task: {}\n\n", spec.title));
    base.push_str(&spec.description);
    if !spec.description.ends_with('\n') {
        base.push('\n');
    }
    if !spec.acceptance.is_empty() {
        base.push_str("\n## Acceptance criteria\n");
        for a in &spec.acceptance {
            base.push_str(&format!("- {a}\n"));
        }
    }
    if !input.checks.is_empty() {
        base.push_str("\n## Checks\nWhen you are done, these commands are run in the workspace and must all pass:\n");
        for c in input.checks {
            base.push_str(&format!("- `{c}`\n"));
        }
    }
    if !input.task.answers.is_empty() {
        base.push_str("\n## Answers from a human\n");
        for a in &input.task.answers {
            base.push_str(&format!("- {a}\n"));
        }
    }
    base.push_str(&format!("\n(Project `{}`, task `{}`, attempt {}.)\n", spec.project, spec.id, input.attempt));

    // Feedback of earlier attempts, most recent first: it says what failed last.
    let feedback: Vec<(u32, &str)> =
        input.task.attempts.iter().rev().filter_map(|a| a.feedback.as_deref().map(|f| (a.number, f))).collect();
    let full_len = base.len() + feedback.iter().map(|(_, f)| f.len() + 32).sum::<usize>() + 128;
    if full_len <= input.budget && count_tokens_if_ready("").is_none() {
        // It fits whatever the count; do not wait for the tokenizer on the attempt's critical path.
        let mut text = base;
        append_feedback(&mut text, feedback.iter().map(|(n, f)| format!("\n### Attempt {n}\n{f}\n")).collect());
        return Prompt { text, tokens: None, trimmed: 0 };
    }
    let base_tokens = count_tokens(&base);
    if feedback.is_empty() {
        return Prompt { tokens: Some(base_tokens), text: base, trimmed: 0 };
    }
    let mut remaining = input.budget.saturating_sub(base_tokens + count_tokens(FEEDBACK_HEADER));
    let mut sections = Vec::new();
    let mut trimmed = 0;
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
            trimmed += 1;
        } else {
            trimmed += 1;
        }
    }
    let mut text = base;
    append_feedback(&mut text, sections);
    Prompt { tokens: Some(count_tokens(&text)), text, trimmed }
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
