//! Containment in cgroup v2: every process tree orch supervises (an agent, a check, a notify command) runs in a
//! cgroup of its own, `<orch's own cgroup>/orch-<pid>/<its tag>`, and when it ends the whole cgroup is killed with
//! `cgroup.kill` — whatever the tree started and however: `setsid`, a double fork, `env -i`. A process is born in
//! its parent's cgroup and leaves it only by a write into another cgroup's `cgroup.procs`, so nothing slips out the
//! way a process leaves its process group or washes its environment tag off. The tag sweep
//! ([`crate::process::kill_tagged`]) still runs after it, as a belt; where no cgroup can be had, it is the fallback.
//!
//! **Placed before it runs anything.** The child must be inside its cgroup before the program runs one
//! instruction: a pid written into `cgroup.procs` by orch after the spawn leaves a window in which the program may
//! already have forked a child that stays outside (and cleared its environment too). The kernel's own ways —
//! `clone3` with `CLONE_INTO_CGROUP`, or a `pre_exec` hook that writes the pid between fork and exec — need
//! `unsafe`, which this workspace forbids. So the child is started through a one-line `sh` trampoline,
//! [`TRAMPOLINE`], with `$0` the cgroup's `cgroup.procs`: the shell writes its own pid (`$$`) there and then
//! *execs* the program — the same process, already inside, before the program started; everything it starts is
//! born inside. Orch looks the program up on `PATH` before spawning it, so that a missing program is still an
//! error to start ([`crate::process::run`]), not a shell's exit 127. Cost: one exec of `sh` per process (about a
//! millisecond); the Landlock sandbox lets the trampoline write that one file and nothing else of the cgroup.
//!
//! **Where.** The cgroup2 mount is found in `/proc/self/mountinfo` (pure v2 at `/sys/fs/cgroup`, hybrid at
//! `/sys/fs/cgroup/unified`, wherever it is), orch's own cgroup in `/proc/self/cgroup` (`0::PATH`). [`hierarchy`]
//! probes once per process: that both are there, that `orch-<pid>` can be created below orch's own cgroup, that
//! the kernel has `cgroup.kill` (Linux 5.14), and that a process can really be moved into a cgroup there (root, or a
//! delegated subtree). When one of them fails it says which, and the tag sweep alone is in force.
//!
//! **Stale cgroups.** A supervisor killed with SIGKILL leaves its `orch-<pid>` behind with whatever still runs in
//! it. The probe kills and removes every `orch-<pid>` beside its own whose process is gone (or is itself: an
//! earlier process with the same pid), before any attempt starts.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The trampoline run as `sh -c TRAMPOLINE CGROUP_PROCS PROGRAM ARGS…`: the shell enters the cgroup, then becomes
/// the program. A shell that cannot enter it exits 125 saying so, and the program does not run.
pub const TRAMPOLINE: &str =
    r#"{ echo $$ > "$0"; } 2>/dev/null || { echo "orch: cannot enter the cgroup of $0" >&2; exit 125; }; exec "$@""#;

/// How long ending a cgroup may wait for its processes to be gone.
pub const END_WAIT: Duration = Duration::from_secs(5);

/// The prefix of the directory each orch process keeps its cgroups in, `orch-<pid>`.
const BASE_PREFIX: &str = "orch-";

/// Where this orch process creates its cgroups.
#[derive(Debug)]
pub struct Hierarchy {
    /// `<parent>/orch-<pid>`.
    base: PathBuf,
    /// The shell that runs [`TRAMPOLINE`].
    shell: PathBuf,
}

static PROBED: OnceLock<Result<Hierarchy, String>> = OnceLock::new();

/// Held while `orch-<pid>` is created or removed, and while a cgroup is created in it.
static BASE_LOCK: Mutex<()> = Mutex::new(());

/// This process's cgroups, or why there are none (said once by whoever starts a run). Probed on first use, which
/// also ends the stale cgroups of dead orch processes; blocking (a few file operations and one short-lived `sh`).
pub fn hierarchy() -> Result<&'static Hierarchy, &'static str> {
    PROBED.get_or_init(probe).as_ref().map_err(String::as_str)
}

/// This process's cgroups if they were probed and can be used; never probes.
pub fn probed() -> Option<&'static Hierarchy> {
    PROBED.get().and_then(|p| p.as_ref().ok())
}

impl Hierarchy {
    /// `<orch's own cgroup>/orch-<pid>`, where this process's cgroups are.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The shell that runs [`TRAMPOLINE`].
    pub fn shell(&self) -> &Path {
        &self.shell
    }

    /// A new, empty cgroup for the process tree tagged `tag` (the name is the tag, escaped: see [`leaf_name`]).
    pub fn create(&self, tag: &str) -> Result<Group, String> {
        let path = self.base.join(leaf_name(tag));
        let _held = BASE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        match std::fs::create_dir(&self.base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create the cgroup {}: {e}", self.base.display())),
        }
        std::fs::create_dir(&path).map_err(|e| format!("cannot create the cgroup {}: {e}", path.display()))?;
        Ok(Group { path, ended: false })
    }

    /// Removes `orch-<pid>` when no cgroup of this process is left in it (at the end of a run); a later
    /// [`Hierarchy::create`] makes it again.
    pub fn release(&self) {
        let _held = BASE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::remove_dir(&self.base);
    }
}

/// One process tree's cgroup. [`Group::end`] kills what is in it and removes it; dropped without that (the
/// supervising future was dropped), it is killed and removed all the same, without waiting.
#[derive(Debug)]
pub struct Group {
    path: PathBuf,
    ended: bool,
}

impl Group {
    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its `cgroup.procs`: a pid written there moves that process in.
    pub fn procs(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Kills every process in it (and in any cgroup beneath it), waits until they are gone (at most `wait`), and
    /// removes it. Returns how many processes were killed; an error names the cgroup and what failed (it is then
    /// left for the next start of orch to remove).
    pub fn end(mut self, wait: Duration) -> Result<u32, String> {
        self.ended = true;
        end_tree(&self.path, wait)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        if remove_tree(&self.path).is_err() {
            // Still populated for a moment: removed once it is empty, off the dropping thread.
            let path = self.path.clone();
            let _ = std::thread::Builder::new().name("orch-cgroup".into()).spawn(move || {
                let _ = end_tree(&path, END_WAIT);
            });
        }
    }
}

/// Kills everything in the cgroup at `path`, waits (at most `wait`) until it is empty, removes it with every
/// cgroup beneath it; how many processes there were.
fn end_tree(path: &Path, wait: Duration) -> Result<u32, String> {
    let killed = count_procs(path);
    std::fs::write(path.join("cgroup.kill"), "1")
        .map_err(|e| format!("cannot kill the cgroup {}: {e}", path.join("cgroup.kill").display()))?;
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        match populated(path) {
            Ok(false) => break,
            Ok(true) if started.elapsed() >= wait => {
                return Err(format!(
                    "the cgroup {} still has processes {} ms after cgroup.kill",
                    path.display(),
                    wait.as_millis()
                ))
            }
            Ok(true) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    remove_tree(path).map_err(|e| format!("cannot remove the cgroup {}: {e}", path.display()))?;
    Ok(killed)
}

/// Whether a process is left in the cgroup or beneath it (`populated` in `cgroup.events`).
fn populated(path: &Path) -> Result<bool, String> {
    let events = path.join("cgroup.events");
    let text = std::fs::read_to_string(&events).map_err(|e| format!("{}: {e}", events.display()))?;
    Ok(text.lines().any(|l| l.trim() == "populated 1"))
}

/// The processes in the cgroup and in every cgroup beneath it.
fn count_procs(path: &Path) -> u32 {
    let own = std::fs::read_to_string(path.join("cgroup.procs")).map(|t| t.lines().count() as u32).unwrap_or(0);
    let below: u32 = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| count_procs(&e.path()))
        .sum();
    own + below
}

/// Removes an empty cgroup and the cgroups beneath it (an agent with the rights may have made some), deepest first.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)?.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(path)
}

/// The cgroup's name for a tag: the tag with every byte outside `[A-Za-z0-9._:#=+,@-]` written `%XX` (a `/` too,
/// so that it is one directory); past 200 bytes, its first 160 and `~` and a digest of the whole.
pub fn leaf_name(tag: &str) -> String {
    let mut name = String::with_capacity(tag.len());
    for b in tag.bytes() {
        if b.is_ascii_alphanumeric() || b".:#=+,@-_".contains(&b) {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    if name.len() > 200 {
        let mut cut: usize = 160;
        // Never in the middle of a `%XX`.
        while cut > 0 && name[cut.saturating_sub(2)..cut].contains('%') {
            cut -= 1;
        }
        let digest = blake3::hash(tag.as_bytes()).to_hex();
        name = format!("{}~{}", &name[..cut], &digest[..16]);
    }
    name
}

/// The tag a cgroup's name stands for ([`leaf_name`] undone); a shortened name is returned as it is.
fn tag_of_leaf(name: &str) -> String {
    if name.contains('~') {
        return name.to_string();
    }
    decode_escapes(name, b'%', 2, 16)
}

/// When the cgroup path `path` (as `/proc/PID/cgroup` gives it) lies in a cgroup orch made for a process tree
/// (`…/orch-<pid>/<name>/…`), the tag that tree was started with.
pub fn tag_of_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    parts.windows(2).find_map(|w| is_base_name(w[0]).then(|| tag_of_leaf(w[1])))
}

/// Process `pid`'s cgroup v2 path (the `0::` line of `/proc/PID/cgroup`).
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    own_cgroup(&text)
}

fn is_base_name(name: &str) -> bool {
    name.strip_prefix(BASE_PREFIX).is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The `0::PATH` entry of a `/proc/PID/cgroup`.
fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_end_matches(" (deleted)").to_string())
}

/// The cgroup2 mounts in a `/proc/self/mountinfo`: (the root of the hierarchy mounted, the mount point).
fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = left.split_whitespace().collect();
            Some((unescape(fields.get(3)?), PathBuf::from(unescape(fields.get(4)?))))
        })
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    decode_escapes(field, b'\\', 3, 8)
}

/// `text` with each `marker` followed by `digits` digits in `radix` replaced by the byte they stand for; anything
/// else is kept as it is.
fn decode_escapes(text: &str, marker: u8, digits: usize, radix: u32) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == marker).then(|| text.get(i + 1..i + 1 + digits)).flatten();
        match code.and_then(|c| u8::from_str_radix(c, radix).ok()) {
            Some(b) => {
                out.push(b);
                i += 1 + digits;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// orch's own cgroup as a directory: the first cgroup2 mount whose hierarchy holds it.
fn own_directory(mounts: &[(String, PathBuf)], own: &str) -> Option<PathBuf> {
    mounts.iter().find_map(|(root, point)| {
        let relative = if root == "/" {
            own
        } else {
            let rest = own.strip_prefix(root.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        let dir = point.join(relative.trim_start_matches('/'));
        dir.is_dir().then_some(dir)
    })
}

fn probe() -> Result<Hierarchy, String> {
    let found = locate();
    match &found {
        Ok(h) => tracing::debug!("cgroup v2: each process tree in a cgroup of its own under {}", h.base.display()),
        Err(why) => tracing::debug!("cgroup v2 cannot be used: {why}"),
    }
    found
}

fn locate() -> Result<Hierarchy, String> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mounts = cgroup2_mounts(&mountinfo);
    if mounts.is_empty() {
        return Err("no cgroup2 file system is mounted (none in /proc/self/mountinfo)".into());
    }
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let own = own_cgroup(&proc_cgroup)
        .ok_or("this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no `0::` line)")?;
    let parent = own_directory(&mounts, &own).ok_or_else(|| {
        format!(
            "orch's cgroup {own} is in none of the cgroup2 mounts ({})",
            mounts.iter().map(|(_, p)| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })?;
    end_stale(&parent);
    let shell = ["/bin/sh", "/usr/bin/sh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("no /bin/sh to start processes in their cgroup with")?;
    let hierarchy = Hierarchy { base: parent.join(format!("{BASE_PREFIX}{}", std::process::id())), shell };
    match try_placing(&hierarchy) {
        Ok(()) => Ok(hierarchy),
        Err(e) => {
            hierarchy.release();
            Err(e)
        }
    }
}

/// Whether a process can be placed in a cgroup of `hierarchy` (and the kernel can kill one): a throwaway cgroup,
/// the trampoline run into it, the cgroup ended.
fn try_placing(hierarchy: &Hierarchy) -> Result<(), String> {
    let group = hierarchy.create(&format!("probe-{}", std::process::id()))?;
    if !group.path().join("cgroup.kill").exists() {
        return Err(format!(
            "this kernel has no cgroup.kill (Linux 5.14 or later is needed; none in {})",
            group.path().display()
        ));
    }
    let out = std::process::Command::new(&hierarchy.shell)
        .arg("-c")
        .arg(TRAMPOLINE)
        .arg(group.procs())
        .arg("cat")
        .arg("/proc/self/cgroup")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", hierarchy.shell.display()))?;
    let placed = own_cgroup(&String::from_utf8_lossy(&out.stdout))
        .is_some_and(|p| p.ends_with(&format!("/{}", leaf_name(&format!("probe-{}", std::process::id())))));
    if !out.status.success() || !placed {
        return Err(format!(
            "cannot move a process into {}: {}",
            group.path().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    group.end(END_WAIT).map(|_| ())
}

/// Kills and removes the `orch-<pid>` cgroups in `parent` whose orch process is gone (or is this one: an earlier
/// process with the same pid), with everything still running in them.
fn end_stale(parent: &Path) {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_base_name(n)) else { continue };
        let Ok(pid) = name[BASE_PREFIX.len()..].parse::<u32>() else { continue };
        if pid != me && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match end_tree(&entry.path(), END_WAIT) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                "killed {n} process(es) left running in {} by orch process {pid}, which is gone",
                entry.path().display()
            ),
            Err(e) => tracing::warn!("a cgroup left by orch process {pid}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_wherever_it_is() {
        let hybrid = "25 31 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      41 25 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                      42 25 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mounts(hybrid), vec![("/".to_string(), PathBuf::from("/sys/fs/cgroup/unified"))]);
        let pure = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mounts(pure), vec![("/".to_string(), PathBuf::from("/sys/fs/cgroup"))]);
        let odd = "30 1 0:26 /sub /mnt/cg\\040x rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mounts(odd), vec![("/sub".to_string(), PathBuf::from("/mnt/cg x"))]);
        assert!(cgroup2_mounts("22 1 0:21 / /proc rw - proc proc rw\n").is_empty());
        assert_eq!(
            own_cgroup("9:name=systemd:/\n4:memory:/x\n0::/user.slice/s.scope\n").as_deref(),
            Some("/user.slice/s.scope")
        );
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn a_tag_names_its_cgroup_and_back() {
        let tag = "orch:0123456789abcdef:p/t#2/123-456-7";
        let name = leaf_name(tag);
        assert_eq!(name, "orch:0123456789abcdef:p%2Ft#2%2F123-456-7");
        assert!(!name.contains('/'));
        assert_eq!(tag_of_path(&format!("/a/b/orch-42/{name}")).as_deref(), Some(tag));
        assert_eq!(tag_of_path(&format!("/orch-42/{name}/sub")).as_deref(), Some(tag));
        assert_eq!(tag_of_path("/orch-42"), None);
        assert_eq!(tag_of_path("/orch-x/y"), None);
        assert_eq!(tag_of_path("/user.slice/session-1.scope"), None);
        let long = format!("orch:0123456789abcdef:{}/t#1/1-2-3", "p%".repeat(150));
        let name = leaf_name(&long);
        assert!(name.len() <= 200 && name.contains('~'), "{name}");
        assert_ne!(name, leaf_name(&long.replace("1-2-3", "1-2-4")));
        assert_eq!(tag_of_leaf(&name), name);
    }

    #[test]
    fn a_process_in_a_cgroup_is_killed_with_it_even_detached_and_stripped() {
        let h = match hierarchy() {
            Ok(h) => h,
            Err(why) => {
                eprintln!("not tested: no writable cgroup v2 here: {why}");
                return;
            }
        };
        let group = h.create(&format!("unit-test-{}", std::process::id())).expect("create");
        // Detached (a session of its own, its parent gone) and with no environment: only the cgroup holds it.
        let status = std::process::Command::new(h.shell())
            .arg("-c")
            .arg(TRAMPOLINE)
            .arg(group.procs())
            .args(["sh", "-c", "setsid env -i sh -c 'sleep 300' </dev/null >/dev/null 2>&1 &"])
            .status()
            .expect("trampoline");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while count_procs(group.path()) == 0 {
            assert!(Instant::now() < deadline, "the detached sleep never showed up in its cgroup");
            std::thread::sleep(Duration::from_millis(5));
        }
        let path = group.path().to_path_buf();
        assert!(group.end(END_WAIT).expect("end") >= 1);
        assert!(!path.exists(), "the cgroup is removed");
        h.release();
    }
}
