//! Agent-side benchmarks (`cargo bench --bench agent`), inputs built outside the timed parts: parsing Claude Code's
//! stream-json (the recorded sample lines repeated to 64 MiB), and counting prompt tokens (cl100k) over source text.

use std::time::Instant;

use orch_actors::agent::Stream;
use orch_actors::agent::{claude::ClaudeCode, AgentAdapter};

fn main() {
    let sample = include_str!("../actors/tests/data/claude-happy.jsonl");
    // The init line is large and comes once per run; a long run is mostly assistant and tool lines.
    let (init, body) = sample.split_once('\n').expect("sample has lines");
    let body_lines: Vec<&str> = body.lines().filter(|l| !l.contains("\"type\":\"result\"")).collect();
    let result_line = body.lines().find(|l| l.contains("\"type\":\"result\"")).expect("result line");
    let mut lines: Vec<&str> = vec![init];
    let mut bytes = init.len();
    while bytes < 64 * 1024 * 1024 {
        for l in &body_lines {
            lines.push(l);
            bytes += l.len() + 1;
        }
    }
    lines.push(result_line);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut parser = ClaudeCode.parser();
        let t = Instant::now();
        let mut items = 0usize;
        for l in &lines {
            if parser.line(Stream::Stdout, l).is_some() {
                items += 1;
            }
        }
        let out = parser.finish();
        let el = t.elapsed().as_secs_f64();
        assert!(out.report.is_some() && items >= lines.len() - 1);
        best = best.min(el);
    }
    println!(
        "stream-json parsing ({} lines, {:.0} MiB, best of 5): {:.0} MB/s",
        lines.len(),
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / best / 1e6
    );
    token_counting();
}

/// Token counting (cl100k) over source text: this repository's own Rust sources, repeated to 8 MiB.
fn token_counting() {
    let mut text = String::new();
    let roots = [concat!(env!("CARGO_MANIFEST_DIR"), "/actors/src"), concat!(env!("CARGO_MANIFEST_DIR"), "/src")];
    let mut files = Vec::new();
    for r in roots {
        let mut stack = vec![std::path::PathBuf::from(r)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(std::fs::read_to_string(&p).expect("read"));
                }
            }
        }
    }
    while text.len() < 8 * 1024 * 1024 {
        for f in &files {
            text.push_str(f);
        }
    }
    orch_actors::prompt::warm_up();
    let mut best = f64::MAX;
    let mut tokens = 0;
    for _ in 0..3 {
        let t = Instant::now();
        tokens = orch_actors::prompt::count_tokens(&text);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "token counting (cl100k, {:.0} MiB of Rust source, {tokens} tokens, best of 3): {:.1} MB/s",
        text.len() as f64 / (1024.0 * 1024.0),
        text.len() as f64 / best / 1e6
    );
}
