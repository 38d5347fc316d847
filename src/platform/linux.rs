//! Linux: process facts from `/proc`, network changes from a netlink route socket, and the
//! time spent suspended from `CLOCK_BOOTTIME`.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket};
use nix::time::{ClockId, clock_gettime};

pub(super) const OPENER: &str = "xdg-open";

/// The freedesktop notification tool (libnotify's).
pub(super) fn notification(title: &str, body: &str) -> (&'static str, Vec<String>) {
    ("notify-send", vec![title.to_owned(), body.to_owned()])
}

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

/// The rtnetlink groups that say the path to a server may have moved: links up or down,
/// addresses and routes added or removed (`RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`,
/// `RTMGRP_IPV4_ROUTE`, `RTMGRP_IPV6_IFADDR`, `RTMGRP_IPV6_ROUTE` in `linux/rtnetlink.h`).
const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;

/// A netlink route socket subscribed to [`GROUPS`]: the kernel sends it a message for each
/// change, so a network change wakes the supervisor without any polling.
pub(super) fn route_socket() -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, GROUPS))?;
    Ok(fd)
}

/// Whether a datagram from [`route_socket`] holds a link, address or route message
/// (`RTM_NEWLINK` 16 … `RTM_DELROUTE` 25), walking its `nlmsghdr`s.
pub(super) fn is_change(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while let (Some(len), Some(kind)) = (rest.get(0..4), rest.get(4..6)) {
        let len = u32::from_ne_bytes(len.try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(kind.try_into().unwrap_or_default());
        if matches!(kind, 16 | 17 | 20 | 21 | 24 | 25) {
            return true;
        }
        // Messages are aligned to 4 bytes; a length below the header's ends the walk.
        let step = (len + 3) & !3;
        if len < 16 || step > rest.len() {
            break;
        }
        rest = &rest[step..];
    }
    false
}

/// How long the machine has been suspended since boot: `CLOCK_BOOTTIME` counts that time,
/// `CLOCK_MONOTONIC` (what `poll(2)`'s timeout and `Instant` use) does not.
pub(super) fn asleep() -> Option<Duration> {
    let boot = Duration::from(clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?);
    let mono = Duration::from(clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?);
    Some(boot.saturating_sub(mono))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_link_address_and_route_messages_from_others() {
        // A header (length, type, flags, sequence, port) padded to `len`.
        let msg = |len: u32, kind: u16| {
            let mut m = len.to_ne_bytes().to_vec();
            m.extend_from_slice(&kind.to_ne_bytes());
            m.resize((len as usize).max(16), 0);
            m
        };
        // NLMSG_DONE (3), then RTM_NEWADDR (20): the second one counts.
        let two = [msg(20, 3), msg(32, 20)].concat();
        assert!(is_change(&two));
        assert!(is_change(&msg(40, 17)) && is_change(&msg(40, 25)));
        assert!(!is_change(&msg(20, 3)), "NLMSG_DONE");
        assert!(!is_change(&msg(20, 2)), "NLMSG_ERROR");
        assert!(!is_change(&[]) && !is_change(&[1, 0, 0]));
        // A header claiming less than itself ends the walk instead of looping.
        assert!(!is_change(&[msg(0, 3), msg(20, 20)].concat()));
    }

    #[test]
    fn the_time_asleep_never_shrinks() {
        let first = asleep().unwrap();
        let second = asleep().unwrap();
        assert!(second + Duration::from_millis(5) >= first, "{first:?} then {second:?}");
    }

    #[test]
    fn opens_a_route_socket() {
        route_socket().unwrap();
    }

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
