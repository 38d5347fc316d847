//! macOS and the BSDs: no `/proc`. Process facts come from `ps`, whose flags used here are
//! the same in BSD's and Linux's procps, so the tests run this code on Linux too. Network
//! changes come from the `PF_ROUTE` socket.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::process::Cmd;

#[cfg(target_os = "macos")]
pub(super) const OPENER: &str = "open";
#[cfg(not(target_os = "macos"))]
pub(super) const OPENER: &str = "xdg-open";

/// Notification Center, through AppleScript: both strings are AppleScript literals.
#[cfg(target_os = "macos")]
pub(super) fn notification(title: &str, body: &str) -> (&'static str, Vec<String>) {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let script = format!("display notification {} with title {}", quote(body), quote(title));
    ("osascript", vec!["-e".to_owned(), script])
}

/// The freedesktop notification tool, where a desktop has one.
#[cfg(not(target_os = "macos"))]
pub(super) fn notification(title: &str, body: &str) -> (&'static str, Vec<String>) {
    ("notify-send", vec![title.to_owned(), body.to_owned()])
}

#[cfg(target_os = "macos")]
pub(super) fn install_hint(program: &str) -> &'static str {
    match program {
        // macOS ships OpenSSH's client; Homebrew's comes with every tool, ssh-copy-id too.
        "ssh" | "ssh-keygen" | "ssh-copy-id" => "OpenSSH (`brew install openssh`)",
        "tmux" => "tmux (`brew install tmux`)",
        _ => "it (e.g. with Homebrew: `brew install …`)",
    }
}

#[cfg(not(target_os = "macos"))]
pub(super) fn install_hint(program: &str) -> &'static str {
    match program {
        "ssh" | "ssh-keygen" | "ssh-copy-id" => "OpenSSH (`pkg install openssh-portable`)",
        "tmux" => "tmux (`pkg install tmux`)",
        _ => "the package that provides it",
    }
}

/// `ps -ww -o command= -p PID`: the arguments joined by spaces, so `word` is looked for
/// between spaces (a word with a space in it still matches itself). Without `ps`, or for a
/// process that is gone, false.
pub(super) fn started_with(pid: u32, word: &OsStr) -> bool {
    let cmd = Cmd::new("ps").args(["-ww", "-o", "command=", "-p", &pid.to_string()]);
    cmd.output()
        .is_ok_and(|out| out.status.success() && has_word(trim_newline(&out.stdout), word.as_bytes()))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Whether `word` is one of the space-separated words of `line` (or spans several).
fn has_word(line: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return false;
    }
    line.windows(word.len()).enumerate().any(|(at, window)| {
        let end = at + word.len();
        window == word && (at == 0 || line[at - 1] == b' ') && (end == line.len() || line[end] == b' ')
    })
}

/// Unknown: asking (netstat, lsof) would cost a process every 100 ms, and the BSD stacks
/// (FreeBSD's `tcp_syn_backoff`, which macOS shares) retry a SYN every second at first, so
/// an attempt stalled in a dead path recovers on its own within about a second.
pub(super) fn syn_sent(_pid: u32) -> Option<bool> {
    None
}

/// Whether a signal could reach it (launchd reaps at once, so a zombie is not kept around).
pub(super) fn running(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

/// Not here (kqueue's `EVFILT_VNODE` could tell; not written yet): the caller polls.
pub(super) fn dir_watch(_dir: &std::path::Path) -> Option<OwnedFd> {
    None
}

/// A routing socket: the kernel writes a message to it for every change of an interface,
/// an address or a route, so a network change wakes the supervisor without any polling.
#[cfg(not(target_os = "linux"))]
pub(super) fn route_socket() -> nix::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    socket(AddressFamily::Route, SockType::Raw, SockFlag::empty(), None)
}

/// Whether a routing message says an address came or went or an interface changed
/// (`RTM_NEWADDR` 0xc, `RTM_DELADDR` 0xd, `RTM_IFINFO` 0xe; the type is the 4th byte of
/// `rt_msghdr`, `ifa_msghdr` and `if_msghdr` alike). Route additions are left out: macOS
/// adds a cloned host route for each new neighbour, which says nothing about the path.
pub(super) fn is_change(message: &[u8]) -> bool {
    matches!(message.get(3), Some(0xc..=0xe))
}

/// How long the machine has been suspended since this was first asked, approximately: the
/// wall clock runs on through a sleep while `Instant` (on macOS `CLOCK_UPTIME_RAW`) stops.
/// A step of the wall clock (NTP) reads as a sleep too, which costs one extra probe.
#[allow(clippy::unnecessary_wraps, reason = "Linux's can fail; both share one signature")]
pub(super) fn asleep() -> Option<Duration> {
    static ORIGIN: OnceLock<(SystemTime, Instant)> = OnceLock::new();
    let (wall, mono) = ORIGIN.get_or_init(|| (SystemTime::now(), Instant::now()));
    let wall = SystemTime::now().duration_since(*wall).unwrap_or_default();
    Some(wall.saturating_sub(mono.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reaped_child_does_not() {
        assert!(running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!running(pid));
    }

    #[test]
    fn no_directory_watch_so_the_caller_polls() {
        assert!(dir_watch(std::path::Path::new("/")).is_none());
    }

    #[test]
    fn a_notification_names_its_program_and_carries_the_text() {
        let (program, args) = notification("jssh", "gpu: log in \"again\"");
        assert!(!program.is_empty());
        assert!(args.iter().any(|a| a.contains("log in")), "{args:?}");
    }

    #[test]
    fn knows_address_and_interface_messages_from_route_noise() {
        let msg = |kind: u8| [0x5c, 0, 5, kind, 0, 0];
        assert!(is_change(&msg(0xc)) && is_change(&msg(0xd)) && is_change(&msg(0xe)));
        assert!(!is_change(&msg(0x1)), "RTM_ADD (a cloned route)");
        assert!(!is_change(&msg(0x7)), "RTM_MISS");
        assert!(!is_change(&[0x5c, 0]));
    }

    #[test]
    fn no_time_asleep_while_awake() {
        assert!(asleep().is_some());
        std::thread::sleep(Duration::from_millis(20));
        assert!(asleep().unwrap() < Duration::from_millis(500));
    }

    #[test]
    fn finds_a_word_between_spaces_only() {
        let line = b"ssh -S /a b/ctl0 -- gpu";
        assert!(has_word(line, b"/a b/ctl0"));
        assert!(has_word(line, b"ssh") && has_word(line, b"gpu"));
        assert!(!has_word(line, b"/a b/ctl") && !has_word(line, b"b/ctl0 -") && !has_word(line, b""));
    }

    #[test]
    fn reads_a_command_line_from_ps() {
        if which::which("ps").is_err() {
            eprintln!("skipped: no ps here");
            return;
        }
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", "/a b/ctl0"])
            .spawn()
            .unwrap();
        let mut seen = false;
        for _ in 0..100 {
            seen = started_with(child.id(), OsStr::new("/a b/ctl0"));
            if seen {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let other = started_with(child.id(), OsStr::new("/a b/ctl1"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen && !other);
        assert!(
            !started_with(child.id(), OsStr::new("/a b/ctl0")),
            "a process that is gone"
        );
        assert_eq!(syn_sent(std::process::id()), None);
    }

    #[test]
    fn names_an_opener_and_how_to_install_ssh() {
        assert!(!OPENER.is_empty());
        assert!(install_hint("ssh-copy-id").contains("openssh"));
    }
}
