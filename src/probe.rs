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

/// Probes `127.0.0.1:port` with the token in a header (never in a URL that could be logged).
pub(crate) fn api_status(port: u16, token: Option<&str>, timeout: Duration) -> Probe {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut => return Probe::Timeout,
        Err(e) => return Probe::Other(e.to_string()),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => Probe::Closed,
            _ => Probe::Other(e.to_string()),
        };
    }
    let mut buf = [0u8; 256];
    let mut got = 0;
    loop {
        match stream.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == buf.len() || buf[..got].contains(&b'\n') {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Probe::Timeout,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Probe::Closed,
            Err(e) => return Probe::Other(e.to_string()),
        }
    }
    match status_line(&buf[..got]) {
        Some(200) => Probe::Ok,
        Some(code) => Probe::Status(code),
        None if got == 0 => Probe::Closed,
        None => Probe::Other("not an HTTP answer".into()),
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
