//! The generic `command` agent: runs `program args…` in the workspace with the prompt on stdin; its standard
//! output's last lines are its answer.

use super::{AgentAdapter, AgentItem, Invocation, OutputParser, ParsedOutcome};
use crate::redact;
use crate::settings::{AgentKind, AgentSettings};
use crate::types::Stream;

/// See the module documentation.
pub struct CommandAgent;

/// Bytes of stdout kept as the result.
const RESULT_BYTES: usize = 4096;
/// Bytes of one journaled line.
const LINE_BYTES: usize = 2048;

impl AgentAdapter for CommandAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Command
    }

    fn invocation(&self, settings: &AgentSettings, prompt: &str, _resume: Option<&str>) -> Invocation {
        Invocation {
            program: settings.program.clone(),
            args: settings.args.clone(),
            stdin: Some(prompt.to_string()),
            env: Vec::new(),
        }
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(CommandParser::default())
    }
}

#[derive(Default)]
struct CommandParser {
    stdout_tail: String,
}

impl OutputParser for CommandParser {
    fn line(&mut self, stream: Stream, line: &str) -> Option<AgentItem> {
        if stream == Stream::Stdout {
            self.stdout_tail.push_str(line);
            self.stdout_tail.push('\n');
            if self.stdout_tail.len() > 2 * RESULT_BYTES {
                self.stdout_tail = redact::tail(&self.stdout_tail, RESULT_BYTES).to_string();
            }
        }
        Some(AgentItem { stream: stream.as_str().to_string(), text: redact::head(line, LINE_BYTES).to_string() })
    }

    fn finish(self: Box<Self>) -> ParsedOutcome {
        let tail = redact::tail(&self.stdout_tail, RESULT_BYTES).trim().to_string();
        ParsedOutcome { result: (!tail.is_empty()).then_some(tail), ..ParsedOutcome::default() }
    }
}
