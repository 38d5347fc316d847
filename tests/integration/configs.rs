//! Issue 11's promise against the ssh configs people really have (`Include config.d/*` with
//! hosts inside, `Match` blocks, wildcards, negations, `Host *` first, CRLF, no final newline,
//! ProxyCommand, tabs and `=`, comments): every host the user defines is refused with one line
//! naming where ssh finds it, and nothing changes; a new alias keeps every byte of the user's
//! config (the only change is the `Include` line on top) and leaves `ssh -G` of every existing
//! host as it was.
//!
//! Includes are absolute (`@DIR@` is the client's ssh dir): OpenSSH resolves a relative
//! `Include` in a `-F` file against the real `~/.ssh`, which a test must never read.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::fixture::{Client, Sshd, throwaway_user_with_password};
use crate::util::{jssh, setup_args, snapshot, stderr, stdout};

/// One user's ssh setup.
struct Corpus {
    /// The user's `config`. `@DIR@` is the client's ssh dir; `@FIXTURE@` becomes the fixture's
    /// own settings (its known_hosts and bootstrap key), each an indented line, in a block that
    /// applies to every host, as a user's `Host *` settings would.
    config: &'static str,
    /// More files in the ssh dir: (path relative to it, text with `@DIR@`).
    files: &'static [(&'static str, &'static str)],
    /// Hosts the user defines: (host, file relative to the ssh dir, line ssh applies for it).
    defined: &'static [(&'static str, &'static str, usize)],
    /// Aliases the user does not define (some appear in a negation or a comment): setup of
    /// each succeeds, twice.
    new: &'static [&'static str],
}

/// `ssh -F CONFIG -G HOST`: what ssh would use for `host`.
fn resolved(config: &Path, host: &str) -> String {
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-G", "--", host])
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh -G {host}: {}", stderr(&out));
    stdout(&out)
}

fn check(corpus: &Corpus) {
    let sshd = Sshd::start();
    let client = Client::new(&sshd);
    let dir = client.ssh_dir();
    let eol = if corpus.config.contains("\r\n") { "\r\n" } else { "\n" };
    let mut fixture = String::new();
    for line in fs::read_to_string(client.ssh_config()).unwrap().lines() {
        if line.starts_with('\t') {
            fixture.push_str(line);
            fixture.push_str(eol);
        }
    }
    let dir_text = dir.display().to_string();
    for (name, text) in corpus.files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text.replace("@DIR@", &dir_text)).unwrap();
    }
    let original = corpus.config.replace("@DIR@", &dir_text).replace("@FIXTURE@", &fixture);
    fs::write(client.ssh_config(), &original).unwrap();
    let hosts: Vec<&str> = corpus
        .defined
        .iter()
        .map(|d| d.0)
        .chain(["undefined-elsewhere"])
        .collect();
    let before_g: BTreeMap<&str, String> = hosts.iter().map(|h| (*h, resolved(&client.ssh_config(), h))).collect();

    let refuse = |host: &str, file: &str, line: usize| {
        let before = snapshot(&[client.root(), sshd.home()]);
        let out = jssh(&client).args(setup_args(&sshd, host)).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{host} not refused: {}{err}", stdout(&out));
        let place = format!("{host} is already defined in {}/{file} line {line} (`", dir.display());
        assert!(err.contains(&place) && err.contains("--force"), "{host}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            before == snapshot(&[client.root(), sshd.home()]),
            "refusing {host} changed files"
        );
    };
    for (host, file, line) in corpus.defined {
        refuse(host, file, *line);
    }

    let include = format!("Include {}{eol}", dir.join("config.d/jssh").display());
    for alias in corpus.new {
        let out = jssh(&client).args(setup_args(&sshd, alias)).output().unwrap();
        assert!(out.status.success(), "{alias}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(
            fs::read_to_string(client.ssh_config()).unwrap(),
            format!("{include}{original}"),
            "every byte of the user's config is kept"
        );
        // Rerunning setup for jssh's own alias is not refused, also when a `config.d/*` glob
        // of the user's reaches jssh's file.
        let again = jssh(&client).args(setup_args(&sshd, alias)).output().unwrap();
        assert!(again.status.success(), "rerun of {alias}: {}", stderr(&again));
        let login = std::process::Command::new("ssh")
            .arg("-F")
            .arg(client.ssh_config())
            .args(["-o", "BatchMode=yes", "--", alias, "true"])
            .output()
            .unwrap();
        assert!(login.status.success(), "ssh {alias}: {}", stderr(&login));
    }
    for (host, before) in &before_g {
        assert_eq!(
            &resolved(&client.ssh_config(), host),
            before,
            "ssh -G {host} changed after setup"
        );
    }
    // With jssh's Include in place, the user's hosts are still theirs (the line numbers of the
    // top-level file moved by one).
    if let Some((host, file, line)) = corpus.defined.first() {
        refuse(host, file, if *file == "config" { line + 1 } else { *line });
    }
}

/// Case 1 of issue 11: `Include config.d/*` is the normal layout; hosts inside the included
/// files are the user's, and jssh's own file, which the same glob reaches, is not.
#[test]
fn case1_host_in_included_file_is_refused() {
    check(&Corpus {
        config: "Include @DIR@/config.d/*\n\nHost *\n@FIXTURE@\tServerAliveInterval 30\n",
        files: &[
            ("config.d/work", "Host work\n\tHostName 192.0.2.10\n\tUser me\n"),
            ("config.d/lab", "# the lab\nHost lab lab2\n  HostName 192.0.2.11\n"),
        ],
        defined: &[("work", "config.d/work", 1), ("lab2", "config.d/lab", 2)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: a `Match host`/`Match originalhost` block defines its host too.
#[test]
fn case1_match_block_is_refused() {
    check(&Corpus {
        config: "Host *\n@FIXTURE@\nMatch host mediabox\n\tUser media\n\tPort 2022\n\
                 Match originalhost nas exec \"true\"\n\tUser admin\n",
        files: &[],
        defined: &[("mediabox", "config", 5), ("nas", "config", 8)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: `Match final`, `Match exec` on the name, and `Match all` (which
/// applies to every host and defines none).
#[test]
fn case1_match_final_and_exec_are_refused_match_all_is_not() {
    check(&Corpus {
        config: "Match all\n@FIXTURE@\nMatch final host finalhost\n\tUser f\n\
                 Match exec \"test %n = execbox\"\n\tUser e\n",
        files: &[],
        defined: &[("finalhost", "config", 5), ("execbox", "config", 7)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: `Host *` first, as many configs start.
#[test]
fn case1_host_star_first_then_hosts() {
    check(&Corpus {
        config: "Host *\n@FIXTURE@\tAddKeysToAgent yes\n\tServerAliveInterval 60\n\n\
                 Host github.com\n\tUser git\n\tIdentityFile ~/.ssh/github\n",
        files: &[],
        defined: &[("github.com", "config", 7)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: a wildcard that fits the alias defines it, as ssh applies it.
#[test]
fn case1_wildcards_count_as_ssh_counts_them() {
    check(&Corpus {
        config: "Host *.corp.example\n\tUser corp\n\tProxyJump bastion.corp.example\n\
                 Host gpu-* j*\n\tUser researcher\nHost *\n@FIXTURE@",
        files: &[],
        defined: &[
            ("a.corp.example", "config", 1),
            ("gpu-3", "config", 4),
            ("jbox", "config", 4),
        ],
        new: &["box"],
    });
}

/// Case 1 of issue 11: a negation (`Host * !legacy`) does not define `legacy`; an alias
/// that only appears negated is free.
#[test]
fn case1_negations_define_nothing() {
    check(&Corpus {
        config: "Host * !legacy !nocompress\n\tCompression yes\nHost *\n@FIXTURE@\n\
                 Host legacy\n\tHostName 192.0.2.5\n\tKexAlgorithms +diffie-hellman-group14-sha1\n",
        files: &[],
        defined: &[("legacy", "config", 7)],
        new: &["nocompress"],
    });
}

/// Case 1 of issue 11: CRLF line endings, kept byte for byte.
#[test]
fn case1_crlf_config() {
    check(&Corpus {
        config: "# work laptop\r\nHost *\r\n@FIXTURE@\tServerAliveInterval 60\r\n\r\n\
                 Host crlfhost\r\n\tHostName 192.0.2.7\r\n",
        files: &[],
        defined: &[("crlfhost", "config", 7)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: no final newline, kept.
#[test]
fn case1_no_final_newline() {
    check(&Corpus {
        config: "Host *\n@FIXTURE@Host last\n\tHostName 192.0.2.8",
        files: &[],
        defined: &[("last", "config", 4)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: ProxyCommand and ProxyJump hosts, and the bastion they use.
#[test]
fn case1_proxy_hosts() {
    check(&Corpus {
        config: "Host *\n@FIXTURE@\nHost viaproxy\n\tHostName 10.1.2.3\n\tProxyCommand ssh -W %h:%p bastion\n\
                 Host viajump\n\tProxyJump bastion\nHost bastion\n\tHostName 192.0.2.9\n",
        files: &[],
        defined: &[
            ("viaproxy", "config", 5),
            ("viajump", "config", 8),
            ("bastion", "config", 10),
        ],
        new: &["box"],
    });
}

/// Case 1 of issue 11: tabs, `=` and upper case, which ssh accepts.
#[test]
fn case1_tabs_equals_and_case() {
    check(&Corpus {
        config: "Host=*\n@FIXTURE@\nHost\tspaced\n\tHostName=192.0.2.12\nHOST = eq\n  Port = 2200\n",
        files: &[],
        defined: &[("spaced", "config", 5), ("eq", "config", 7)],
        new: &["box"],
    });
}

/// Case 1 of issue 11: hosts in comments are not defined; trailing comments are fine.
#[test]
fn case1_comments() {
    check(&Corpus {
        config: "# Personal\n# Host commented\nHost *  # every host\n@FIXTURE@\n# Host ghost\n\
                 Host real # trailing comment\n\tHostName 192.0.2.13\n",
        files: &[],
        defined: &[("real", "config", 8)],
        new: &["commented"],
    });
}

/// Case 1 of issue 11: an `Include` inside a `Host` block, and nested includes.
#[test]
fn case1_include_in_host_block_and_nested() {
    check(&Corpus {
        config: "Include @DIR@/config.d/*.conf\nHost *\n@FIXTURE@\nHost work2\n\tInclude @DIR@/work2.conf\n",
        files: &[
            ("work2.conf", "User w\nPort 2201\n"),
            ("config.d/outer.conf", "Include @DIR@/deeper/inner\n"),
            ("deeper/inner", "Host deep\n\tUser d\n"),
        ],
        defined: &[("work2", "config", 6), ("deep", "deeper/inner", 1)],
        new: &["box"],
    });
}

/// Case 1 of issue 11 in the layout most users have: `~/.ssh/config` with a relative
/// `Include config.d/*`, which OpenSSH resolves against `~/.ssh` of the password database, and
/// which also reaches jssh's own `config.d/jssh`. Only a user whose home is a temporary dir
/// lets a test have that without touching a real `~/.ssh`: a throwaway user, so root only.
#[test]
fn case1_relative_include_in_the_default_config() {
    let Some(user) = throwaway_user_with_password() else {
        eprintln!("skipped: a throwaway user with a home of its own needs root");
        return;
    };
    let sshd = Sshd::start_with(&user.sshd_config());
    let account = nix::unistd::User::from_name(user.name()).unwrap().unwrap();
    let ssh_dir = account.dir.join(".ssh");
    fs::create_dir_all(ssh_dir.join("config.d")).unwrap();
    let original = "Include config.d/*\n\nHost *\n\tIdentityFile ~/.ssh/id_ed25519\n";
    fs::write(ssh_dir.join("config"), original).unwrap();
    fs::write(ssh_dir.join("config.d/work"), "Host work\n\tHostName 192.0.2.10\n").unwrap();
    fs::write(ssh_dir.join("known_hosts"), sshd.known_hosts_line() + "\n").unwrap();
    // The user's key, authorized on the server (the same home): ssh-copy-id's way in.
    fs::copy(sshd.bootstrap_key(), ssh_dir.join("id_ed25519")).unwrap();
    fs::copy(sshd.bootstrap_key().with_extension("pub"), user.authorized_keys()).unwrap();
    let chown = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", account.uid, account.gid))
        .arg(&ssh_dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let as_user = |program: &str| {
        let mut cmd = std::process::Command::new(program);
        cmd.uid(account.uid.as_raw())
            .gid(account.gid.as_raw())
            .env_clear()
            .env("HOME", &account.dir)
            .env("PATH", "/usr/bin:/bin")
            .current_dir(&account.dir)
            .stdin(std::process::Stdio::null());
        cmd
    };
    let resolve = |host: &str| {
        let out = as_user("ssh").args(["-G", "--", host]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let setup = |alias: &str| {
        as_user(env!("CARGO_BIN_EXE_jssh"))
            .args(setup_args(&sshd, alias))
            .output()
            .unwrap()
    };
    let work_before = resolve("work");
    let before = snapshot(&[&account.dir]);
    let out = setup("work");
    let expected = format!("work is already defined in {}/config.d/work line 1", ssh_dir.display());
    assert!(
        out.status.code() == Some(1) && stderr(&out).contains(&expected),
        "{}",
        stderr(&out)
    );
    assert!(before == snapshot(&[&account.dir]), "refusing work changed files");

    for _ in 0..2 {
        let out = setup("box");
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    assert_eq!(
        fs::read_to_string(ssh_dir.join("config")).unwrap(),
        format!("Include config.d/jssh\n{original}")
    );
    assert_eq!(resolve("work"), work_before);
    let login = as_user("ssh")
        .args(["-o", "BatchMode=yes", "--", "box", "true"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
}
