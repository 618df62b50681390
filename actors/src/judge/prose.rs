//! What an agent's final answer says, read only for what prose alone can tell: explicit claims (a change verb
//! whose object is a file; "tests pass"), an admission that part of the task is not done, a question to the human,
//! a refusal. Negation, lists, quoting and "I couldn't X, so I did Y" are read as such; a mention is not a claim.
//! Placeholders the change added are read from the files, not the prose.

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

/// Change verbs in the forms that report a change made.
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
    "rewritten",
    "refactored",
    "saved",
    "replaced",
    "adjusted",
    "corrected",
    "patched",
    "extended",
    "renamed",
    "moved",
    "removed",
    "deleted",
];

/// Words that end the object of a verb: what follows them is another clause.
const CLAUSE_BREAKS: &[&str] = &[
    "so",
    "because",
    "which",
    "while",
    "since",
    "but",
    "ensuring",
    "making",
    "verified",
    "confirmed",
    "passes",
    "pass",
    "passed",
    "passing",
    "still",
    "ran",
    "run",
    "using",
    "via",
    "by",
    "against",
    "after",
    "before",
    "when",
    "where",
    "until",
    "as",
    "than",
    "then",
    "and then",
    "although",
    "though",
    "whereas",
    "unlike",
    "except",
];

/// Words that make a sentence say something did not happen, or might: it claims nothing.
const NEGATIONS: &[&str] = &[
    "not",
    "no",
    "never",
    "nothing",
    "none",
    "without",
    "unchanged",
    "untouched",
    "neither",
    "nor",
    "didn't",
    "don't",
    "doesn't",
    "wasn't",
    "weren't",
    "isn't",
    "aren't",
    "haven't",
    "hasn't",
    "won't",
    "wouldn't",
    "couldn't",
    "shouldn't",
    "can't",
    "cannot",
];
const MODALS: &[&str] = &[
    "will",
    "would",
    "should",
    "could",
    "might",
    "may",
    "can",
    "need",
    "needs",
    "want",
    "consider",
    "if",
    "suggest",
    "recommend",
    "please",
    "shall",
    "must",
];

const PASS_PHRASES: &[&str] = &[
    "tests pass",
    "tests passed",
    "test passes",
    "tests are passing",
    "tests now pass",
    "tests succeed",
    "checks pass",
    "checks passed",
    "check passes",
    "all green",
    "build passes",
];

/// Markers of unfinished code: a line an attempt adds that carries one is a placeholder.
const PLACEHOLDERS: &[&str] = &["TODO", "FIXME", "unimplemented!", "todo!(", "NotImplementedError", "not implemented"];

/// The sentences (and list items, table rows, clauses after `;`) of a text, with Markdown decoration removed.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || l.is_empty() {
            continue;
        }
        // A table row: its cells read as one sentence.
        let l = if l.starts_with('|') {
            if l.chars().all(|c| "|-: ".contains(c)) {
                continue;
            }
            l.split('|').map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" ")
        } else {
            l.to_string()
        };
        let l = strip_marker(&l).replace("**", "").replace("__", "");
        let mut start = 0;
        let bytes: Vec<char> = l.chars().collect();
        let mut cur = String::new();
        for (i, c) in bytes.iter().enumerate() {
            cur.push(*c);
            let next = bytes.get(i + 1).copied();
            let ends = matches!(c, '.' | '!' | '?' | ';') && next.is_none_or(char::is_whitespace);
            if ends {
                let s = cur.trim().to_string();
                if !s.is_empty() {
                    out.push(s);
                }
                cur.clear();
                start = i + 1;
            }
        }
        let _ = start;
        let s = cur.trim().to_string();
        if !s.is_empty() {
            out.push(s);
        }
    }
    out
}

/// A line without its list marker or heading marks (`- `, `* `, `1. `, `## `, `> `, `- [x] `).
fn strip_marker(line: &str) -> String {
    let mut l = line.trim_start_matches(['#', '>', ' ']).trim_start();
    for m in ["- [x] ", "- [ ] ", "* [x] ", "- ", "* ", "+ ", "• ", "✅ ", "✔ ", "✓ "] {
        if let Some(rest) = l.strip_prefix(m) {
            l = rest.trim_start();
        }
    }
    let digits = l.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && (l[digits..].starts_with(". ") || l[digits..].starts_with(") ")) {
        l = l[digits + 2..].trim_start();
    }
    l.to_string()
}

/// The words of a sentence, lower-cased, punctuation trimmed (paths keep their dots and slashes).
fn words(sentence: &str) -> Vec<String> {
    raw_words(sentence).into_iter().map(|w| w.to_lowercase()).collect()
}

/// The words of a sentence as written.
fn raw_words(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .map(|w| w.trim_matches(|c: char| "`'\"*:;!?()[]{}—–".contains(c)).trim_end_matches('.').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A word that looks like a file path: has an extension or a slash, no spaces, and is not a number or a URL.
pub fn path_like(word: &str) -> Option<String> {
    let w = word.trim_matches(|c: char| "`'\"*,;:()[]".contains(c)).trim_end_matches('.');
    let has_ext = w.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && !ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let plausible = (has_ext || (w.contains('/') && w.len() > 1))
        && !w.starts_with("http")
        && !w.contains("..")
        && !w.contains("::")
        && w.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && !w.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !w.starts_with("e.g")
        && !w.starts_with("i.e");
    plausible.then(|| w.trim_start_matches("./").to_string())
}

fn negated_or_hypothetical(ws: &[String]) -> bool {
    ws.iter().any(|w| NEGATIONS.contains(&w.as_str()) || w.ends_with("n't") || MODALS.contains(&w.as_str()))
}

/// The files a sentence explicitly claims were changed: the object of a change verb (`Updated calc.py and
/// README.md`), or a path given a change as its status (`calc.py: fixed the sign`, `calc.py was updated`).
fn claimed_files(sentence: &str) -> Vec<String> {
    let raw = raw_words(sentence);
    let ws = words(sentence);
    if negated_or_hypothetical(&ws) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let verbs: Vec<usize> =
        ws.iter().enumerate().filter(|(_, w)| CHANGE_VERBS.contains(&w.as_str())).map(|(i, _)| i).collect();
    if let Some(&v) = verbs.first() {
        // Subject side: `calc.py was updated`, `calc.py — fixed`, a status column.
        if let Some(first) = raw.first().and_then(|w| path_like(w)) {
            if v <= 3
                && ws[1..v].iter().all(|w| ["was", "were", "is", "has", "have", "been", "now"].contains(&w.as_str()))
            {
                out.push(first);
            }
        }
    }
    // Object side: paths after each verb, up to the next clause.
    for v in verbs {
        let mut gap = 0;
        for (w, original) in ws[v + 1..].iter().zip(&raw[v + 1..]) {
            if CLAUSE_BREAKS.contains(&w.as_str()) || CHANGE_VERBS.contains(&w.as_str()) {
                break;
            }
            match path_like(original) {
                Some(p) => {
                    out.push(p);
                    gap = 0;
                }
                None => {
                    gap += 1;
                    // `added a check for negative numbers to calc.py`: a short object phrase, then the file.
                    if gap > 6 {
                        break;
                    }
                }
            }
        }
    }
    out.dedup();
    out
}

/// The claims in an answer.
pub fn claims(answer: &str) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut pass = false;
    let mut verified = false;
    for s in sentences(answer) {
        for p in claimed_files(&s) {
            let c = Claim::ChangedFile(p);
            if !out.contains(&c) {
                out.push(c);
            }
        }
        let lower = s.to_lowercase();
        let ws = words(&s);
        let plain = !ws.iter().any(|w| NEGATIONS.contains(&w.as_str()) || w.ends_with("n't"))
            && !ws.iter().any(|w| ["if", "once", "should", "would", "will", "could", "might"].contains(&w.as_str()));
        if plain && PASS_PHRASES.iter().any(|p| lower.contains(p)) {
            pass = true;
        }
        let first_person = ws.first().is_some_and(|w| w == "i" || w == "i've" || w == "we" || w == "we've");
        let ran =
            ws.iter().any(|w| ["ran", "run", "verified", "tested", "executed", "confirmed"].contains(&w.as_str()));
        if plain && first_person && ran {
            verified = true;
        }
    }
    if pass {
        out.push(Claim::TestsPass);
    }
    if verified {
        out.push(Claim::Verified);
    }
    out
}

/// Answers that are a stand-in for an answer, whatever work came with them: what a mock or broken agent prints.
const SENTINELS: &[&str] = &["mock response", "lorem ipsum", "todo: implement", "[placeholder]"];

/// The stand-in an answer is instead of an answer ("Mock response"), if it is one: it opens with one, or is a short
/// answer holding one. A non-answer whatever work came with it.
pub fn sentinel(answer: &str) -> Option<&'static str> {
    let lower = answer.trim().to_lowercase();
    SENTINELS.iter().copied().find(|p| lower.starts_with(p) || (lower.len() < 100 && lower.contains(p)))
}

/// Phrases of an answer that refuses the work outright.
const REFUSALS: &[&str] = &[
    "mock response",
    "i cannot",
    "i can't",
    "i am unable",
    "i'm unable",
    "i am not able",
    "i'm not able",
    "i won't",
    "i will not",
    "as an ai",
    "i don't have access",
    "i do not have access",
    "i'm sorry, but",
    "i am sorry, but",
    "sorry, i can",
    "lorem ipsum",
    "todo: implement",
];
/// Openings of an answer that promises work instead of doing it.
const STALLS: &[&str] = &[
    "i'll ",
    "i will ",
    "let me ",
    "i'm going to",
    "i am going to",
    "working on it",
    "on it",
    "sure",
    "okay",
    "ok,",
    "understood",
];

/// The phrase that makes an answer with no work behind it a non-answer: a refusal, a promise, an empty formula.
/// Only meaningful for an attempt that called no tool and changed nothing: with work behind it, "I cannot see any
/// other edge case" is a remark, not a refusal.
pub fn non_answer(answer: &str) -> Option<&'static str> {
    let lower = answer.trim().to_lowercase();
    if let Some(p) = REFUSALS.iter().copied().find(|p| lower.starts_with(p) || (lower.len() < 300 && lower.contains(p)))
    {
        return Some(p);
    }
    STALLS.iter().copied().find(|p| lower.starts_with(p) && lower.len() < 300)
}

/// Sentences about how things were before the work: they admit nothing about it.
const ABOUT_BEFORE: &[&str] = &[
    "previous",
    "previously",
    "originally",
    "before",
    "used to",
    "the old",
    "the original",
    "was missing",
    "were missing",
    "had been",
    "existing code",
    "the bug",
    "the issue",
    "the problem",
];
/// Sentences about what the task did not ask for: leaving it undone admits nothing.
const NOT_ASKED: &[&str] = &[
    "out of scope",
    "beyond the scope",
    "outside the scope",
    "outside of the scope",
    "not part of the task",
    "not part of this task",
    "not asked",
    "wasn't asked",
    "was not asked",
    "not required",
    "not requested",
    "wasn't requested",
    "was not requested",
    "as requested",
    "as asked",
    "unrelated",
    "separate task",
    "follow-up",
    "follow up",
    "left alone",
    "intentionally",
    "deliberately",
    "on purpose",
];

/// Words that turn "I couldn't X" into a workaround: "…, so I wrote one", "…; instead I…".
const WORKAROUND: &[&str] = &["so i", "so i've", ", so", "instead", "therefore", "which is why", "but i", "so we"];
/// A statement that part of the work is not done.
const UNDONE: &[&str] = &[
    "not yet implemented",
    "not implemented yet",
    "is not implemented",
    "are not implemented",
    "isn't implemented",
    "aren't implemented",
    "not yet supported",
    "is not supported yet",
    "isn't supported yet",
    "is not handled yet",
    "isn't handled yet",
    "not handled yet",
    "haven't implemented",
    "have not implemented",
    "didn't implement",
    "did not implement",
    "didn't get to",
    "did not get to",
    "haven't finished",
    "have not finished",
    "didn't finish",
    "did not finish",
    "not finished",
    "still needs to be",
    "still need to be",
    "remains to be done",
    "remain to be done",
    "still to be done",
    "left as a todo",
    "left a todo",
    "stubbed out",
    "placeholder implementation",
    "partially implemented",
    "partial implementation",
    "only partially",
    "is incomplete",
    "remains incomplete",
    "is still incomplete",
    "is unfinished",
    "remains unfinished",
    "work in progress",
];
/// "I couldn't …" about doing the work itself.
const COULD_NOT: &[&str] = &[
    "i couldn't",
    "i could not",
    "i was unable to",
    "i wasn't able to",
    "i was not able to",
    "i did not manage to",
    "i didn't manage to",
    "i ran out of",
];
const WORK_VERBS: &[&str] =
    &["implement", "finish", "complete", "fix", "work out", "figure out", "solve", "get", "make", "handle", "support"];

/// The phrase by which an answer admits that part of the task is not done, if it does. A workaround ("I couldn't
/// find a helper, so I wrote one") and a sentence about how things were before admit nothing.
pub fn admits_incomplete(answer: &str) -> Option<String> {
    for s in sentences(answer) {
        let lower = format!(" {} ", s.to_lowercase().replace('’', "'"));
        if ABOUT_BEFORE.iter().any(|p| lower.contains(p)) || NOT_ASKED.iter().any(|p| lower.contains(p)) {
            continue;
        }
        if let Some(p) = UNDONE.iter().find(|p| lower.contains(*p)) {
            return Some(p.to_string());
        }
        if let Some(p) = COULD_NOT.iter().find(|p| lower.contains(*p)) {
            if WORKAROUND.iter().any(|w| lower.contains(w)) {
                continue;
            }
            let rest = &lower[lower.find(*p).map(|i| i + p.len()).unwrap_or(0)..];
            if WORK_VERBS.iter().any(|v| rest.trim_start().starts_with(v)) || p.contains("ran out") {
                return Some(p.to_string());
            }
        }
    }
    None
}

/// Requests addressed to the human.
const REQUESTS: &[&str] = &[
    "let me know which",
    "let me know whether",
    "let me know what",
    "let me know how",
    "let me know if you want me to",
    "let me know if you'd like me to",
    "let me know if you would like me to",
    "let me know your",
    "let me know before",
    "please confirm",
    "please choose",
    "please pick",
    "please select",
    "please advise",
    "please clarify",
    "please specify",
    "please provide",
    "please tell me",
    "please let me know",
    "please decide",
    "please share",
    "please indicate",
    "please reply",
    "please respond",
    "please answer",
    "please review",
    "please approve",
    "tell me which",
    "tell me what",
    "tell me whether",
    "tell me how",
    "tell me if",
    "i need you to",
    "i need your",
    "i need to know",
    "i need more information",
    "i need clarification",
    "i need confirmation",
    "i need a decision",
    "need your input",
    "need your decision",
    "need your confirmation",
    "need your approval",
    "need your go-ahead",
    "awaiting your",
    "awaiting a decision",
    "awaiting further",
    "awaiting confirmation",
    "waiting for your",
    "waiting on your",
    "waiting for a decision",
    "waiting for confirmation",
    "i'll wait",
    "i will wait",
    "i'll hold off",
    "i will hold off",
    "holding off",
    "pending your",
    "before i continue",
    "before i proceed",
    "before i start",
    "before i begin",
    "before i go ahead",
    "before i make",
    "before i change",
    "before i write",
    "before proceeding",
    "before making",
    "which option",
    "which approach",
    "which one do you",
    "which one would you",
    "which of these",
    "which would you",
    "which do you",
    "would you like",
    "would you prefer",
    "would you rather",
    "do you want",
    "do you prefer",
    "should i",
    "shall i",
    "could you",
    "can you confirm",
    "can you clarify",
    "can you tell",
    "your call",
    "your choice",
    "your preference",
    "your decision",
    "your confirmation",
    "your go-ahead",
    "your approval",
    "once you confirm",
    "once you decide",
    "once you choose",
    "once you reply",
    "once you let me know",
    "once i hear",
    "when you confirm",
    "if you confirm",
    "up to you",
    "you decide",
    "you to decide",
    "rather you",
    "leave it to you",
    "leave that to you",
    "leave this to you",
    "leave the decision",
    "leave the choice",
    "your pick",
    "your input",
    "which you prefer",
    "which you'd prefer",
    "what you prefer",
    "how you'd like",
    "how you would like",
    "i'm not sure which",
    "i am not sure which",
    "unclear which",
    "it's unclear whether",
    "it is unclear whether",
];
/// Courtesies that ask for nothing.
const COURTESIES: &[&str] = &[
    "let me know if you need",
    "let me know if you have",
    "let me know if there's anything",
    "let me know if there is anything",
    "let me know if anything",
    "feel free to",
    "happy to help",
    "hope this helps",
];

/// Verbs that open a sentence addressed to the human as an order: "Reply with a, b or c.", "Confirm the format."
const IMPERATIVES: &[&str] = &[
    "reply", "respond", "answer", "tell", "choose", "pick", "select", "confirm", "decide", "specify", "clarify",
    "advise", "provide", "send", "share", "indicate", "approve", "review", "say", "name", "give", "supply",
];
/// A clause that makes the work wait on the human: "once you've answered, I'll…", "as soon as you confirm…".
const WAITS_ON_YOU: &[&str] = &[
    "once you",
    "when you",
    "after you",
    "as soon as you",
    "until you",
    "until i hear",
    "once i hear",
    "when i hear",
    "once i have your",
    "once i get your",
    "once i know",
    "when i know",
    "once that's settled",
    "once that is settled",
    "once this is settled",
    "once decided",
];
/// What the agent says it lacks from the human, in any tense or mood ("I'd need to know…", "need your input").
const NEEDS: &[&str] = &[
    "need to know",
    "need your",
    "need you to",
    "need a decision",
    "need an answer",
    "need confirmation",
    "need clarification",
    "need more information",
    "need more detail",
    "need more context",
    "need input",
    "need guidance",
    "need direction",
    "need a go-ahead",
    "need the go-ahead",
    "need approval",
    "need your approval",
    "needs your",
    "needs a decision",
    "require your",
    "requires your",
];

/// Verbs by which a person answers, decides or hands something over. With the human as their subject ("if you
/// would indicate which…", "for you to choose", "you've named it") the work is waiting on them.
const GIVING_VERBS: &[&str] = &[
    "reply",
    "respond",
    "answer",
    "tell",
    "choose",
    "pick",
    "select",
    "confirm",
    "decide",
    "specify",
    "clarify",
    "advise",
    "provide",
    "send",
    "share",
    "indicate",
    "approve",
    "say",
    "name",
    "give",
    "supply",
    "let",
    "settle",
    "sign",
    "agree",
    "okay",
    "ok",
    "authorise",
    "authorize",
    "greenlight",
    "supply",
    "fill",
    "point",
    "weigh",
];
/// Words that may stand between the human and their verb: "you would kindly indicate", "you to first choose".
const BETWEEN: &[&str] = &[
    "would", "could", "can", "will", "shall", "might", "may", "to", "just", "kindly", "please", "first", "then",
    "simply", "only", "also", "either", "be", "able", "have",
];
/// What a human gives that work can wait on: "your decision", "your say-so", "the go-ahead from you".
const DECISION_NOUNS: &[&str] = &[
    "answer",
    "reply",
    "decision",
    "choice",
    "call",
    "pick",
    "preference",
    "instruction",
    "instructions",
    "confirmation",
    "go-ahead",
    "approval",
    "input",
    "word",
    "say-so",
    "ok",
    "okay",
    "sign-off",
    "guidance",
    "direction",
    "view",
    "opinion",
    "verdict",
    "consent",
    "permission",
    "answers",
    "decisions",
    "thoughts",
];
/// A request made as a noun or participle ("Requesting two values", "Needed from you:", "Missing: the URL").
const REQUEST_WORDS: &[&str] =
    &["requesting", "request", "requested", "needed", "required", "missing", "grateful", "appreciate", "appreciated"];
/// Words by which an answer says the work is held back, not finished or refused: "until then it stays", "it has
/// not been written yet", "Status: blocked", "on hold".
const DEFERRALS: &[&str] =
    &["until", "yet", "blocked", "hold", "pending", "paused", "parked", "held", "stays", "waiting"];

/// Whether a sentence hands the next step to the human: they are the source of what is missing ("has to come from
/// you", "a yes from you and it goes"), the subject of a verb of answering or deciding ("if you would indicate
/// which…", "for you to pick"), the owner of the decision ("the choice is yours", "your call"), or the one the work
/// is handed over to ("over to you"). A negation just before ("nothing needed from you") takes it back.
fn hands_to_the_human(sentence: &str) -> bool {
    let ws = words(&sentence.replace('’', "'"));
    let negated_before =
        |i: usize| ws[i.saturating_sub(3)..i].iter().any(|w| NEGATIONS.contains(&w.as_str()) || w.ends_with("n't"));
    for (i, w) in ws.iter().enumerate() {
        let w = w.as_str();
        let prev = if i > 0 { ws[i - 1].as_str() } else { "" };
        let hit = match w {
            "you" | "you'd" | "you've" | "you'll" => {
                prev == "from"
                    || (prev == "to"
                        && i >= 2
                        && ["over", "up", "down", "left", "leave", "it"].contains(&ws[i - 2].as_str()))
                    || ws[i + 1..].iter().map(String::as_str).find(|n| !BETWEEN.contains(n)).is_some_and(giving_verb)
            }
            "your" => ws[i + 1..].iter().take(3).any(|n| DECISION_NOUNS.contains(&n.as_str())),
            "yours" => true,
            _ => false,
        };
        if hit && !negated_before(i) {
            return true;
        }
    }
    false
}

/// Whether a word is one of [`GIVING_VERBS`] in any of its regular forms ("indicates", "picked", "replied").
fn giving_verb(word: &str) -> bool {
    let forms = [
        Some(word),
        word.strip_suffix("ing"),
        word.strip_suffix("ed"),
        word.strip_suffix('d'),
        word.strip_suffix("es"),
        word.strip_suffix('s'),
    ];
    forms.into_iter().flatten().any(|f| !f.is_empty() && GIVING_VERBS.contains(&f))
        || word
            .strip_suffix("ied")
            .or(word.strip_suffix("ies"))
            .is_some_and(|stem| GIVING_VERBS.contains(&format!("{stem}y").as_str()))
}

/// Whether an answer says its work is held back: on hold, blocked, not done yet, waiting.
fn defers(answer: &str) -> bool {
    let lower = answer.to_lowercase();
    words(&lower).iter().any(|w| DEFERRALS.contains(&w.as_str()))
}

/// Whether a sentence asks the human for something: a request ("please confirm…", "which do you prefer"), an order
/// addressed to them ("Reply with a, b or c."), a need ("I'd need to know…"), or the work waiting on them ("once
/// you've answered, I'll…").
fn asks(sentence: &str) -> bool {
    let lower = sentence.to_lowercase().replace('’', "'");
    if COURTESIES.iter().any(|c| lower.contains(c)) {
        return false;
    }
    let first = words(&lower).into_iter().next().unwrap_or_default();
    let second = words(&lower).into_iter().nth(1).unwrap_or_default();
    let imperative = IMPERATIVES.contains(&first.as_str())
        || (first == "let" && (second == "me" || second == "us"))
        || (first == "please" && !second.is_empty());
    imperative
        || sentence.trim_end().ends_with('?')
        || REQUESTS.iter().any(|r| lower.contains(r))
        || NEEDS.iter().any(|n| lower.contains(n))
        || WAITS_ON_YOU.iter().any(|w| lower.contains(w))
}

/// The question an answer puts to the human, if it asks them to choose, confirm or provide something — in any
/// phrasing, with or without a question mark, at its end or at its head (a request, then the list it is about).
/// Read only for an attempt that changed nothing.
pub fn question(answer: &str) -> Option<String> {
    let all = sentences(answer);
    let courtesy = |s: &str| {
        let lower = s.to_lowercase().replace('’', "'");
        COURTESIES.iter().any(|c| lower.contains(c))
    };
    // The next step handed to the human, anywhere in the answer; or a request for something while the work waits.
    let deferred = defers(answer);
    if let Some(s) = all.iter().find(|s| {
        !courtesy(s)
            && (hands_to_the_human(s) || (deferred && words(s).iter().any(|w| REQUEST_WORDS.contains(&w.as_str()))))
    }) {
        return Some(s.to_string());
    }
    // The end of the answer: its last three sentences (a list of options and a closing request).
    if let Some(s) = all.iter().rev().take(3).find(|s| asks(s)) {
        return Some(s.to_string());
    }
    // Anywhere: what the agent needs from the human, or the work waiting on them (not a stray "?" mid-answer).
    all.iter()
        .find(|s| {
            let lower = s.to_lowercase().replace('’', "'");
            NEEDS.iter().any(|n| lower.contains(n))
                || WAITS_ON_YOU.iter().any(|w| lower.contains(w))
                || [
                    "awaiting your",
                    "waiting for your",
                    "before i ",
                    "before writing",
                    "before changing",
                    "before touching",
                    "before deleting",
                    "before making",
                ]
                .iter()
                .any(|p| lower.contains(p) && (lower.contains("you") || lower.contains("your")))
        })
        .map(|s| s.to_string())
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

    fn files(answer: &str) -> Vec<String> {
        claims(answer)
            .into_iter()
            .filter_map(|c| match c {
                Claim::ChangedFile(p) => Some(p),
                _ => None,
            })
            .collect()
    }

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
    fn a_mention_is_not_a_claim() {
        assert!(files("Version 1.2 is out. See https://x.y/z.html for notes.").is_empty());
        assert!(files("calc.py looks fine to me").is_empty());
        assert_eq!(files("Updated calc.py; `test_calc.py` still passes."), vec!["calc.py"]);
        assert_eq!(files("Fixed calc.py so that tests/test_calc.py passes."), vec!["calc.py"]);
        assert!(files("- `README.md`: unchanged\n- `tests/test_calc.py`: not touched").is_empty());
        assert!(files("I did not modify the tests in tests/test_calc.py.").is_empty());
        assert!(files("No changes were needed to setup.cfg.").is_empty());
        assert!(files("You may want to update CHANGELOG.md as well.").is_empty());
        assert!(files("| file | status |\n|---|---|\n| `calc.py` | fixed |\n| `README.md` | unchanged |").len() == 1);
        assert_eq!(files("- `calc.py`: fixed the sign of the result"), vec!["calc.py"]);
        assert_eq!(files("calc.py was updated to handle negatives."), vec!["calc.py"]);
        assert!(files("```\nwrote out.txt\n```").is_empty(), "code blocks are not prose");
    }

    #[test]
    fn finds_non_answers() {
        assert_eq!(non_answer("Mock response"), Some("mock response"));
        assert_eq!(non_answer("I cannot do that without access to the repository."), Some("i cannot"));
        assert_eq!(non_answer("I'll get started on calc.sh now."), Some("i'll "));
        assert_eq!(non_answer("Wrote calc.sh; it adds."), None);
    }

    #[test]
    fn finds_admitted_unfinished_work_not_workarounds() {
        assert!(admits_incomplete("Added addition. Subtraction is not implemented yet.").is_some());
        assert!(admits_incomplete("I couldn't work out sub; add works.").is_some());
        assert!(admits_incomplete("Division by zero isn't handled yet.").is_some());
        assert_eq!(admits_incomplete("I couldn't find an existing helper, so I wrote one."), None);
        assert_eq!(admits_incomplete("I cannot see any other edge case."), None);
        assert_eq!(admits_incomplete("Wrote calc.sh. I didn't change anything else."), None);
        assert_eq!(admits_incomplete("The previous implementation was incomplete; it now handles negatives."), None);
        assert_eq!(admits_incomplete("Subtraction was not implemented before; I added it."), None);
        assert_eq!(admits_incomplete("I did not implement caching: it is out of scope."), None);
        assert_eq!(admits_incomplete("Logging is deliberately not implemented yet, as asked."), None);
    }

    #[test]
    fn finds_questions_in_any_phrasing() {
        let q = |s: &str| question(s).is_some();
        assert!(q("I looked around. Which port should it listen on?"));
        assert!(q("Two options:\n1. round half up\n2. banker's rounding\n\nLet me know which you prefer."));
        assert!(q("Before I continue, could you confirm the output format."));
        assert!(q("I'll wait for your decision before changing anything."));
        assert!(q("Awaiting your decision."));
        assert!(q("Please confirm whether negative numbers should be accepted."));
        assert!(!q("calc.sh already does this."));
        assert!(!q("No change is needed. Let me know if you need anything else."));
        assert!(!q("Done: calc.sh adds."));
        assert!(q(
            "Need your input on two points before writing anything:\n\n- the URL\n- the token\n\nThen it is quick."
        ));
        assert!(q("There are two implementations. I'd need to know which one stays before deleting anything."));
        assert!(q("Three variants:\n\n(a) strip\n(b) lower\n(c) both\n\nReply with a, b or c."));
        assert!(q("The release server is not configured. As soon as you send its URL I will write the script."));
        assert!(!q("I read check.sh: it runs calc.sh with 2 and 3 and expects 5. calc.sh already prints that."));
        // The next step handed to the human, in phrasings the lists above were not written for.
        assert!(q("The currency has to come from you. Neither file names one."));
        assert!(q("I should be most grateful if you would indicate which rule the firm follows."));
        assert!(q("A yes from you and it goes; until then it stays."));
        assert!(q("Requesting two values:\n\n1. the host\n2. the port\n\nNothing is written yet."));
        assert!(q("Status: blocked.\n\nNeeded from you: the variable's name."));
        assert!(q("Over to you: tabs or spaces."));
        assert!(q("The choice between the two formats is yours."));
        assert!(q("Once you've named the bucket it is a two-line change."));
        assert!(q("Both are defensible and it is the team's convention that settles it, so it's for you to pick."));
        assert!(q("Missing: the SMTP host. The script is on hold."));
        assert!(q("I'd go with UTF-8, but that is your call."));
        assert!(q("Nothing is changed until you've replied with the bucket's name."));
        assert!(q("It is ready to write the moment you specify the region."));
        // …and what hands nothing over.
        assert!(!q("Nothing needed from you: calc.sh already prints 5."));
        assert!(!q("If you run sh check.sh you will see it print ok."));
        assert!(!q("The bug is in the loop bound; changing < to <= fixes it."));
        assert!(!q("wordcount.sh counts lines, not words. The fix is to use wc -w."));
        assert!(!q("All good on my end. Let me know if you need anything else."));
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
