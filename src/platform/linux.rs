//! Linux: process facts from `/proc`, network changes from a netlink route socket, and the
//! time spent suspended from `CLOCK_BOOTTIME`.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
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

/// From `/proc/PID/stat`: the state after the command's closing parenthesis (the command may
/// hold one itself), neither a zombie nor dead.
pub(super) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    })
}

pub(super) fn started_with(pid: u32, word: &OsStr) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|argv| argv.split(|&b| b == 0).any(|w| w == word.as_bytes()))
}

/// Asks each of the process's sockets itself (a copy of its descriptor, `pidfd_getfd(2)`, then
/// `TCP_INFO`): a few system calls. Where that is not allowed (Yama's `ptrace_scope` 2 or 3, a
/// seccomp filter, a kernel before 5.6), from the kernel's TCP tables instead, which costs
/// ~6 ms of kernel time per table here: reading one walks every bucket of the connection
/// hash (262144 on this 24 GiB machine), however few connections there are. Twenty
/// supervisors reconnecting after one sshd restart spent 0.25 CPU-s on that.
pub(super) fn syn_sent(pid: u32) -> Option<bool> {
    let sockets = socket_fds(pid)?;
    syn_sent_by_fd(pid, &sockets).or_else(|| {
        let inodes: Vec<u64> = sockets.iter().map(|&(_, inode)| inode).collect();
        Some(
            ["/proc/net/tcp", "/proc/net/tcp6"]
                .iter()
                .filter_map(|table| std::fs::read_to_string(table).ok())
                .any(|table| syn_sent_inodes(&table).iter().any(|inode| inodes.contains(inode))),
        )
    })
}

/// The process's socket descriptors and their inodes, from the links in `/proc/PID/fd`.
fn socket_fds(pid: u32) -> Option<Vec<(i32, u64)>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.flatten()
            .filter_map(|fd| {
                let number = fd.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(fd.path()).ok()?;
                let inode = target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()?;
                Some((number, inode))
            })
            .collect(),
    )
}

/// Whether one of `sockets` (descriptors of process `pid`) is a TCP connection still
/// connecting, asked of the sockets themselves (a copy of each); `None` when the process's
/// descriptors may not be copied. A connecting socket has no peer yet (ENOTCONN) and is no
/// listener; one that failed is closed, and its ssh exits.
fn syn_sent_by_fd(pid: u32, sockets: &[(i32, u64)]) -> Option<bool> {
    use nix::errno::Errno;
    use nix::sys::socket::{
        AddressFamily, SockaddrLike, SockaddrStorage, getpeername, getsockname, getsockopt, sockopt,
    };
    use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty()).ok()?;
    for &(number, _) in sockets {
        let fd = match pidfd_getfd(&pidfd, number, PidfdGetfdFlags::empty()) {
            Ok(fd) => fd,
            // Closed meanwhile.
            Err(rustix::io::Errno::BADF) => continue,
            // Not allowed to look (Yama's ptrace_scope 2 or 3, a seccomp filter), or no such
            // call (Linux before 5.6): the tables tell instead.
            Err(_) => return None,
        };
        let tcp = getsockopt(&fd, sockopt::SockType).is_ok_and(|t| t == nix::sys::socket::SockType::Stream)
            && getsockname::<SockaddrStorage>(fd.as_raw_fd())
                .is_ok_and(|a| matches!(a.family(), Some(AddressFamily::Inet | AddressFamily::Inet6)));
        if tcp
            && getpeername::<SockaddrStorage>(fd.as_raw_fd()) == Err(Errno::ENOTCONN)
            && getsockopt(&fd, sockopt::AcceptConn) == Ok(false)
        {
            return Some(true);
        }
    }
    Some(false)
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

/// An inotify instance watching `dir` for new entries (created, or renamed into it),
/// non-blocking and close-on-exec.
pub(super) fn dir_watch(dir: &std::path::Path) -> Option<OwnedFd> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?;
    inotify
        .add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
        .ok()?;
    Some(inotify.into())
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
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS))?;
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
    fn a_new_entry_in_a_watched_directory_wakes_a_poll_once() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let dir = tempfile::tempdir().unwrap();
        let watch = super::super::DirWatch::open(dir.path()).unwrap();
        let readable = |ms: u16| {
            let mut fds = [PollFd::new(watch.fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
        };
        assert!(!readable(0), "nothing yet");
        // What ssh does for its control socket: bind a socket at a temporary name, then link it.
        let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("ctl0.tmp")).unwrap();
        std::fs::hard_link(dir.path().join("ctl0.tmp"), dir.path().join("ctl0")).unwrap();
        assert!(readable(1000), "the new socket wakes the poll");
        watch.drain();
        assert!(!readable(0), "drained");
    }

    #[test]
    fn a_zombie_or_a_reaped_child_is_not_running() {
        assert!(running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited, not yet waited for: a zombie.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` still runs");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "a zombie still has its entry"
        );
        child.wait().unwrap();
        assert!(!running(pid));
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

    /// A real connection stuck in SYN_SENT, on loopback: a listener whose accept queue is
    /// full drops the next SYN, so a child's `connect` waits (and retries after 1 s).
    #[test]
    fn sees_a_child_waiting_for_a_syn_ack_by_asking_its_socket() {
        use nix::sys::socket::{Backlog, listen};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Listening again sets the backlog anew.
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        // Backlog 0 holds one connection: this one, never accepted, fills it.
        let _queued = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 30)",
            ])
            .arg(port.to_string())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while std::time::Instant::now() < deadline && seen != Some(true) {
            std::thread::sleep(Duration::from_millis(20));
            seen = socket_fds(pid).and_then(|sockets| syn_sent_by_fd(pid, &sockets));
        }
        // The kernel's table, the slow way, agrees.
        let inodes: Vec<u64> = socket_fds(pid).unwrap().iter().map(|&(_, inode)| inode).collect();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let in_table = syn_sent_inodes(&table).iter().any(|inode| inodes.contains(inode));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen, Some(true), "the child's connect should wait for a SYN-ACK");
        assert!(in_table, "/proc/net/tcp should list the child's socket in SYN_SENT");
        // The queued connection is established: not connecting.
        let me = std::process::id();
        assert_eq!(syn_sent_by_fd(me, &socket_fds(me).unwrap()), Some(false));
    }

    #[test]
    fn reads_a_command_line_word_by_word() {
        let me = std::env::args_os().next().unwrap();
        assert!(started_with(std::process::id(), &me));
        assert!(!started_with(std::process::id(), OsStr::new("no-such-argument")));
    }
}
