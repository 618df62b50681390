//! Actor tests: the whole engine on a temporary journal and workspace, with real processes as agents. One test
//! binary, one module per theme; the fixture and the waits they share are in `support`.

mod support;

mod journal_and_files;
mod judgement;
mod notifications;
mod processes;
mod retries;
mod scheduling;
mod worktrees;
