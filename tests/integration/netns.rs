//! Hosts as network namespaces: a chain `client → hosts[0] → hosts[1] → …` where each host
//! reaches only its neighbours, so a path through jump hosts is the only way to the last one.
//! Needs root (`ip netns`); [`Chain::new`] says so and returns `None` otherwise.
//!
//! Link `i` joins the previous host (this namespace for `i == 0`) to `hosts[i]` with a veth
//! pair on `169.254.K.4i/30`: `.4i+1` on the near side, `.4i+2` is `hosts[i]`. No namespace
//! forwards packets, and this one gets an `unreachable` route for the whole `169.254.K.0/24`
//! (the sandbox's default route leads to a proxy that accepts any TCP connection), so from
//! here only `hosts[0]` answers.

use std::net::Ipv4Addr;
use std::process::Command;

use nix::unistd::geteuid;

/// One host of the chain.
pub(crate) struct Host {
    pub(crate) netns: String,
    /// Its address on the link from the previous host.
    pub(crate) addr: Ipv4Addr,
}

pub(crate) struct Chain {
    pub(crate) hosts: Vec<Host>,
    route: String,
    /// The empty namespace `jssh<tag>` that claims the tag.
    claim: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip` inside `netns`.
fn ip_in(netns: &str, args: &[&str]) {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    ip(&all).unwrap_or_else(|e| panic!("{e}"));
}

impl Chain {
    /// `names.len()` hosts in a row; `None` (with a message) when not root.
    pub(crate) fn new(names: &[&str]) -> Option<Chain> {
        if !geteuid().is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        // Tests (and other test runs) make chains at once: an empty namespace `jssh<tag>`
        // claims the subnet byte and the link names, since `ip netns add` fails for a name that
        // exists (the hosts' names cannot: chains of other names would share a tag).
        let seed = std::process::id() as usize;
        let (tag, claim) = (1..=250)
            .map(|i| (seed + i * 7) % 250 + 1)
            .find_map(|tag| {
                let claim = format!("jssh{tag}");
                ip(&["netns", "add", &claim]).ok().map(|()| (tag, claim))
            })
            .expect("a free namespace name");
        let mut chain = Chain {
            hosts: Vec::new(),
            route: format!("169.254.{tag}.0/24"),
            claim,
        };
        for (i, name) in names.iter().enumerate() {
            let netns = format!("jssh{tag}-{name}");
            ip(&["netns", "add", &netns]).unwrap_or_else(|e| panic!("{e}"));
            let octet = |n: usize| u8::try_from(4 * i + n).expect("a short chain");
            let near = format!("169.254.{tag}.{}/30", octet(1));
            let far = format!("169.254.{tag}.{}/30", octet(2));
            let (near_if, far_if) = (format!("jv{tag}n{i}"), format!("jv{tag}f{i}"));
            chain.hosts.push(Host {
                netns: netns.clone(),
                addr: Ipv4Addr::new(169, 254, tag.try_into().unwrap(), octet(2)),
            });
            ip_in(&netns, &["link", "set", "lo", "up"]);
            // The pair is made inside the far namespace, then one end is moved to the near one.
            ip_in(
                &netns,
                &["link", "add", &far_if, "type", "veth", "peer", "name", &near_if],
            );
            if let Some(prev) = i.checked_sub(1) {
                let prev = chain.hosts[prev].netns.clone();
                ip_in(&netns, &["link", "set", &near_if, "netns", &prev]);
                ip_in(&prev, &["addr", "add", &near, "dev", &near_if]);
                ip_in(&prev, &["link", "set", &near_if, "up"]);
            } else {
                ip_in(
                    &netns,
                    &["link", "set", &near_if, "netns", &std::process::id().to_string()],
                );
                ip(&["addr", "add", &near, "dev", &near_if]).unwrap_or_else(|e| panic!("{e}"));
                ip(&["link", "set", &near_if, "up"]).unwrap_or_else(|e| panic!("{e}"));
            }
            ip_in(&netns, &["addr", "add", &far, "dev", &far_if]);
            ip_in(&netns, &["link", "set", &far_if, "up"]);
        }
        ip(&["route", "add", "unreachable", &chain.route]).unwrap_or_else(|e| panic!("{e}"));
        Some(chain)
    }
}

impl Drop for Chain {
    /// Deleting a namespace deletes the veth ends in it, and with them their peers.
    fn drop(&mut self) {
        let _ = ip(&["route", "del", "unreachable", &self.route]);
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.netns]);
        }
        let _ = ip(&["netns", "del", &self.claim]);
    }
}
