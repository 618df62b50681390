//! Builds an attempt's prompt within a token budget counted with tiktoken (cl100k). The task's description is
//! always carried verbatim; what does not fit is feedback of older attempts, trimmed from its head.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::journal::TaskView;
use crate::redact;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().ok()).as_ref()
}

/// Counts tokens the way the budget does (cl100k); falls back to bytes / 4 if the tokenizer cannot load.
pub fn count_tokens(text: &str) -> usize {
    match bpe() {
        Some(b) => b.encode_ordinary(text).len(),
        None => text.len().div_ceil(4),
    }
}

/// A built prompt.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The text given to the agent.
    pub text: String,
    /// Its size in tokens.
    pub tokens: usize,
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

    let base_tokens = count_tokens(&base);
    // Feedback of earlier attempts, most recent first: it says what failed last.
    let feedback: Vec<(u32, &str)> =
        input.task.attempts.iter().rev().filter_map(|a| a.feedback.as_deref().map(|f| (a.number, f))).collect();
    if feedback.is_empty() {
        return Prompt { tokens: base_tokens, text: base, trimmed: 0 };
    }
    let header = "\n## Feedback from earlier attempts (most recent first)\nThe previous attempt was not accepted. Fix what failed:\n";
    let mut remaining = input.budget.saturating_sub(base_tokens + count_tokens(header));
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
    if !sections.is_empty() {
        text.push_str(header);
        for s in sections {
            text.push_str(&s);
        }
    }
    Prompt { tokens: count_tokens(&text), text, trimmed }
}
