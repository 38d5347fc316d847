//! Jump hosts through real hops: three sshds, each in a network namespace of its own
//! (bastion, login, target), where only the bastion is reachable from the client. Needs root.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::fixture::{Client, Sshd};
use crate::netns::Chain;
use crate::up::{answers_within, free_port, get, parse_url, up};
use crate::util::{jssh, set_up_at, stderr, stdout};

/// Whether an sshd answers at `addr` with its banner (a bare TCP connect proves nothing here:
/// see netns.rs).
pub(crate) fn ssh_banner(addr: Ipv4Addr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&SocketAddr::from((addr, 22)), Duration::from_secs(1)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut banner = String::new();
    BufReader::new(stream).read_line(&mut banner).is_ok() && banner.starts_with("SSH-2.0-")
}

fn append(path: &std::path::Path, text: &str) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn two_jump_hosts_carry_the_tunnel_heal_a_middle_restart_and_doctor_names_a_broken_hop() {
    let Some(chain) = Chain::new(&["bastion", "login", "target"]) else {
        return;
    };
    let [bastion, login, target] = [0, 1, 2].map(|i| Sshd::start_in_netns(&chain.hosts[i].netns, chain.hosts[i].addr));
    let mut login = login;
    let client = Client::new(&target);
    // The client's key (the target's bootstrap key) opens every hop; the hops are the user's
    // own Host blocks, as on a real cluster.
    let public = fs::read_to_string(target.bootstrap_key().with_extension("pub")).unwrap();
    for hop in [&bastion, &login] {
        append(&hop.authorized_keys(), &public);
        append(&client.known_hosts(), &(hop.known_hosts_line() + "\n"));
    }
    append(
        &client.ssh_config(),
        &format!(
            "Host bastion\n\tHostName {}\nHost login\n\tHostName {}\n",
            bastion.addr(),
            login.addr()
        ),
    );
    assert!(ssh_banner(bastion.addr()), "the bastion answers the client");
    assert!(
        !ssh_banner(login.addr()) && !ssh_banner(target.addr()),
        "only the bastion is reachable from the client"
    );

    set_up_at(
        &client,
        &target.addr().to_string(),
        22,
        "tgt",
        &["--jump", "bastion,login"],
    );
    let url = up(&client, "tgt", &["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    assert_eq!(
        get(port, "/api/status", Some(&token)),
        200,
        "the URL works through two hops"
    );

    let out = jssh(&client).args(["doctor", "tgt"]).output().unwrap();
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "doctor passes through the hops: {report}{}",
        stderr(&out)
    );
    let target_key = format!("host key: Host '{}' is known", target.addr());
    assert!(
        report.contains(&target_key),
        "the target's own host key is checked: {report}"
    );

    // The middle hop's sshd goes down with every session through it, then comes back.
    login.outage();
    std::thread::sleep(Duration::from_millis(500));
    login.restart();
    let healed = answers_within(&client, port, &token, Duration::from_secs(30));
    eprintln!("healed {healed:?} after the login hop's sshd came back");

    // A broken middle hop is named, with the hop before it working.
    login.outage();
    let out = jssh(&client).args(["doctor", "tgt"]).output().unwrap();
    let report = stdout(&out);
    assert!(!out.status.success(), "doctor fails: {report}{}", stderr(&out));
    assert!(
        report.contains("jump host: 1 of 2, bastion: logs in directly"),
        "{report}"
    );
    assert!(
        report.contains("jump host: 2 of 2, login: cannot reach it from bastion"),
        "{report}"
    );
    login.restart();
    let out = jssh(&client).args(["down", "tgt"]).output().unwrap();
    assert!(out.status.success(), "down: {}{}", stdout(&out), stderr(&out));
    drop((bastion, login, target));
    drop(chain);
}
