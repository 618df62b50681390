//! Unified diffs of an attempt's changes, bounded in size, for the LLM's review and for humans.

use similar::TextDiff;

/// One changed file: its path and its content before and after (`None`: did not exist / is not text).
pub struct FileDiff<'a> {
    /// Path relative to the workspace.
    pub path: &'a str,
    /// Content before the attempt.
    pub before: Option<&'a [u8]>,
    /// Content after it.
    pub after: Option<&'a [u8]>,
}

fn text(bytes: Option<&[u8]>) -> Result<&str, ()> {
    match bytes {
        None => Ok(""),
        Some(b) if b.contains(&0) => Err(()),
        Some(b) => std::str::from_utf8(b).map_err(|_| ()),
    }
}

/// A unified diff of all the files, cut at `max_bytes` with a note saying how much was left out.
pub fn unified(files: &[FileDiff<'_>], max_bytes: usize) -> String {
    let mut out = String::new();
    let mut left_out = 0usize;
    for f in files {
        let piece = match (text(f.before), text(f.after)) {
            (Ok(a), Ok(b)) => {
                let (from, to) = (
                    if f.before.is_some() { format!("a/{}", f.path) } else { "/dev/null".into() },
                    if f.after.is_some() { format!("b/{}", f.path) } else { "/dev/null".into() },
                );
                TextDiff::from_lines(a, b).unified_diff().context_radius(3).header(&from, &to).to_string()
            }
            _ => format!("Binary file {} changed\n", f.path),
        };
        if out.len() + piece.len() > max_bytes {
            left_out += 1;
            continue;
        }
        out.push_str(&piece);
    }
    if left_out > 0 {
        out.push_str(&format!("[{left_out} more changed file(s) not shown: the diff is cut at {max_bytes} bytes]\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_created_modified_deleted_and_binary() {
        let d = unified(
            &[
                FileDiff { path: "a.txt", before: Some(b"one\ntwo\n"), after: Some(b"one\n2\n") },
                FileDiff { path: "new.txt", before: None, after: Some(b"hello\n") },
                FileDiff { path: "gone.txt", before: Some(b"bye\n"), after: None },
                FileDiff { path: "img.png", before: None, after: Some(&[0, 1, 2]) },
            ],
            10_000,
        );
        assert!(d.contains("--- a/a.txt\n+++ b/a.txt\n") && d.contains("-two\n+2\n"), "{d}");
        assert!(d.contains("--- /dev/null\n+++ b/new.txt\n") && d.contains("+hello\n"), "{d}");
        assert!(d.contains("--- a/gone.txt\n+++ /dev/null\n") && d.contains("-bye\n"), "{d}");
        assert!(d.contains("Binary file img.png changed"), "{d}");
    }

    #[test]
    fn is_bounded() {
        let big = "x\n".repeat(1000);
        let d = unified(&[FileDiff { path: "big", before: None, after: Some(big.as_bytes()) }], 100);
        assert!(d.len() < 200 && d.contains("1 more changed file(s) not shown"), "{d}");
    }
}
