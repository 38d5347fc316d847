//! The health probe: `GET /api/status` with the token through the local end of the tunnel,
//! over plain HTTP/1.1 on a blocking socket with short timeouts (no HTTP client crate needed
//! for one request line).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Jupyter answered 200 with our token.
    Ok,
    /// Something answered with another status (403: wrong token).
    Status(u16),
    /// Nothing listens locally: the tunnel's ssh is not (yet) up.
    Refused,
    /// The tunnel accepted and closed at once: ssh is up but nothing answers on the remote end
    /// (Jupyter not started yet, or gone).
    Closed,
    /// No answer in time: the path through ssh is stalled (a dropped network).
    Timeout,
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
fn exchange(stream: &mut TcpStream, port: u16, token: Option<&str>, keep: bool) -> (Probe, bool) {
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let connection = if keep { "keep-alive" } else { "close" };
    let request =
        format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: {connection}\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => (Probe::Closed, false),
            _ => (Probe::Other(e.to_string()), false),
        };
    }
    let mut buf = [0u8; 4096];
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
                return (Probe::Timeout, false);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (Probe::Closed, false),
            Err(e) => return (Probe::Other(e.to_string()), false),
        }
    };
    let verdict = match status_line(&buf[..got]) {
        Some(200) => Probe::Ok,
        Some(code) => Probe::Status(code),
        None if got == 0 => Probe::Closed,
        None => Probe::Other("not an HTTP answer".into()),
    };
    (verdict, reusable)
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, Probe> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Err(Probe::Refused),
        Err(e) if e.kind() == ErrorKind::TimedOut => return Err(Probe::Timeout),
        Err(e) => return Err(Probe::Other(e.to_string())),
    };
    set_timeouts(&stream, timeout);
    Ok(stream)
}

fn set_timeouts(stream: &TcpStream, timeout: Duration) {
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
}

/// Probes `127.0.0.1:port` once, on a connection of its own, with the token in a header
/// (never in a URL that could be logged).
pub(crate) fn api_status(port: u16, token: Option<&str>, timeout: Duration) -> Probe {
    match connect(port, timeout) {
        Ok(mut stream) => exchange(&mut stream, port, token, false).0,
        Err(probe) => probe,
    }
}

/// The supervisor's probe: like [`api_status`], but it keeps its connection open between
/// probes (HTTP keep-alive), so a probe every couple of seconds for days costs one request,
/// not a new connection (and ssh channel) each time. A kept connection that turns out closed
/// (Jupyter restarted, the tunnel's ssh replaced) is replaced at once; one that times out is
/// a stalled path and reported as such.
#[derive(Debug)]
pub(crate) struct Prober {
    port: u16,
    token: String,
    kept: Option<TcpStream>,
}

impl Prober {
    pub(crate) fn new(port: u16, token: &str) -> Self {
        Self {
            port,
            token: token.to_owned(),
            kept: None,
        }
    }

    pub(crate) fn probe(&mut self, timeout: Duration) -> Probe {
        if let Some(mut stream) = self.kept.take() {
            set_timeouts(&stream, timeout);
            match exchange(&mut stream, self.port, Some(&self.token), true) {
                (Probe::Closed | Probe::Other(_), _) => {}
                (verdict, reusable) => {
                    self.kept = reusable.then_some(stream);
                    return verdict;
                }
            }
        }
        match connect(self.port, timeout) {
            Ok(mut stream) => {
                let (verdict, reusable) = exchange(&mut stream, self.port, Some(&self.token), true);
                self.kept = reusable.then_some(stream);
                verdict
            }
            Err(probe) => probe,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_line(b"HTTP/1.1 403 Forbidden\r\n"), Some(403));
        assert_eq!(status_line(b"SSH-2.0-x\r\n"), None);
    }

    #[test]
    fn reads_the_response_head() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(response_head(ok), Some((38, Some(2))));
        assert_eq!(response_head(b"HTTP/1.1 200 OK\r\nContent-Len"), None);
        let closing = b"HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(response_head(closing).map(|h| h.1), Some(None));
    }

    #[test]
    fn the_prober_keeps_its_connection_and_replaces_a_closed_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let answer = |s: &mut TcpStream| {
                let mut req = [0u8; 512];
                let n = s.read(&mut req).unwrap();
                assert!(String::from_utf8_lossy(&req[..n]).contains("Authorization: token t0k"));
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
            };
            let (mut first, _) = listener.accept().unwrap();
            answer(&mut first);
            answer(&mut first);
            drop(first); // as Jupyter does after a restart, or ssh when replaced
            let (mut second, _) = listener.accept().unwrap();
            answer(&mut second);
        });
        let mut prober = Prober::new(port, "t0k");
        let t = Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(prober.probe(t), Probe::Ok);
        }
        server.join().unwrap();
    }

    #[test]
    fn tells_closed_and_answered_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            drop(s); // Closed at once, as ssh does when the remote end refuses.
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let n = s.read(&mut req).unwrap();
            let authorized = String::from_utf8_lossy(&req[..n]).contains("Authorization: token t0k");
            let reply: &[u8] = if authorized {
                b"HTTP/1.1 200 OK\r\n\r\n{}"
            } else {
                b"HTTP/1.1 403 F\r\n\r\n"
            };
            s.write_all(reply).unwrap();
        });
        let t = Duration::from_secs(2);
        assert_eq!(api_status(port, Some("t0k"), t), Probe::Closed);
        assert_eq!(api_status(port, Some("t0k"), t), Probe::Ok);
        server.join().unwrap();
    }
}
