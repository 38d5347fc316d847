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

#[cfg(test)]
mod tests {
    #[test]
    fn strips_escape_sequences() {
        assert_eq!(
            super::for_terminal("a\u{1b}]0;pwned\u{7}b\r\nc\td"),
            "a\u{fffd}]0;pwned\u{fffd}b\u{fffd}\nc\td"
        );
    }
}
