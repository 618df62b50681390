//! Provider pauses: when a rate-limited provider may be used again, from what its agent said. Pure.

/// When a rate-limited provider may be used again, if its agent's answer says: a Unix time after a `|` (Claude
/// Code's "usage limit reached|1767225600"), or "try again in N seconds|minutes|hours" / "retry after N seconds".
pub fn rate_limit_reset(text: &str, now_ms: i64) -> Option<i64> {
    if let Some((_, tail)) = text.rsplit_once('|') {
        let digits: String = tail.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(secs) = digits.parse::<i64>() {
            if digits.len() >= 9 && secs * 1000 > now_ms {
                return Some(secs * 1000);
            }
        }
    }
    let lower = text.to_lowercase();
    for lead in ["try again in ", "retry after ", "retry in ", "resets in "] {
        if let Some(at) = lower.find(lead) {
            let rest = &lower[at + lead.len()..];
            let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let Ok(n) = n.parse::<i64>() else { continue };
            let unit = rest[n.to_string().len()..].trim_start();
            let secs = if unit.starts_with("ms") || unit.starts_with("millisecond") {
                n / 1000
            } else if unit.starts_with('h') {
                n * 3600
            } else if unit.starts_with('m') {
                n * 60
            } else {
                n
            };
            return Some(now_ms + secs.max(1) * 1000);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::rate_limit_reset;

    #[test]
    fn the_reset_time_an_agent_gives_is_read() {
        let now = 1_767_225_000_000;
        assert_eq!(rate_limit_reset("Claude AI usage limit reached|1767225600", now), Some(1_767_225_600_000));
        assert_eq!(rate_limit_reset("Rate limited. Try again in 30 seconds.", now), Some(now + 30_000));
        assert_eq!(rate_limit_reset("429: retry after 2 minutes", now), Some(now + 120_000));
        assert_eq!(rate_limit_reset("limit hit; resets in 1 hour", now), Some(now + 3_600_000));
        assert_eq!(rate_limit_reset("API Error: 429 rate_limit_error", now), None);
        // A time in the past is no reset time.
        assert_eq!(rate_limit_reset("usage limit reached|1000000000", now), None);
    }
}

/// Until when (ms since the epoch) a provider is paused after its `streak`-th rate limit in a row (from 0), and
/// why: the reset time its agent gave in `text`, else a backoff from `base_ms` that doubles with each rate limit in
/// a row, capped at 15 minutes (or `base_ms` if that is longer).
pub fn pause_until(text: &str, base_ms: i64, streak: u32, now_ms: i64) -> (i64, String) {
    match rate_limit_reset(text, now_ms) {
        Some(t) => (t, "until the reset time the agent gave".to_string()),
        None => {
            let cap = (15 * 60 * 1000).max(base_ms);
            let wait = base_ms.saturating_mul(1i64 << streak.min(20)).min(cap);
            (now_ms + wait, format!("for {} s (rate limit {} in a row)", wait / 1000, streak + 1))
        }
    }
}

#[cfg(test)]
mod pause_tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_and_is_capped_and_a_given_reset_time_wins() {
        let now = 1_000_000;
        assert_eq!(pause_until("rate limited", 60_000, 0, now).0, now + 60_000);
        assert_eq!(pause_until("rate limited", 60_000, 2, now).0, now + 240_000);
        assert_eq!(pause_until("rate limited", 60_000, 30, now).0, now + 15 * 60 * 1000);
        let (until, why) = pause_until("try again in 7 seconds", 60_000, 3, now);
        assert_eq!((until, why.as_str()), (now + 7_000, "until the reset time the agent gave"));
    }
}
