//! macOS and the BSDs: no `/proc`. Process facts come from `ps`, whose flags used here are
//! the same in BSD's and Linux's procps, so the tests run this code on Linux too.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::process::Cmd;

#[cfg(target_os = "macos")]
pub(super) const OPENER: &str = "open";
#[cfg(not(target_os = "macos"))]
pub(super) const OPENER: &str = "xdg-open";

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

#[cfg(test)]
mod tests {
    use super::*;

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
