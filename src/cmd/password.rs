//! `jssh password`: a Jupyter password hashed on the remote; it crosses no command line.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};
use nix::sys::termios::{self, LocalFlags, SetArg};

use super::Ctx;
use super::jupyter::{configure, remember};
use crate::UsageError;
use crate::cli::PasswordArgs;
use crate::jupyter::Request;

/// Reads one line from the terminal with echo off (restored even on error).
fn prompt_hidden(prompt: &str) -> Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask on: use --stdin")?;
    let saved = termios::tcgetattr(tty.as_fd()).context("could not read the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &quiet).context("could not turn echo off")?;
    let result = (|| -> Result<String> {
        let mut writer = &tty;
        writer.write_all(prompt.as_bytes())?;
        writer.flush()?;
        let mut line = String::new();
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    })();
    let _ = termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &saved);
    result
}

fn read_password(from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("could not read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(UsageError(
                "no terminal to ask for the password: pass --stdin to read it from standard input".into(),
            )
            .into());
        }
        let first = prompt_hidden("New Jupyter password: ")?;
        let second = prompt_hidden("Again: ")?;
        if first != second {
            bail!("the passwords differ: nothing was changed");
        }
        first
    };
    if password.is_empty() {
        return Err(UsageError("an empty password: nothing was changed (use --clear to remove one)".into()).into());
    }
    Ok(password)
}

pub(crate) fn run(ctx: &Ctx, args: &PasswordArgs) -> Result<()> {
    let profile = ctx.profile(&args.alias)?;
    let (request, password) = if args.clear {
        (
            Request {
                generate: false,
                settings: None,
                password: Some("clear"),
            },
            None,
        )
    } else {
        (
            Request {
                generate: false,
                settings: None,
                password: Some("set"),
            },
            Some(read_password(args.stdin)?),
        )
    };
    let report = configure(ctx, &profile, &request, password.as_deref())?;
    remember(ctx, &args.alias, &report, None)?;
    let path = report.path.as_deref().unwrap_or("jssh_config.json");
    if args.clear {
        println!(
            "{}: removed the password from {path}; the token still works",
            args.alias
        );
    } else {
        println!("{}: stored the password's argon2 hash in {path} (0600)", args.alias);
    }
    println!(
        "restart the server to apply it: `jssh down {}` then `jssh up {}`",
        args.alias, args.alias
    );
    Ok(())
}
