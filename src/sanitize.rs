//! Text from a remote host (ssh's stderr, Jupyter's log) is made safe before it reaches the
//! terminal: escape sequences could rewrite the screen or the window title.

/// Replaces control characters other than newline and tab with `�`.
pub(crate) fn for_terminal(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// What an ssh stderr says went wrong, for a message: each line trimmed and made safe, without
/// `-v` chatter or blank lines. The one place that cleans ssh's stderr (command failures,
/// `setup`, `up`, `jupyter`, and `doctor`'s one-line summaries).
pub(crate) fn ssh_stderr(stderr: &[u8]) -> Vec<String> {
    const CHATTER: [&str; 5] = [
        "debug",
        "OpenSSH_",
        "Authenticated to",
        "Transferred:",
        "Bytes per second",
    ];
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !CHATTER.iter().any(|c| l.starts_with(c)))
        .map(for_terminal)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_escape_sequences() {
        assert_eq!(
            super::for_terminal("a\u{1b}]0;pwned\u{7}b\r\nc\td"),
            "a\u{fffd}]0;pwned\u{fffd}b\u{fffd}\nc\td"
        );
    }

    #[test]
    fn ssh_stderr_keeps_what_went_wrong() {
        let err = b"debug1: x\nOpenSSH_9.2p1\n\n  Authenticated to h\nroot@h: Permission denied (publickey).\n\
                    Transferred: sent 1\nBytes per second: 2\n  a \x1b[2J b \n";
        assert_eq!(
            super::ssh_stderr(err),
            ["root@h: Permission denied (publickey).", "a \u{fffd}[2J b"]
        );
        assert!(super::ssh_stderr(b"debug1: only\n").is_empty());
    }
}
