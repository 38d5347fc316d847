//! The health probe: `GET /api/status` to Jupyter over a channel of the supervisor's own
//! master (a socket pair handed over as a stdio forward, see [`super::mux`]), over plain
//! HTTP/1.1 with short timeouts (no HTTP client crate needed for one request line). It never
//! goes through the local port: the token travels only inside ssh, to the remote end the
//! supervisor chose.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::gate::Route;
use super::mux::{self, Forward, Reply};

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Jupyter answered 200 with our token.
    Ok,
    /// Something answered with another status (403: wrong token).
    Status(u16),
    /// No master to ask: the tunnel's ssh is not (yet) up.
    Refused,
    /// The server refused the channel, or closed it at once: ssh is up but nothing answers on
    /// the remote end (Jupyter not started yet, or gone).
    Closed,
    /// The channel did not open in time: the path through ssh is stalled (a dropped network).
    Timeout,
    /// The channel opened (so the path and the server work) but Jupyter did not answer in
    /// time: it hangs.
    Unanswered,
    Other(String),
}

fn status_line(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words.next().filter(|w| w.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// Where a response's body starts and how long it is, once its head is complete; `None`
/// for the length when the connection cannot carry another request (no Content-Length, or
/// `Connection: close`).
fn response_head(response: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let length = header("content-length:").and_then(|v| v.parse().ok());
    let closes = header("connection:").is_some_and(|v| v == "close");
    Some((end, length.filter(|_| !closes)))
}

/// Sends one `GET /api/status` on `stream` and reads the answer. Returns the verdict and
/// whether the connection can be used again (the whole response was read, keep-alive).
fn exchange(stream: &mut UnixStream, token: Option<&str>, keep: bool) -> (Probe, bool) {
    let mut buf = [0u8; 4096];
    match request(stream, "/api/status", token, keep, &mut buf) {
        Ok((verdict, _, reusable)) => (verdict, reusable),
        Err(probe) => (probe, false),
    }
}

/// Sends one `GET path` on `stream` and reads the answer into `buf`: the verdict, how many
/// bytes of `buf` hold the response, and whether the connection can be used again (the
/// whole response was read, keep-alive).
fn request(
    stream: &mut UnixStream,
    path: &str,
    token: Option<&str>,
    keep: bool,
    buf: &mut [u8],
) -> Result<(Probe, usize, bool), Probe> {
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let connection = if keep { "keep-alive" } else { "close" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: {connection}\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Err(match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => Probe::Closed,
            _ => Probe::Other(e.to_string()),
        });
    }
    let mut got = 0;
    let reusable = loop {
        match response_head(&buf[..got]) {
            Some((body, Some(length))) if got >= body + length => break got == body + length,
            // The verdict is in the head; the rest need not be read from a connection that
            // will not be used again.
            Some((_, None)) => break false,
            _ if got == buf.len() => break false,
            _ => {}
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => break false,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Probe::Timeout);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(Probe::Closed),
            Err(e) => return Err(Probe::Other(e.to_string())),
        }
    };
    let verdict = match status_line(&buf[..got]) {
        Some(200) => Probe::Ok,
        Some(code) => Probe::Status(code),
        None if got == 0 => Probe::Closed,
        None => Probe::Other("not an HTTP answer".into()),
    };
    Ok((verdict, got, reusable))
}

/// A channel to Jupyter: our end of a socket pair whose other end a master carries, and the
/// control connection that keeps the channel alive.
#[derive(Debug)]
struct Channel {
    stream: UnixStream,
    _forward: Forward,
}

/// Opens a channel to Jupyter through the master on `route`.
fn open(route: &Route, timeout: Duration) -> Result<Channel, Probe> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| Probe::Other(e.to_string()))?;
    let Ok(mut forward) = mux::forward(&route.control, &route.end, theirs.as_fd()) else {
        // No master: ssh is not (yet) up.
        return Err(Probe::Refused);
    };
    let deadline = Instant::now() + timeout;
    loop {
        match forward.reply() {
            Reply::Opened => break,
            // Nothing listens at the remote end: Jupyter is starting, or gone.
            Reply::Refused(_) => return Err(Probe::Closed),
            Reply::Lost => return Err(Probe::Refused),
            Reply::Pending => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // The master could not get an answer from the server in time: the path is stalled.
            return Err(Probe::Timeout);
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(forward.fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
    set_timeouts(&ours, timeout);
    Ok(Channel {
        stream: ours,
        _forward: forward,
    })
}

fn set_timeouts(stream: &UnixStream, timeout: Duration) {
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
}

/// Whether anything listens at the remote end, sending it nothing: a channel is opened and
/// closed. Cheap (no remote process), so it can be asked often while Jupyter starts.
pub(crate) fn listening(route: &Route, timeout: Duration) -> Probe {
    match open(route, timeout) {
        Ok(_) => Probe::Ok,
        Err(probe) => probe,
    }
}

/// Whether `answer` is the proof for `challenge` at the remote's `127.0.0.1:port`: the hex
/// HMAC-SHA256 of `jssh-proof CHALLENGE 127.0.0.1 PORT` keyed with the token, compared in
/// constant time.
fn proof_holds(token: &str, challenge: &str, port: u16, answer: &[u8]) -> bool {
    use hmac::Mac;
    let Some(answer) = unhex(answer.trim_ascii()) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()) else {
        return false;
    };
    mac.update(format!("jssh-proof {challenge} 127.0.0.1 {port}").as_bytes());
    mac.verify_slice(&answer).is_ok()
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Asks once, on a channel of its own: `token` `None` checks that Jupyter refuses a request
/// without it.
pub(crate) fn once(route: &Route, token: Option<&str>, timeout: Duration) -> Probe {
    match open(route, timeout) {
        Ok(mut channel) => match exchange(&mut channel.stream, token, false).0 {
            Probe::Timeout => Probe::Unanswered,
            verdict => verdict,
        },
        Err(probe) => probe,
    }
}

/// The supervisor's probe: it keeps its channel open between probes (HTTP keep-alive), so a
/// probe every couple of seconds for days costs one request, not a new channel each time. A
/// kept channel that turns out closed (Jupyter restarted, the master replaced) is replaced at
/// once. A kept channel that times out is ambiguous (a stalled path, or Jupyter hanging): the
/// next probe, on a new channel, tells which.
#[derive(Debug)]
pub(crate) struct Prober {
    token: String,
    kept: Option<(Route, Channel)>,
}

impl Prober {
    pub(crate) fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            kept: None,
        }
    }

    /// Asks the listener at the remote end to prove it is the Jupyter holding the token (see
    /// `remote/jssh_proof.py`), sending it a fresh challenge and nothing secret: `Ok(true)`
    /// when it did (so it also answers: as good as a probe, and its channel is kept for the
    /// probes), `Ok(false)` when something answered without a proof (a Jupyter without the
    /// extension, or not ours: the remote check decides), the channel's verdict when nothing
    /// answered.
    pub(crate) fn prove(&mut self, route: &Route, port: u16, timeout: Duration) -> Result<bool, Probe> {
        let challenge = crate::fsutil::random_hex(16).map_err(|e| Probe::Other(e.to_string()))?;
        let mut channel = open(route, timeout)?;
        let mut buf = [0u8; 1024];
        let path = format!("/jssh-proof/{challenge}");
        let (verdict, got, reusable) = match request(&mut channel.stream, &path, None, true, &mut buf) {
            Err(Probe::Timeout) => return Err(Probe::Unanswered),
            other => other?,
        };
        let body = response_head(&buf[..got]).map_or(&[][..], |(start, _)| &buf[start..got]);
        let proven = verdict == Probe::Ok && proof_holds(&self.token, &challenge, port, body);
        if proven && reusable {
            self.kept = Some((route.clone(), channel));
        }
        Ok(proven)
    }

    /// Closes the kept channel: its connection was replaced.
    pub(crate) fn forget(&mut self) {
        self.kept = None;
    }

    pub(crate) fn probe(&mut self, route: Option<&Route>, timeout: Duration) -> Probe {
        let Some(route) = route else {
            self.kept = None;
            return Probe::Refused;
        };
        if let Some((kept_route, mut channel)) = self.kept.take()
            && kept_route == *route
        {
            set_timeouts(&channel.stream, timeout);
            match exchange(&mut channel.stream, Some(&self.token), true) {
                (Probe::Closed | Probe::Other(_), _) => {}
                (verdict, reusable) => {
                    self.kept = reusable.then_some((kept_route, channel));
                    return verdict;
                }
            }
        }
        match open(route, timeout) {
            Ok(mut channel) => match exchange(&mut channel.stream, Some(&self.token), true) {
                (Probe::Timeout, _) => Probe::Unanswered,
                (verdict, reusable) => {
                    self.kept = reusable.then(|| (route.clone(), channel));
                    verdict
                }
            },
            Err(probe) => probe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_line(b"HTTP/1.1 403 Forbidden\r\n"), Some(403));
        assert_eq!(status_line(b"SSH-2.0-x\r\n"), None);
    }

    #[test]
    fn a_proof_holds_only_for_its_token_challenge_and_port() {
        // Computed by remote/jssh_proof.py's formula with Python's hmac module.
        let token = "0123456789abcdef0123456789abcdef0123456789abcdef";
        let challenge = "00112233445566778899aabbccddeeff";
        let answer = b"890a7336a3d220547a1a1f8377a1553b56ffd79a3d3d41b1956fefa6ba8584b1\n";
        assert!(proof_holds(token, challenge, 8888, answer));
        assert!(!proof_holds(token, challenge, 8889, answer), "another port");
        assert!(
            !proof_holds(token, "ffeeddccbbaa99887766554433221100", 8888, answer),
            "another challenge"
        );
        assert!(
            !proof_holds(&token.replace('0', "1"), challenge, 8888, answer),
            "another token"
        );
        assert!(!proof_holds(token, challenge, 8888, &answer[..62]), "cut short");
        assert!(!proof_holds(token, challenge, 8888, b""));
        assert!(!proof_holds(token, challenge, 8888, b"not hex at all"));
    }

    #[test]
    fn reads_the_response_head() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(response_head(ok), Some((38, Some(2))));
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\nContent-Len"), None);
        let closing = b"HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(response_head(closing).map(|h| h.1), Some(None));
    }
}
