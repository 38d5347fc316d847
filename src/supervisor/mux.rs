//! A client of OpenSSH's connection-multiplexing protocol (`PROTOCOL.mux` in the OpenSSH
//! sources), just enough to hand one socket to a running master as a stdio forward: what
//! `ssh -W` does, without a process per connection. The master then does all the I/O for that
//! socket itself (jssh copies no byte), so a connection through jssh's port costs what one
//! through `ssh -L` costs.
//!
//! The exchange, all on one Unix connection to the master's control socket:
//! - both sides send a hello (`MUX_MSG_HELLO`, protocol version 4);
//! - we send `MUX_C_NEW_STDIO_FWD` (request id, reserved string, connect host, connect port,
//!   where port `PORT_STREAMLOCAL` means the host is a Unix socket path), then the socket twice
//!   (as stdin and stdout), each as one byte with an `SCM_RIGHTS` control message;
//! - once the server confirms the channel, the master answers `MUX_S_SESSION_OPENED`, or
//!   `MUX_S_FAILURE` ("Session open refused by peer": nothing listens there).
//!
//! The control connection must stay open as long as the forwarded connection lives: the
//! master ends the channel when it closes, and closes it when the channel ends.
//!
//! All three messages can be sent at once: the master reads its mux socket a packet at a time
//! (exactly the length it announces), so it never swallows the bytes that carry the fds.
//!
//! [`run`] opens a session the same way (`MUX_C_NEW_SESSION`, then stdin, stdout and stderr as
//! three fds): a remote command over the master, what `ssh -S` does, without an ssh process
//! (~9 ms of CPU to start one here, twenty of them after one sshd restart); [`start`] leaves
//! one running (the remote watch: one ssh process fewer per tunnel, for its whole life).

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, connect, sendmsg, socket,
};

use crate::ssh::RemoteEnd;

const MUX_MSG_HELLO: u32 = 0x0000_0001;
const MUX_C_NEW_SESSION: u32 = 0x1000_0002;
const MUX_C_ALIVE_CHECK: u32 = 0x1000_0004;
const MUX_C_NEW_STDIO_FWD: u32 = 0x1000_0008;
const MUX_S_PERMISSION_DENIED: u32 = 0x8000_0002;
const MUX_S_FAILURE: u32 = 0x8000_0003;
const MUX_S_ALIVE: u32 = 0x8000_0005;
const MUX_S_EXIT_MESSAGE: u32 = 0x8000_0004;
const MUX_S_SESSION_OPENED: u32 = 0x8000_0006;
const MUX_VERSION: u32 = 4;
/// `PORT_STREAMLOCAL` in OpenSSH: the "host" is a Unix socket path.
const PORT_STREAMLOCAL: u32 = 0xFFFF_FFFE;
/// The one request each control connection carries.
const REQUEST_ID: u32 = 1;
/// A master's answers are tiny; anything longer is not a master.
const MAX_PACKET: usize = 64 * 1024;

/// What the master said about a forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Not all of the answer has arrived yet.
    Pending,
    /// The channel is open: the master now carries the socket.
    Opened,
    /// The server refused the channel (nothing listens at the remote end) or the master did.
    Refused(String),
    /// The control connection ended before an answer: the master is gone.
    Lost,
}

/// One forward's control connection (kept open for the forward's whole life).
#[derive(Debug)]
pub(crate) struct Forward {
    control: UnixStream,
    received: Vec<u8>,
    hello_seen: bool,
    answered: bool,
}

/// Runs `command` on the remote in a session of the master listening on `control`, with an
/// empty stdin and stderr discarded, and returns its standard output once the session ends
/// (the master closes the pipe then). Fails if the master refuses the session or the command
/// takes longer than `limit`. Never logs in: without a master there is no session.
pub(crate) fn run(control: &Path, command: &str, limit: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    let (mut stdout, stdout_end) = std::io::pipe()?;
    let mut control = open_session(control, command, [null.as_fd(), stdout_end.as_fd(), null.as_fd()])?;
    // The master holds its own copies now: the pipe ends when the session does.
    drop(stdout_end);
    fcntl(&stdout, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let mut output = Vec::new();
    while !read_some(&mut stdout, &mut output, deadline)? {}
    // Whether the session ran at all (a refusal closes the fds at once, which looks the
    // same): the answer came before the output ended.
    let mut answers = Vec::new();
    loop {
        let ended = read_some(&mut control, &mut answers, deadline)?;
        let mut rest = answers.as_slice();
        while let Some((body, after)) = next_packet(rest) {
            rest = after;
            match word(body, 0) {
                Some(MUX_S_SESSION_OPENED | MUX_S_EXIT_MESSAGE) => return Ok(output),
                Some(MUX_S_FAILURE | MUX_S_PERMISSION_DENIED) => {
                    return Err(std::io::Error::other(reason(body)));
                }
                _ => {}
            }
        }
        if ended {
            return Err(std::io::Error::other("the master did not open a session"));
        }
    }
}

/// Asks the master on `control` for a session running `command` with `stdio` as its stdin,
/// stdout and stderr; the control connection (non-blocking) carries the answers.
fn open_session(control: &Path, command: &str, stdio: [BorrowedFd<'_>; 3]) -> std::io::Result<UnixStream> {
    let fd: OwnedFd = socket_nonblocking()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(control)?)?;
    let mut control = UnixStream::from(fd);
    let mut out = packet(&[MUX_MSG_HELLO, MUX_VERSION], &[]);
    out.extend(session_request(command));
    control.write_all(&out)?;
    send_fds(&control, &stdio)?;
    Ok(control)
}

/// A remote command running in a session of a master for as long as it runs: [`run`]
/// without the wait, for the remote watch. The master reports the command's exit status on
/// the control connection (`MUX_S_EXIT_MESSAGE`); closing it ends the session.
#[derive(Debug)]
pub(crate) struct Session {
    control: UnixStream,
    received: Vec<u8>,
}

/// Starts `command` in a session of the master on `control`, its stdin `stdin` and its
/// output (stdout and stderr) `output`. Never blocks and never logs in.
pub(crate) fn start(
    control: &Path,
    command: &str,
    stdin: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
) -> std::io::Result<Session> {
    let control = open_session(control, command, [stdin, output, output])?;
    Ok(Session {
        control,
        received: Vec::new(),
    })
}

impl Session {
    /// The control connection, to poll for readability.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Reads what has arrived: the command's exit status once it ended, 255 (what `ssh`
    /// exits with) when the master refused the session or went away first; `None` while it
    /// runs.
    pub(crate) fn ended(&mut self) -> Option<i32> {
        let mut buf = [0u8; 512];
        let closed = loop {
            match self.control.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) if self.received.len() > MAX_PACKET => break true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        let mut rest = self.received.as_slice();
        while let Some((body, after)) = next_packet(rest) {
            rest = after;
            match word(body, 0) {
                // Type, session id, exit value.
                Some(MUX_S_EXIT_MESSAGE) => {
                    return Some(word(body, 2).map_or(255, |v| i32::try_from(v).unwrap_or(255)));
                }
                Some(MUX_S_FAILURE | MUX_S_PERMISSION_DENIED) => return Some(255),
                _ => {}
            }
        }
        closed.then_some(255)
    }
}

/// `MUX_C_NEW_SESSION` for `command`, framed. mux.c reads the four flags as u32s (PROTOCOL.mux
/// calls them bools): no tty, X11, agent or subsystem; no escape character; no terminal
/// type; no environment.
fn session_request(command: &str) -> Vec<u8> {
    let mut request = Vec::new();
    put_u32(&mut request, MUX_C_NEW_SESSION);
    put_u32(&mut request, REQUEST_ID);
    put_string(&mut request, b"");
    for word in [0, 0, 0, 0, u32::MAX] {
        put_u32(&mut request, word);
    }
    put_string(&mut request, b"");
    put_string(&mut request, command.as_bytes());
    frame(&request)
}

/// Sends each of `fds` as one byte with an `SCM_RIGHTS` message, as the master reads them.
fn send_fds(control: &UnixStream, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    for fd in fds {
        let raw = [fd.as_raw_fd()];
        let sent = sendmsg::<()>(
            control.as_raw_fd(),
            &[IoSlice::new(&[0])],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )?;
        if sent != 1 {
            return Err(std::io::Error::other("the master took no fd"));
        }
    }
    Ok(())
}

/// Reads what `from` (non-blocking) has into `into`, waiting in `poll(2)` for something to
/// arrive until `deadline` at most; whether it has ended.
fn read_some(from: &mut (impl Read + AsFd), into: &mut Vec<u8>, deadline: Instant) -> std::io::Result<bool> {
    let mut buf = [0u8; 4096];
    let mut waited = false;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) if into.len() + n > MAX_PACKET => return Err(std::io::Error::other("too much output")),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock && waited => return Ok(false),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ErrorKind::TimedOut.into());
                }
                let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(millis)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => waited = true,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `i`th big-endian u32 of a packet's body (its type is word 0).
fn word(body: &[u8], i: usize) -> Option<u32> {
    let bytes = body.get(i * 4..i * 4 + 4)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The first whole packet in `bytes` and what follows it.
fn next_packet(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let body = bytes.get(4..4usize.checked_add(len)?)?;
    Some((body, &bytes[4 + len..]))
}

/// Asks the master listening on `control` to carry `socket` to `end` on the remote. Never
/// blocks: a master that does not accept at once (frozen, or its backlog full) is an error
/// like a missing one. The answer comes later: poll [`Forward::fd`] and call
/// [`Forward::reply`].
pub(crate) fn forward(control: &Path, end: &RemoteEnd, socket: BorrowedFd<'_>) -> std::io::Result<Forward> {
    let fd: OwnedFd = socket_nonblocking()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(control)?)?;
    let mut control = UnixStream::from(fd);
    let (host, port) = match end {
        RemoteEnd::Port(port) => ("127.0.0.1", u32::from(*port)),
        RemoteEnd::Socket(path) => (path.as_str(), PORT_STREAMLOCAL),
        RemoteEnd::Host(host, port) => (host.as_str(), u32::from(*port)),
    };
    let mut out = packet(&[MUX_MSG_HELLO, MUX_VERSION], &[]);
    let mut request = Vec::new();
    put_u32(&mut request, MUX_C_NEW_STDIO_FWD);
    put_u32(&mut request, REQUEST_ID);
    put_string(&mut request, b"");
    put_string(&mut request, host.as_bytes());
    put_u32(&mut request, port);
    out.extend(frame(&request));
    // A fresh socket's buffer takes these few hundred bytes whole.
    control.write_all(&out)?;
    send_fds(&control, &[socket, socket])?;
    Ok(Forward {
        control,
        received: Vec::new(),
        hello_seen: false,
        answered: false,
    })
}

/// A master another process started (the login a human answered, see
/// [`crate::ssh::Ssh::login_master`]), held through a control connection of ours: the
/// master closes it when it exits, which is how its end is noticed (it is not our child, so
/// no SIGCHLD tells). Poll [`Held::fd`]; readable means gone.
#[derive(Debug)]
pub(crate) struct Held {
    control: UnixStream,
    /// The master's pid, from its answer to `MUX_C_ALIVE_CHECK`.
    pub(crate) pid: u32,
}

/// Connects to the master on `control` and asks whether it is alive: hello, then
/// `MUX_C_ALIVE_CHECK`, whose answer carries its pid. Waits at most `limit` for them.
pub(crate) fn hold(control: &Path, limit: Duration) -> std::io::Result<Held> {
    let mut stream = UnixStream::connect(control)?;
    stream.set_read_timeout(Some(limit))?;
    let mut out = packet(&[MUX_MSG_HELLO, MUX_VERSION], &[]);
    out.extend(packet(&[MUX_C_ALIVE_CHECK, REQUEST_ID], &[]));
    stream.write_all(&out)?;
    let not_master = || std::io::Error::other("not an OpenSSH master");
    let read_packet = |stream: &mut UnixStream| -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(4..=MAX_PACKET).contains(&len) {
            return Err(not_master());
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body)?;
        Ok(body)
    };
    let hello = read_packet(&mut stream)?;
    if hello.get(..4) != Some(&MUX_MSG_HELLO.to_be_bytes()[..]) {
        return Err(not_master());
    }
    let alive = read_packet(&mut stream)?;
    if word(&alive, 0) != Some(MUX_S_ALIVE) {
        return Err(not_master());
    }
    let pid = word(&alive, 2).ok_or_else(not_master)?;
    stream.set_nonblocking(true)?;
    Ok(Held { control: stream, pid })
}

impl Held {
    /// The control connection: it becomes readable (end of file) when the master exits.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Whether the master has closed our connection (it exited).
    pub(crate) fn gone(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.control.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}

/// A Unix stream socket in non-blocking mode (set apart from `socket()`: macOS has no
/// `SOCK_NONBLOCK`), close-on-exec so no ssh inherits it.
fn socket_nonblocking() -> std::io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::empty(), None)?;
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    fcntl(&fd, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    Ok(fd)
}

impl Forward {
    /// The control connection, to poll for readability.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Reads what has arrived. Before the answer: [`Reply::Pending`] until it is complete.
    /// After [`Reply::Opened`]: `Pending` while the forward lives, [`Reply::Lost`] once the
    /// master closed it (the connection is over).
    pub(crate) fn reply(&mut self) -> Reply {
        let mut buf = [0u8; 512];
        loop {
            match self.control.read(&mut buf) {
                Ok(0) => return Reply::Lost,
                Ok(n) if self.answered => {
                    // Nothing more is expected on a stdio forward; drain whatever comes.
                    let _ = n;
                }
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    if let Some(reply) = self.parse() {
                        return reply;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Reply::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Reply::Lost,
            }
        }
    }

    /// Consumes complete packets; returns the answer once it is there.
    fn parse(&mut self) -> Option<Reply> {
        loop {
            let len = u32::from_be_bytes(self.received.get(..4)?.try_into().ok()?) as usize;
            if !(4..=MAX_PACKET).contains(&len) {
                return Some(Reply::Refused("not an OpenSSH master".into()));
            }
            let body = self.received.get(4..4 + len)?.to_vec();
            self.received.drain(..4 + len);
            let kind = u32::from_be_bytes(body[..4].try_into().ok()?);
            if !self.hello_seen {
                if kind != MUX_MSG_HELLO {
                    return Some(Reply::Refused("not an OpenSSH master".into()));
                }
                self.hello_seen = true;
                continue;
            }
            self.answered = true;
            return Some(match kind {
                MUX_S_SESSION_OPENED => Reply::Opened,
                MUX_S_FAILURE | MUX_S_PERMISSION_DENIED => Reply::Refused(reason(&body)),
                other => Reply::Refused(format!("unexpected answer {other:#x} from the master")),
            });
        }
    }
}

/// The message of a failure answer: type, request id, then a string.
fn reason(body: &[u8]) -> String {
    body.get(12..)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default()
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_string(buf: &mut Vec<u8>, s: &[u8]) {
    put_u32(buf, u32::try_from(s.len()).unwrap_or(u32::MAX));
    buf.extend_from_slice(s);
}

/// A packet of `words` then `bytes`, length-prefixed.
fn packet(words: &[u32], bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for w in words {
        put_u32(&mut body, *w);
    }
    body.extend_from_slice(bytes);
    frame(&body)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    put_u32(&mut out, u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward_over(received: &[u8]) -> Forward {
        let (a, _b) = UnixStream::pair().unwrap();
        Forward {
            control: a,
            received: received.to_vec(),
            hello_seen: false,
            answered: false,
        }
    }

    #[test]
    fn reads_hello_then_the_answer() {
        let hello = packet(&[MUX_MSG_HELLO, 4], &[]);
        let opened = packet(&[MUX_S_SESSION_OPENED, REQUEST_ID, 7], &[]);
        let mut f = forward_over(&[hello.clone(), opened[..5].to_vec()].concat());
        assert_eq!(f.parse(), None, "an answer cut short waits for the rest");
        f.received.extend_from_slice(&opened[5..]);
        assert_eq!(f.parse(), Some(Reply::Opened));

        let mut failure = Vec::new();
        put_u32(&mut failure, MUX_S_FAILURE);
        put_u32(&mut failure, REQUEST_ID);
        put_string(&mut failure, b"Session open refused by peer");
        let mut f = forward_over(&[hello, frame(&failure)].concat());
        assert_eq!(f.parse(), Some(Reply::Refused("Session open refused by peer".into())));
    }

    /// A session whose master sent `bytes`, and the master's end of the connection.
    fn session_over(bytes: &[u8]) -> (Session, UnixStream) {
        let (ours, mut master) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        master.write_all(bytes).unwrap();
        let session = Session {
            control: ours,
            received: Vec::new(),
        };
        (session, master)
    }

    #[test]
    fn a_running_session_reports_its_exit_status_or_the_master_going() {
        let hello = packet(&[MUX_MSG_HELLO, 4], &[]);
        let opened = packet(&[MUX_S_SESSION_OPENED, REQUEST_ID, 3], &[]);
        let exited = packet(&[MUX_S_EXIT_MESSAGE, 3, 91], &[]);
        let (mut session, mut master) = session_over(&[hello.clone(), opened.clone()].concat());
        assert_eq!(session.ended(), None, "it runs");
        master.write_all(&exited[..6]).unwrap();
        assert_eq!(session.ended(), None, "an exit message cut short waits for the rest");
        master.write_all(&exited[6..]).unwrap();
        assert_eq!(session.ended(), Some(91));

        let (mut session, master) = session_over(&[hello.clone(), opened].concat());
        drop(master);
        assert_eq!(session.ended(), Some(255), "the master went away");

        let mut failure = Vec::new();
        put_u32(&mut failure, MUX_S_FAILURE);
        put_u32(&mut failure, REQUEST_ID);
        put_string(&mut failure, b"refused");
        let (mut session, _master) = session_over(&[hello, frame(&failure)].concat());
        assert_eq!(session.ended(), Some(255), "refused");
    }

    #[test]
    fn anything_but_a_master_is_refused() {
        let mut f = forward_over(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(f.parse(), Some(Reply::Refused(_))));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
            s
        })
    }

    /// A stand-in master (Python, which can receive fds without unsafe code): on `ctl` in
    /// `dir` it reads the hello and one request, takes three fds, writes `output` to the
    /// second, answers with the packet `answer` (hex) after a hello, and hangs up; it prints
    /// the request it read, hex.
    fn fake_master(dir: &Path, output: &str, answer: &[u8]) -> std::process::Child {
        let script = r#"
import os, socket, struct, sys
path, output, answer = sys.argv[1], sys.argv[2].encode(), bytes.fromhex(sys.argv[3])
server = socket.socket(socket.AF_UNIX); server.bind(path); server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
def exactly(n):
    data = b""
    while len(data) < n:
        data += conn.recv(n - len(data))
    return data
exactly(12)
request = exactly(struct.unpack(">I", exactly(4))[0])
fds = []
while len(fds) < 3:
    _, got, _, _ = socket.recv_fds(conn, 1, 1)
    fds += got
os.write(fds[1], output)
for fd in fds:
    os.close(fd)
conn.sendall(struct.pack(">III", 8, 1, 4) + answer)
conn.close()
print(request.hex(), flush=True)
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(dir.join("ctl"))
            .arg(output)
            .arg(hex(answer))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = [0u8; 10];
        child.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
        child
    }

    #[test]
    fn a_session_returns_what_the_command_printed_and_sends_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let opened = packet(&[MUX_S_SESSION_OPENED, REQUEST_ID, 0], &[]);
        let exited = packet(&[MUX_S_EXIT_MESSAGE, 0, 0], &[]);
        let master = fake_master(dir.path(), "ours\n", &[opened, exited].concat());
        let out = run(&dir.path().join("ctl"), "sh -c 'echo ours'", Duration::from_secs(10)).unwrap();
        assert_eq!(out, b"ours\n");
        let said = master.wait_with_output().unwrap();
        let sent = hex(&session_request("sh -c 'echo ours'")[4..]);
        assert_eq!(
            String::from_utf8_lossy(&said.stdout).trim(),
            sent,
            "the request as sent"
        );
    }

    #[test]
    fn a_refused_session_is_an_error_not_empty_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut failure = Vec::new();
        put_u32(&mut failure, MUX_S_FAILURE);
        put_u32(&mut failure, REQUEST_ID);
        put_string(&mut failure, b"Session open refused by peer");
        let master = fake_master(dir.path(), "", &frame(&failure));
        let err = run(&dir.path().join("ctl"), "true", Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.to_string(), "Session open refused by peer");
        master.wait_with_output().unwrap();
        // No master at all: an error at once.
        assert!(run(&dir.path().join("none"), "true", Duration::from_secs(10)).is_err());
    }

    #[test]
    fn the_session_request_has_the_fields_mux_c_reads() {
        let framed = session_request("ls");
        let words = |at: usize| u32::from_be_bytes(framed[at..at + 4].try_into().unwrap());
        assert_eq!(words(0) as usize, framed.len() - 4);
        assert_eq!(
            (words(4), words(8), words(12)),
            (MUX_C_NEW_SESSION, REQUEST_ID, 0),
            "type, id, reserved"
        );
        assert_eq!(
            [words(16), words(20), words(24), words(28)],
            [0; 4],
            "no tty, X11, agent, subsystem"
        );
        assert_eq!(words(32), u32::MAX, "no escape character");
        assert_eq!((words(36), words(40)), (0, 2), "no terminal type; the command's length");
        assert_eq!(&framed[44..], b"ls");
    }

    #[test]
    fn the_request_is_what_ssh_sends() {
        let mut request = Vec::new();
        put_u32(&mut request, MUX_C_NEW_STDIO_FWD);
        put_u32(&mut request, REQUEST_ID);
        put_string(&mut request, b"");
        put_string(&mut request, b"/s");
        put_u32(&mut request, PORT_STREAMLOCAL);
        assert_eq!(
            frame(&request),
            [
                &[0, 0, 0, 22][..],
                &[0x10, 0, 0, 8],
                &[0, 0, 0, 1],
                &[0, 0, 0, 0],
                &[0, 0, 0, 2],
                b"/s",
                &[0xff, 0xff, 0xff, 0xfe]
            ]
            .concat()
        );
    }
}
