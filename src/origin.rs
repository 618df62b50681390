//! Who is asking: a human, or a process orch started for an attempt. Every process orch starts carries a tag in its
//! environment (`ORCH_PROCESS_TAG`, [`orch_actors::TAG_VAR`]), which its descendants inherit, and where cgroup v2
//! is in force it runs in a cgroup orch made for it ([`orch_actors::cgroup`]), which its descendants cannot leave;
//! so a process works for an attempt when it, or one of its ancestors, is in such a cgroup (even one that cleared
//! its environment and had itself adopted by init), when its own environment or an ancestor's carries the tag (an
//! ancestor's counts too, so that `env -i` or `env -u` does not wash the tag off), or when it descends from the run
//! itself. Such a process may read the journal, never give a verdict: those are a human's.

use orch_actors::TAG_VAR;

/// How far up the parent chain to look.
const MAX_DEPTH: usize = 64;

/// Where a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No process up the chain works for an attempt.
    Human,
    /// A process of an attempt: which (e.g. `p/t#2`), or what else is known.
    Attempt(String),
    /// Who is asking cannot be told (no peer credentials, or the process is gone).
    Unknown(String),
}

impl Origin {
    /// Why a request that changes something is refused; `None` when it may go ahead.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Origin::Human => None,
            Origin::Attempt(a) => {
                Some(format!("refused: requests from inside an attempt ({a}) may only read; verdicts are a human's"))
            }
            Origin::Unknown(why) => Some(format!(
                "refused: cannot tell whether this request comes from inside an attempt ({why}); only reads are \
                 served then"
            )),
        }
    }
}

/// Where process `pid` stands. `run`: the pid of the run serving the request, whose descendants are all its own
/// processes (agents, checks), never a human's.
pub fn of_pid(pid: u32, run: Option<u32>) -> Origin {
    let mut cur = pid;
    for depth in 0..MAX_DEPTH {
        if cur == 0 {
            break;
        }
        if Some(cur) == run && depth > 0 {
            return Origin::Attempt("a process of this run".to_string());
        }
        if let Some(tag) = orch_actors::cgroup::cgroup_of(cur).as_deref().and_then(orch_actors::cgroup::tag_of_path) {
            return Origin::Attempt(describe(&tag));
        }
        match std::fs::read(format!("/proc/{cur}/environ")) {
            Ok(env) => {
                if let Some(tag) = tag_in(&env) {
                    return Origin::Attempt(describe(&tag));
                }
            }
            // The asker itself must be readable (it is ours, and alive while it waits); an ancestor may be
            // another user's (sshd, a root shell), and such a process is no agent of ours.
            Err(e) if depth == 0 => return Origin::Unknown(format!("process {cur}: {e}")),
            Err(_) => {}
        }
        if cur == 1 {
            break;
        }
        match parent(cur) {
            Some(p) => cur = p,
            None if depth == 0 => return Origin::Unknown(format!("process {cur} is gone")),
            None => break,
        }
    }
    Origin::Human
}

/// Where this very process stands (its own environment first, then its ancestors).
pub fn of_self() -> Origin {
    if let Some(tag) = std::env::var_os(TAG_VAR) {
        return Origin::Attempt(describe(&tag.to_string_lossy()));
    }
    of_pid(std::process::id(), None)
}

fn tag_in(environ: &[u8]) -> Option<String> {
    let prefix = format!("{TAG_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The parent of `pid`, from `/proc/<pid>/stat` (`pid (comm) state ppid …`; comm may hold `)`).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `orch:HASH:p/t#2/UNIQUE` → `p/t#2`; any other tag → what it is.
fn describe(tag: &str) -> String {
    tag.strip_prefix("orch:")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(_, attempt)| attempt.rsplit_once('/'))
        .map(|(attempt, _)| attempt.to_string())
        .unwrap_or_else(|| "a process orch started".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_its_attempt() {
        assert_eq!(describe("orch:0123456789abcdef:p/t#2/123-456-7"), "p/t#2");
        assert_eq!(describe("123-456-7"), "a process orch started");
        assert_eq!(tag_in(b"A=1\0ORCH_PROCESS_TAG=x/y\0B=2\0").as_deref(), Some("x/y"));
        assert_eq!(tag_in(b"A=1\0ORCH_PROCESS_TAGX=x\0"), None);
    }

    #[test]
    fn the_parent_chain_is_read_and_untagged_processes_are_human() {
        assert_eq!(parent(std::process::id()), Some(std::os::unix::process::parent_id()));
        // The test runner is not inside an attempt (unless it is itself run by orch).
        if std::env::var_os(TAG_VAR).is_none() {
            assert_eq!(of_pid(std::process::id(), None), Origin::Human);
        }
        assert!(matches!(of_pid(u32::MAX - 1, None), Origin::Unknown(_)));
    }

    #[test]
    fn a_child_stripped_of_its_environment_is_still_inside() {
        // `env -i sleep` under a tagged shell: the sleeper has no tag, its parent has.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "env -i sleep 5 & echo $!; wait"])
            .env(TAG_VAR, "orch:0123456789abcdef:p/t#2/1-2-3")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(sh.stdout.take().unwrap()), &mut line).unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300)); // until `env -i` has exec'd `sleep`
        let environ = std::fs::read(format!("/proc/{sleeper}/environ")).unwrap_or_default();
        let origin = of_pid(sleeper, None);
        let _ = sh.kill();
        let _ = std::process::Command::new("kill").arg(sleeper.to_string()).status();
        let _ = sh.wait();
        assert!(tag_in(&environ).is_none());
        assert_eq!(origin, Origin::Attempt("p/t#2".to_string()));
    }

    #[test]
    fn a_process_in_an_attempts_cgroup_is_inside_without_its_tag_or_its_parents() {
        let h = match orch_actors::cgroup::hierarchy() {
            Ok(h) => h,
            Err(why) => {
                eprintln!("not tested: cgroup v2 cannot be used here ({why})");
                return;
            }
        };
        let group = h.create(&format!("orch:0123456789abcdef:p/t#2/{}-origin", std::process::id())).unwrap();
        // No environment at all, and its parent (the trampoline's shell) replaced by `sleep` itself.
        let mut sleeper = std::process::Command::new(h.shell())
            .arg("-c")
            .arg(orch_actors::cgroup::TRAMPOLINE)
            .arg(group.procs())
            .args(["/bin/sleep", "5"])
            .env_clear()
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut origin = of_pid(sleeper.id(), None);
        while origin == Origin::Human && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5)); // until the trampoline has entered the cgroup
            origin = of_pid(sleeper.id(), None);
        }
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let _ = group.end(orch_actors::cgroup::END_WAIT);
        assert_eq!(origin, Origin::Attempt("p/t#2".to_string()));
    }

    #[test]
    fn a_descendant_of_the_run_is_inside() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep").arg("5").env_clear().spawn().unwrap();
        let origin = of_pid(child.id(), Some(me));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(origin, Origin::Attempt("a process of this run".to_string()));
        assert!(origin.refusal().unwrap().contains("may only read; verdicts are a human's"));
    }
}
