//! Provider pauses: when a rate-limited provider may be used again, from what its agent said. Pure.

/// A reset time further away than this is taken as this far (no agent's word pauses a provider longer than the
/// longest limit the settings allow, and no arithmetic on it overflows).
const MAX_PAUSE_MS: i64 = crate::validate::MAX_DURATION.as_millis() as i64;

/// When a rate-limited provider may be used again, if its agent's answer says: a Unix time after a `|` (Claude
/// Code's "usage limit reached|1767225600"), or "try again in N seconds|minutes|hours" / "retry after N seconds".
pub fn rate_limit_reset(text: &str, now_ms: i64) -> Option<i64> {
    let latest = now_ms.saturating_add(MAX_PAUSE_MS);
    if let Some((_, tail)) = text.rsplit_once('|') {
        let digits: String = tail.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(secs) = digits.parse::<i64>() {
            let at = secs.saturating_mul(1000);
            if digits.len() >= 9 && at > now_ms {
                return Some(at.min(latest));
            }
        }
    }
    let lower = text.to_lowercase();
    for lead in ["try again in ", "retry after ", "retry in ", "resets in "] {
        if let Some(at) = lower.find(lead) {
            let rest = &lower[at + lead.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let Ok(n) = digits.parse::<i64>() else { continue };
            // The digits are ASCII: their length in bytes is where the unit starts (leading zeros included).
            let unit = rest[digits.len()..].trim_start();
            let secs = if unit.starts_with("ms") || unit.starts_with("millisecond") {
                n / 1000
            } else if unit.starts_with('h') {
                n.saturating_mul(3600)
            } else if unit.starts_with('m') {
                n.saturating_mul(60)
            } else {
                n
            };
            return Some(now_ms.saturating_add(secs.max(1).saturating_mul(1000)).min(latest));
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

    #[test]
    fn an_agent_giving_an_absurd_reset_time_pauses_for_a_week_at_most_and_never_panics() {
        // Each of these overflowed i64 arithmetic (a panic in the scheduler, in a debug build): an agent's output.
        let now = 1_767_225_000_000;
        let week = crate::validate::MAX_DURATION.as_millis() as i64;
        for text in [
            "usage limit reached|9223372036854775807",
            "try again in 9223372036854775807 hours",
            "retry after 3074457345618258602 minutes",
            "resets in 9223372036854775807 seconds",
        ] {
            let at = rate_limit_reset(text, now);
            assert!(at.is_some_and(|t| t > now && t <= now + week), "{text}: {at:?}");
        }
        assert_eq!(rate_limit_reset("try again in 9 hours", i64::MAX), Some(i64::MAX));
        assert_eq!(rate_limit_reset("try again in 007 seconds", now), Some(now + 7_000));
        assert_eq!(rate_limit_reset("try again in 007 hours", now), Some(now + 7 * 3_600_000));
        let (until, _) = super::super::pauses::pause_until("", i64::MAX, u32::MAX, now);
        assert!(until > now);
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
            (
                now_ms.saturating_add(wait),
                format!("for {} s (rate limit {} in a row)", wait / 1000, streak.saturating_add(1)),
            )
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
