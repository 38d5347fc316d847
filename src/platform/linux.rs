//! Linux: process facts from `/proc`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub(super) const OPENER: &str = "xdg-open";

pub(super) fn install_hint(program: &str) -> &'static str {
    match program {
        "ssh" | "ssh-keygen" | "ssh-copy-id" => {
            "openssh-client (`apt install openssh-client`, `dnf install openssh-clients`)"
        }
        "tmux" => "tmux (`apt install tmux`, `dnf install tmux`)",
        _ => "the package that provides it",
    }
}

pub(super) fn started_with(pid: u32, word: &OsStr) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|argv| argv.split(|&b| b == 0).any(|w| w == word.as_bytes()))
}

/// From the process's socket inodes (`/proc/PID/fd`) and the kernel's TCP tables.
pub(super) fn syn_sent(pid: u32) -> Option<bool> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let sockets: Vec<u64> = fds
        .flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    Some(
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .any(|table| syn_sent_inodes(&table).iter().any(|inode| sockets.contains(inode))),
    )
}

/// Inodes of the sockets in SYN_SENT (state 02) in a `/proc/net/tcp{,6}` table.
fn syn_sent_inodes(table: &str) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"02")).then(|| fields.get(9)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_connections_waiting_for_a_syn_ack() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     0: 0100007F:B1F3 0100007F:0016 02 00000000:00000000 01:00000100 00000002     0        0 4242 1 0\n\
                     1: 0100007F:B1F4 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0\n";
        assert_eq!(syn_sent_inodes(table), [4242]);
        assert_eq!(
            syn_sent(std::process::id()),
            Some(false),
            "this test process has no stalled connection"
        );
    }

    #[test]
    fn reads_a_command_line_word_by_word() {
        let me = std::env::args_os().next().unwrap();
        assert!(started_with(std::process::id(), &me));
        assert!(!started_with(std::process::id(), OsStr::new("no-such-argument")));
    }
}
