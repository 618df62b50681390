//! How orch judges an attempt, as plain functions of the evidence (the actors gather it and journal what these
//! find). Evidence by strength: the checks, run where the agent cannot have changed what they judge by
//! ([`paths`]: protected paths); what changed, judged against the task ([`evidence`]: the task's cumulative change,
//! collateral damage, secrets; [`gitdir`]: the repository's own files); what the agent did, from its tool log
//! ([`tools`]); and last what it says ([`prose`]), read only for explicit claims, admissions and questions.

pub mod evidence;
pub mod gitdir;
pub mod hook;
pub mod paths;
pub mod prose;
pub mod tools;

/// A task's text as the rules read it (for the files it names): title, description, acceptance criteria.
pub fn task_text(spec: &crate::types::TaskSpec) -> String {
    format!("{}\n{}\n{}", spec.title, spec.description, spec.acceptance.join("\n"))
}
