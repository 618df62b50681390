//! Keeps secrets out of the journal, the logs and the notifications.
//!
//! A [`Redactor`] is built from the values orch knows to be secret ([`Redactor::for_settings`]: the values of
//! `[agent.env]`, the LLM's key, the tokens of the webhook's URL and of URLs in the notify command). It replaces each
//! of them with [`MARKER`] in every form it can take in text an agent or a check prints:
//!
//! - as it is, or percent-encoded (`%41`, `%2f`, `+` for a space), byte by byte, in any mix;
//! - split across lines: any run of whitespace, `\` + newline, or the escapes `\n`, `\r`, `\t` between two of its
//!   characters;
//! - base64, standard or URL-safe alphabet, padded or not, at each of the three byte alignments — a secret inside a
//!   longer blob is encoded differently depending on where it starts, so the characters that encode only the secret
//!   are matched for each alignment, with the one or two characters on each side that carry part of it;
//! - hex, either case.
//!
//! Values shorter than [`MIN_SECRET_BYTES`] are never redacted: short values are ordinary words and numbers (a port,
//! `true`, a user name), replacing them would garble every text, and a real key is far longer.
//!
//! The journal redacts every string of every event in one place (`Event::redacted`, applied when an event is
//! staged); the cuts to length ([`head`], [`tail`]) never keep part of a word cut in two, so a secret cut at the
//! boundary does not survive the cut as a fragment the redactor could no longer recognise.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

/// What a secret is replaced with.
pub const MARKER: &str = "[redacted]";

/// Values shorter than this (trimmed) are not treated as secrets.
pub const MIN_SECRET_BYTES: usize = 8;

/// A cut inside a word drops at most this much of it (see [`head`]): longer than any secret's encoded form.
pub const MAX_CUT_WORD: usize = 512;

/// What may stand between two characters of a secret split across lines: whitespace, a `\` before a line break, or
/// the escapes of one (as JSON and shell output show them), or any of these percent-encoded.
const SEP: &str = r"(?:\\?[\t\n\r\x0b\x0c ]|\\[nrt]|%(?:0[9AaDd]|20|5[Cc]))*";

/// A line break a base64 blob may be wrapped at (and nothing else: the characters around a secret's encoding are
/// taken only when they belong to the same blob).
const WRAP: &str = r"(?:\\?\r?\n|\\n)?";

/// One character of a base64 alphabet, standard or URL-safe, raw or percent-encoded.
const B64_CHAR: &str = r"(?:[A-Za-z0-9+/_-]|%2[BbFf])";

/// Replaces known secret values, in every form listed in the module documentation, with [`MARKER`].
#[derive(Clone, Default)]
pub struct Redactor {
    /// One pattern per secret, longest secret first.
    patterns: Vec<Regex>,
    /// Environment variables holding secrets that no agent, check or notify command inherits.
    hidden_env: Vec<String>,
}

/// Never the values or the patterns (which spell them out): only how many there are.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.patterns.len()).field("hidden_env", &self.hidden_env).finish()
    }
}

impl Redactor {
    /// A redactor for these values; values shorter than [`MIN_SECRET_BYTES`] once trimmed are skipped.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut secrets: Vec<String> =
            values.into_iter().map(|v| v.as_ref().trim().to_string()).filter(|v| v.len() >= MIN_SECRET_BYTES).collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let patterns = secrets
            .iter()
            .filter_map(|s| match regex::RegexBuilder::new(&pattern(s)).size_limit(64 << 20).build() {
                Ok(r) => Some(r),
                Err(e) => {
                    // Cannot happen for an escaped literal; were it to, the plain value is still hidden.
                    tracing::error!("a secret's pattern does not compile ({} bytes): {e}", s.len());
                    Regex::new(&regex::escape(s)).ok()
                }
            })
            .collect();
        Redactor { patterns, hidden_env: Vec::new() }
    }

    /// The redactor of a run: every value the settings know to be secret — the values of each project's
    /// `[agent.env]`, the LLM's key, and the tokens in the webhook's URL and in URLs of the notify command.
    pub fn for_settings(settings: &crate::settings::Settings) -> Self {
        let mut values: Vec<String> = settings.projects.iter().flat_map(|p| p.agent.env.values().cloned()).collect();
        values.extend(settings.llm.api_key.iter().cloned());
        values.extend(url_secrets(&settings.notify.webhook));
        for url in urls_in(&settings.notify.command) {
            values.extend(url_secrets(url));
        }
        let mut r = Redactor::new(values);
        r.hidden_env.extend(Some(settings.llm.api_key_env.clone()).filter(|v| !v.is_empty()));
        r
    }

    /// Also removes these variables from the environment of the processes orch starts (see
    /// [`Redactor::hidden_env`]).
    pub fn hiding_env(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.hidden_env.extend(names);
        self
    }

    /// The environment variables holding secrets (the one `llm.api_key_env` names) that agents, checks and notify
    /// commands do not inherit from orch; `[agent.env]` passes one to an agent explicitly.
    pub fn hidden_env(&self) -> &[String] {
        &self.hidden_env
    }

    /// True when there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The text with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        self.redact_cow(text).into_owned()
    }

    /// As [`Redactor::redact`], borrowing when nothing is replaced.
    pub fn redact_cow<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for p in &self.patterns {
            if let Cow::Owned(s) = p.replace_all(&out, MARKER) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Redacts `text` where it is.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Cow::Owned(s) = self.redact_cow(text) {
            *text = s;
        }
    }

    /// A shell line as it may be recorded: its secrets redacted and every URL in it shown as [`redact_url`] does.
    pub fn command_line(&self, command: &str) -> String {
        let mut out = command.to_string();
        for url in urls_in(command) {
            out = out.replacen(url, &redact_url(url), 1);
        }
        self.redact(&out)
    }
}

/// How long [`Held`] keeps an item when nothing follows it.
pub const HOLD_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// Output items (lines) held back briefly, so that a secret split across several of them is redacted although no
/// piece alone is a secret. When a secret spans items, those held are joined into one; an item is released once the items after it
/// on the same stream are longer than any secret's form ([`MAX_CUT_WORD`]) — no secret can still run on from it —
/// or when the stream changes, pauses ([`HOLD_FOR`]) or ends.
#[derive(Debug, Default)]
pub struct Held {
    /// The stream of the items held.
    stream: String,
    /// Their texts (each redacted by itself), oldest first.
    items: std::collections::VecDeque<String>,
}

/// Items held at the most, however short.
const HOLD_ITEMS: usize = 64;

impl Held {
    /// Takes the next item (its text redacted by itself already); returns those it releases, oldest first.
    pub fn push(&mut self, r: &Redactor, stream: String, text: String) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if r.is_empty() || stream != self.stream {
            out = self.flush();
            self.stream = stream;
        }
        self.items.push_back(text);
        if r.is_empty() {
            out.extend(self.flush());
            return out;
        }
        if self.items.len() > 1 {
            let joined = self.items.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
            if let Cow::Owned(redacted) = r.redact_cow(&joined) {
                // A secret ran across a line break: what it spans is one item now.
                self.items.clear();
                self.items.push_back(redacted);
            }
        }
        loop {
            let after: usize = self.items.iter().skip(1).map(|t| t.len() + 1).sum();
            if self.items.len() > 1 && (after >= MAX_CUT_WORD || self.items.len() > HOLD_ITEMS) {
                if let Some(t) = self.items.pop_front() {
                    out.push((self.stream.clone(), t));
                }
            } else {
                break;
            }
        }
        out
    }

    /// Releases every item held, oldest first.
    pub fn flush(&mut self) -> Vec<(String, String)> {
        self.items.drain(..).map(|t| (self.stream.clone(), t)).collect()
    }
}

/// The pattern of one secret: every form listed in the module documentation.
fn pattern(secret: &str) -> String {
    let mut forms = vec![plain_or_percent(secret)];
    for align in 0..3 {
        if let Some(middle) = base64_middle(secret.as_bytes(), align) {
            forms.push(base64_form(&middle));
        }
    }
    forms.push(hex_form(secret.as_bytes()));
    forms.join("|")
}

/// Each character as it is or percent-encoded, with [`SEP`] between characters.
fn plain_or_percent(secret: &str) -> String {
    let chars: Vec<String> = secret
        .chars()
        .map(|c| {
            let mut buf = [0u8; 4];
            let pct: String = c.encode_utf8(&mut buf).bytes().map(percent).collect();
            let space = if c == ' ' { r"|\+" } else { "" };
            format!("(?:{}|{pct}{space})", regex::escape(c.encode_utf8(&mut [0u8; 4])))
        })
        .collect();
    chars.join(SEP)
}

/// `%4A` / `%4a` as a pattern.
fn percent(b: u8) -> String {
    let digit = |n: u8| match n {
        0..=9 => char::from(b'0' + n).to_string(),
        _ => {
            let up = char::from(b'A' + n - 10);
            format!("[{up}{}]", up.to_ascii_lowercase())
        }
    };
    format!("%{}{}", digit(b >> 4), digit(b & 0xf))
}

/// The base64 characters (standard alphabet, unpadded) that encode only bytes of `secret` when it starts `align`
/// bytes after a 3-byte group boundary of the blob it is in; `None` when there are too few to match safely.
fn base64_middle(secret: &[u8], align: usize) -> Option<String> {
    let mut data = vec![0u8; align];
    data.extend_from_slice(secret);
    let encoded = base64_encode(&data);
    // Character i carries bits [6i, 6i + 6): the ones wholly within the secret's bits [8·align, 8·(align + len)).
    let first = (8 * align).div_ceil(6);
    let end = 8 * (align + secret.len()) / 6;
    let middle = encoded.get(first..end)?;
    (middle.len() >= MIN_SECRET_BYTES).then(|| middle.to_string())
}

/// A base64 middle in either alphabet, raw or percent-encoded, split or not, with the characters around it that
/// carry the rest of the secret's bits (and padding).
fn base64_form(middle: &str) -> String {
    let chars: Vec<String> = middle
        .chars()
        .map(|c| match c {
            '+' => "(?:[+-]|%2[Bb])".to_string(),
            '/' => "(?:[/_]|%2[Ff])".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("(?:{B64_CHAR}{WRAP}){{0,2}}{}(?:{WRAP}{B64_CHAR}){{0,2}}(?:{WRAP}(?:=|%3[Dd])){{0,2}}", chars.join(SEP))
}

/// The bytes in hex, either case, split or not.
fn hex_form(secret: &[u8]) -> String {
    let digits: Vec<String> = secret
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|n| match n {
            0..=9 => char::from(b'0' + n).to_string(),
            _ => {
                let low = char::from(b'a' + n - 10);
                format!("[{low}{}]", low.to_ascii_uppercase())
            }
        })
        .collect();
    format!("(?:{})", digits.join(SEP))
}

/// Standard base64, unpadded.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

/// Whether a piece of a URL looks like a token rather than a word: long, with letters and digits, or very long.
fn looks_like_token(piece: &str) -> bool {
    let letters = piece.chars().any(|c| c.is_ascii_alphabetic());
    let digits = piece.chars().any(|c| c.is_ascii_digit());
    piece.len() >= MIN_SECRET_BYTES && ((letters && digits) || piece.len() >= 20)
}

/// The parts of a URL that may be credentials: its user information, and every path segment, query value and
/// fragment that looks like a token (see [`looks_like_token`]); the whole part after the host too.
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else { return Vec::new() };
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(cut);
    let mut out = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        out.push(userinfo.to_string());
        out.extend(userinfo.split(':').map(str::to_string));
    }
    if looks_like_token(after) {
        out.push(after.to_string());
    }
    out.extend(after.split(['/', '?', '&', '=', '#', ';']).filter(|p| looks_like_token(p)).map(str::to_string));
    out
}

/// A URL as it may be recorded: scheme, host and port, and `/…` for whatever followed (user information, path,
/// query, fragment — where webhooks keep their tokens).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.is_empty() { String::new() } else { "…".to_string() };
    };
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(cut);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((_, host)) => (true, host),
        None => (false, authority),
    };
    let more = userinfo || !(after.is_empty() || after == "/");
    format!("{scheme}://{host}{}", if more { "/…" } else { "" })
}

/// The URLs (`scheme://…` up to whitespace or a quote) in a text.
fn urls_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let at = from + i;
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
            .last()
            .map(|(j, _)| j)
            .unwrap_or(at);
        let end = text[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .map_or(text.len(), |j| at + j);
        if start < at {
            out.push(&text[start..end]);
        }
        from = end.max(at + 3);
    }
    out
}

/// Cuts `text` to at most `max` bytes at a character boundary, keeping the head. A word the cut falls in is dropped
/// (up to [`MAX_CUT_WORD`] bytes of it), so that no fragment of a secret cut in two survives.
pub fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if text[end..].starts_with(|c: char| !c.is_whitespace()) {
        let mut from = end.saturating_sub(MAX_CUT_WORD);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        end = match text[from..end].rfind(char::is_whitespace) {
            Some(i) => from + i,
            None => from,
        };
    }
    &text[..end]
}

/// Cuts `text` to at most `max` bytes at a character boundary, keeping the tail. A word the cut falls in is dropped
/// (up to [`MAX_CUT_WORD`] bytes of it), as [`head`] does.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    if text[..start].ends_with(|c: char| !c.is_whitespace()) {
        let mut to = (start + MAX_CUT_WORD).min(text.len());
        while !text.is_char_boundary(to) {
            to -= 1;
        }
        start = match text[start..to].find(char::is_whitespace) {
            Some(i) => start + i,
            None => to,
        };
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-4f9a1c77e0b24d3e9a";

    fn r() -> Redactor {
        Redactor::new([KEY])
    }

    fn hidden(text: &str) -> bool {
        let out = r().redact(text);
        out.contains(MARKER) && !out.contains(KEY) && !out.contains(&KEY[..12]) && !out.contains(&KEY[14..])
    }

    fn base64_url(data: &[u8]) -> String {
        base64_encode(data).replace('+', "-").replace('/', "_")
    }

    fn padded(data: &[u8]) -> String {
        let mut s = base64_encode(data);
        while !s.len().is_multiple_of(4) {
            s.push('=');
        }
        s
    }

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let r = Redactor::new(["sk-abcdefgh", "sk-abcdefghij", "no"]);
        assert_eq!(r.redact("key sk-abcdefghij and sk-abcdefgh, no"), "key [redacted] and [redacted], no");
    }

    #[test]
    fn short_values_are_not_secrets() {
        let r = Redactor::new(["8080", "true", "debug", "1234567"]);
        assert!(r.is_empty());
        assert_eq!(r.redact("port 8080 true debug 1234567"), "port 8080 true debug 1234567");
    }

    #[test]
    fn the_plain_and_percent_encoded_forms() {
        assert!(hidden(&format!("export KEY={KEY};")));
        let pct: String = KEY.bytes().map(|b| format!("%{b:02X}")).collect();
        assert!(hidden(&format!("GET /?k={pct}")));
        assert!(hidden(&format!("GET /?k={}", pct.to_lowercase())));
        // Only the reserved characters encoded, as a URL encoder does.
        assert!(hidden(&format!("k={}", KEY.replace('-', "%2D"))));
        let r = Redactor::new(["my secret phrase"]);
        assert_eq!(r.redact("q=my+secret%20phrase&x"), "q=[redacted]&x");
    }

    #[test]
    fn split_across_lines() {
        let (a, b) = KEY.split_at(11);
        for sep in ["\n", "\r\n", "\\\n", " \\\n  ", "\\n", "\n\n\t"] {
            assert!(hidden(&format!("{a}{sep}{b}")), "{sep:?}");
        }
    }

    #[test]
    fn base64_at_each_alignment_in_either_alphabet() {
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            for suffix in ["", "x", "xy", "xyz"] {
                let data = format!("{prefix}{KEY}{suffix}");
                for encoded in [base64_encode(data.as_bytes()), padded(data.as_bytes()), base64_url(data.as_bytes())] {
                    let out = r().redact(&format!("blob {encoded} end"));
                    assert!(out.contains(MARKER), "{prefix:?}/{suffix:?}: {out}");
                    assert!(out.starts_with("blob ") && out.ends_with(" end"), "{out}");
                    // Nothing of the encoding that carries the key is left: the blob is gone but the ends.
                    assert!(out.len() <= "blob ".len() + MARKER.len() + " end".len() + 8, "{out}");
                }
            }
        }
    }

    #[test]
    fn base64_wrapped_across_lines() {
        let encoded = padded(format!("token={KEY}").as_bytes());
        let (a, b) = encoded.split_at(encoded.len() / 2);
        let out = r().redact(&format!("{a}\n{b}\n"));
        assert!(out.contains(MARKER), "{out}");
        let middle = base64_middle(KEY.as_bytes(), "token=".len() % 3).expect("a middle");
        assert!(!out.replace('\n', "").contains(&middle[..middle.len() / 2]), "{out}");
    }

    #[test]
    fn hex_in_either_case() {
        let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(hidden(&format!("dump {hex}")));
        assert!(hidden(&format!("dump {}", hex.to_uppercase())));
    }

    #[test]
    fn a_secret_split_across_items_is_joined_and_redacted() {
        let r = r();
        let mut held = Held::default();
        let out = |v: Vec<(String, String)>| v.into_iter().map(|(_, t)| t).collect::<Vec<_>>();
        assert!(held.push(&r, "stdout".into(), "first line".into()).is_empty());
        // The key across three lines.
        let (a, rest) = KEY.split_at(9);
        let (b, c) = rest.split_at(8);
        assert!(held.push(&r, "stdout".into(), format!("key: {a}")).is_empty());
        assert!(held.push(&r, "stdout".into(), b.to_string()).is_empty());
        assert!(held.push(&r, "stdout".into(), format!("{c} end")).is_empty());
        let joined = format!("first line\nkey: {MARKER} end");
        assert_eq!(out(held.push(&r, "stderr".into(), "other".into())), [joined]);
        // A long line after an item releases it.
        assert_eq!(out(held.push(&r, "stderr".into(), "x".repeat(MAX_CUT_WORD))), ["other"]);
        assert_eq!(out(held.flush()), ["x".repeat(MAX_CUT_WORD)]);
        assert!(held.flush().is_empty());
    }

    #[test]
    fn the_debug_form_never_shows_a_secret() {
        assert_eq!(format!("{:?}", r()), "Redactor { secrets: 1, hidden_env: [] }");
    }

    #[test]
    fn cuts_at_char_boundaries() {
        assert_eq!(head("h é llo", 3), "h");
        assert_eq!(tail("h é llo", 5), " llo");
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(head("abc", 10), "abc");
    }

    #[test]
    fn a_cut_never_keeps_part_of_a_word() {
        let text = format!("the key is {KEY} and more");
        for max in 0..text.len() {
            let h = head(&text, max);
            assert!(h.len() <= max);
            assert!(!h.contains(&KEY[..4]) || h.contains(KEY), "{max}: {h:?}");
            let t = tail(&text, max);
            assert!(t.len() <= max);
            assert!(!t.contains(&KEY[KEY.len() - 4..]) || t.contains(KEY), "{max}: {t:?}");
        }
        // A word longer than the cut's reach loses that much, no more.
        let long = "x".repeat(3 * MAX_CUT_WORD);
        assert_eq!(head(&long, 2 * MAX_CUT_WORD).len(), MAX_CUT_WORD);
        assert_eq!(tail(&long, 2 * MAX_CUT_WORD).len(), MAX_CUT_WORD);
    }

    #[test]
    fn urls_keep_scheme_and_host_only() {
        assert_eq!(redact_url("https://hooks.example/services/T0/B0/XYZ123abc"), "https://hooks.example/…");
        assert_eq!(redact_url("http://user:pw@127.0.0.1:9/x?token=1"), "http://127.0.0.1:9/…");
        assert_eq!(redact_url("https://hooks.example/"), "https://hooks.example");
        assert_eq!(redact_url("not a url"), "…");
        let s = url_secrets("https://u:hunter2hunter2@h.example/services/T01234567/hook?token=abc123def456&x=1");
        for want in ["hunter2hunter2", "T01234567", "abc123def456"] {
            assert!(s.iter().any(|x| x == want), "{want}: {s:?}");
        }
        assert!(!s.iter().any(|x| x == "services"), "{s:?}");
    }

    #[test]
    fn a_command_line_shows_no_token() {
        let line = format!("curl -H 'Authorization: Bearer {KEY}' https://hooks.example/T012345678?k=v -d @-");
        let r = Redactor::new(std::iter::once(KEY.to_string()).chain(urls_in(&line).into_iter().flat_map(url_secrets)));
        let out = r.command_line(&line);
        assert_eq!(out, "curl -H 'Authorization: Bearer [redacted]' https://hooks.example/… -d @-");
    }

    mod properties {
        use super::*;
        use base64::Engine as _;
        use proptest::prelude::*;

        /// Text around the secret, from an alphabet the secret does not use.
        fn filler() -> impl Strategy<Value = String> {
            "[xyz ]{0,30}"
        }

        /// Every window of four characters of `s`.
        fn windows(s: &str) -> Vec<String> {
            let c: Vec<char> = s.chars().collect();
            c.windows(4).map(|w| w.iter().collect()).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any secret, plain, percent-encoded or split at any point, then cut anywhere: no four characters of it
            /// in a row survive.
            #[test]
            fn any_secret_any_split_any_cut(
                secret in "[A-Zbf-qsuvw0-9]{8,40}",
                before in filler(),
                after in filler(),
                split in any::<prop::sample::Index>(),
                sep in prop::sample::select(vec!["", "\n", "\r\n", "\\\n", " ", "\n\t"]),
                percent in any::<bool>(),
                cut in any::<prop::sample::Index>(),
            ) {
                let r = Redactor::new([&secret]);
                let at = split.index(secret.len() + 1);
                let shown = format!("{}{sep}{}", &secret[..at], &secret[at..]);
                let shown = if percent { shown.bytes().map(|b| format!("%{b:02x}")).collect() } else { shown };
                let text = format!("{before} {shown} {after}");
                let out = r.redact(&text);
                for w in windows(&secret) {
                    prop_assert!(!out.contains(&w), "{w} in {out:?}");
                }
                // The journal's order: redact the whole text, then cut; and a cut first never leaves a fragment.
                let c = cut.index(text.len() + 1);
                for piece in [head(&out, c), tail(&out, c)] {
                    prop_assert!(windows(&secret).iter().all(|w| !piece.contains(w.as_str())));
                }
                if sep.is_empty() && !percent {
                    for piece in [r.redact(head(&text, c)), r.redact(tail(&text, c))] {
                        prop_assert!(windows(&secret).iter().all(|w| !piece.contains(w.as_str())), "{piece:?}");
                    }
                }
            }

            /// Any bytes around a secret, base64-encoded by the `base64` crate in any of its four engines, wrapped
            /// at any width: none of the characters that encode the secret alone are left.
            #[test]
            fn any_secret_in_any_base64_blob(
                secret in "[ -~]{8,40}",
                before in prop::collection::vec(any::<u8>(), 0..12),
                after in prop::collection::vec(any::<u8>(), 0..12),
                engine in 0usize..4,
                wrap in prop::option::of(4usize..80),
            ) {
                prop_assume!(secret.trim().len() == secret.len());
                let r = Redactor::new([&secret]);
                let mut data = before.clone();
                data.extend_from_slice(secret.as_bytes());
                data.extend_from_slice(&after);
                let e = base64::engine::general_purpose::STANDARD;
                let encoded = match engine {
                    0 => e.encode(&data),
                    1 => base64::engine::general_purpose::STANDARD_NO_PAD.encode(&data),
                    2 => base64::engine::general_purpose::URL_SAFE.encode(&data),
                    _ => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data),
                };
                let shown = match wrap {
                    None => encoded.clone(),
                    Some(w) => encoded.as_bytes().chunks(w).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\n"),
                };
                let out = r.redact(&format!("<{shown}>"));
                // The characters carrying only the secret's bits.
                let first = (8 * before.len()).div_ceil(6);
                let end = 8 * (before.len() + secret.len()) / 6;
                let middle = &encoded[first..end];
                let joined = out.replace('\n', "");
                for w in windows(middle) {
                    prop_assert!(!joined.contains(&w), "{w} of {middle} in {out:?}");
                }
            }
        }
    }
}
