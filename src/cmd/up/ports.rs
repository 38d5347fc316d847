//! Port policy: which local port a new tunnel gets, and which remote ports Jupyter tries.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::UsageError;
use crate::fsutil;
use crate::state::{self, StateDir};
use crate::target::Alias;

/// Where a new server's local port comes from, in order: `--port` (must be free), the port
/// this alias used last, 8888 unless another alias keeps it, any free port. Each alias keeps
/// its port, so its URL stays the same and two aliases starting at once do not collide.
fn choose_port(
    explicit: Option<u16>,
    remembered: Option<u16>,
    taken: &[u16],
    free: impl Fn(u16) -> bool,
) -> Result<Option<u16>> {
    if let Some(port) = explicit {
        if !free(port) {
            return Err(UsageError(format!(
                "port {port} on 127.0.0.1 is busy: pick another --port, or leave it out to get a free one"
            ))
            .into());
        }
        return Ok(Some(port));
    }
    let default = Some(8888).filter(|p| !taken.contains(p));
    Ok(remembered.into_iter().chain(default).find(|&p| free(p)))
}

/// How long the remembered local port is waited for (see [`claim_local`]).
const PORT_RELEASE: Duration = Duration::from_secs(2);

/// Whether nobody holds `127.0.0.1:port`. Binding alone is not proof: on macOS and the BSDs
/// it succeeds while another program listens on `*:port` (the wildcard address), so whoever
/// holds the port must also not answer a connection.
fn port_is_free(port: u16) -> bool {
    let here = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(here).is_ok() && TcpStream::connect_timeout(&here, Duration::from_millis(200)).is_err()
}

/// Picks and records the local port under a lock shared by all aliases (several `up`s at
/// once, in one `up --all` or in several processes, never pick the same one).
pub(super) fn claim_local(
    paths: &crate::paths::Paths,
    run: &StateDir,
    alias: &Alias,
    explicit: Option<u16>,
) -> Result<u16> {
    let _ports = state::lock_ports(paths)?;
    let taken = state::claimed_ports(paths, alias);
    let remembered = run.remembered_port();
    // A supervisor killed a moment ago may hold its port a little longer (its last threads
    // exiting, a child of its between fork and exec): the remembered port, the URL the user
    // already has, is worth waiting for before another one is chosen.
    let free = |port: u16| {
        let deadline = Instant::now() + PORT_RELEASE;
        loop {
            if port_is_free(port) {
                return true;
            }
            if Some(port) != remembered || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let port = if let Some(port) = choose_port(explicit, remembered, &taken, free)? {
        port
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").context("could not find a free local port")?;
        listener.local_addr().context("could not read the free port")?.port()
    };
    run.remember_port(port)?;
    Ok(port)
}

/// Remote ports to try, in order: random ones in 20000–32767, below Linux's ephemeral range
/// (32768–60999), where any outgoing connection may hold a port at any moment and make
/// Jupyter's bind fail after the launch script found it free.
pub(super) fn remote_candidates() -> Result<Vec<u16>> {
    let hex = fsutil::random_hex(10)?;
    Ok((0..5)
        .map(|i| {
            let n = u16::from_str_radix(&hex[i * 4..i * 4 + 4], 16).unwrap_or(0);
            REMOTE_PORTS.start + n % (REMOTE_PORTS.end - REMOTE_PORTS.start)
        })
        .collect())
}

const REMOTE_PORTS: std::ops::Range<u16> = 20_000..32_768;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_ports_stay_below_the_ephemeral_range() {
        // Regression: ports up to 49999 collided with outgoing connections' local ports.
        for _ in 0..200 {
            let ports = remote_candidates().unwrap();
            assert_eq!(ports.len(), 5);
            assert!(ports.iter().all(|p| (20_000..32_768).contains(p)), "{ports:?}");
        }
    }

    #[test]
    fn a_port_held_on_the_wildcard_address_is_not_free() {
        // Regression (macOS, the BSDs): binding 127.0.0.1:P succeeds there while another
        // program listens on *:P, so a bind alone called the port free.
        let wildcard = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        assert!(!port_is_free(port));
        // (Not asserted: that the port is free once dropped. CI saw it taken again at once,
        // an ephemeral port being anyone's to reuse.)
        drop(wildcard);
    }

    #[test]
    fn ports_prefer_remembered_then_8888_unless_taken() {
        let all_free = |_| true;
        assert_eq!(choose_port(None, Some(9000), &[], all_free).unwrap(), Some(9000));
        assert_eq!(choose_port(None, None, &[], all_free).unwrap(), Some(8888));
        assert_eq!(
            choose_port(None, None, &[8888], all_free).unwrap(),
            None,
            "another alias keeps 8888"
        );
        assert_eq!(choose_port(None, Some(9000), &[], |p| p != 9000).unwrap(), Some(8888));
        assert_eq!(
            choose_port(Some(7000), Some(9000), &[7000], all_free).unwrap(),
            Some(7000)
        );
        let busy = choose_port(Some(7000), None, &[], |_| false).unwrap_err();
        assert!(busy.to_string().contains("7000") && busy.to_string().contains("--port"));
    }
}
