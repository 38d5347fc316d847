//! systemd's readiness protocol (`sd_notify(3)`): newline-separated `KEY=VALUE` lines
//! (`READY=1`, `STATUS=…`, `STOPPING=1`) sent as one datagram to the socket `$NOTIFY_SOCKET`
//! names, which systemd sets for a `Type=notify` unit. Nothing else is needed (no libsystemd):
//! where the variable is unset — by hand, under launchd — there is no [`Notifier`] at all.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd names its socket in. Only jssh's own processes pass it on (the
/// supervisor reaches it through `service run` and `up`); every other program jssh starts
/// runs without it ([`crate::process::Cmd`]): under `NotifyAccess=all` anything in the unit
/// could otherwise speak for it.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A socket to tell the service manager how the service is doing.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The manager's socket from `$NOTIFY_SOCKET`; `None` when it is unset, empty or not an
    /// address this system can reach.
    pub(crate) fn from_env() -> Option<Self> {
        Self::to(&std::env::var_os(NOTIFY_SOCKET)?)
    }

    /// A socket path (`/run/user/1000/systemd/notify`) or, on Linux, an abstract name
    /// (`@/org/freedesktop/systemd1/notify/…`). systemd's `vsock:` addresses are not for a
    /// user's units, and are not supported.
    pub(crate) fn to(name: &OsStr) -> Option<Self> {
        let to = address(name.as_bytes())?;
        let socket = UnixDatagram::unbound().ok()?;
        // A manager that stopped reading must never stall the supervisor: a message that
        // does not fit is dropped.
        socket.set_nonblocking(true).ok()?;
        Some(Self { socket, to })
    }

    /// Sends `lines` (`READY=1\nSTATUS=up`); whether the manager's socket took them.
    pub(crate) fn send(&self, lines: &str) -> bool {
        loop {
            match self.socket.send_to_addr(lines.as_bytes(), &self.to) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                sent => return sent.is_ok(),
            }
        }
    }
}

fn address(name: &[u8]) -> Option<SocketAddr> {
    match name {
        [b'/', ..] => SocketAddr::from_pathname(OsStr::from_bytes(name)).ok(),
        [b'@', abstract_name @ ..] => abstract_address(abstract_name),
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).ok()
}

/// Abstract socket names are Linux's alone.
#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> Option<SocketAddr> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn received(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_message_reaches_a_socket_path_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to(path.as_os_str()).unwrap();
        assert!(notifier.send("READY=1\nSTATUS=up: http://127.0.0.1:8888/lab"));
        assert_eq!(received(&manager), "READY=1\nSTATUS=up: http://127.0.0.1:8888/lab");
        drop(manager);
        assert!(!notifier.send("STOPPING=1"), "nobody listens any more");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_message_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("jssh-test-notify-{}", std::process::id());
        let manager = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let notifier = Notifier::to(OsStr::new(&format!("@{name}"))).unwrap();
        assert!(notifier.send("STATUS=reconnecting"));
        assert_eq!(received(&manager), "STATUS=reconnecting");
    }

    #[test]
    fn no_socket_no_notifier() {
        for name in ["", "relative/notify", "vsock:2:1234"] {
            assert!(Notifier::to(OsStr::new(name)).is_none(), "{name:?}");
        }
    }
}
