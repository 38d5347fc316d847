//! The report's model: one [`Finding`] per check, printed as a line or as JSON.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::profile::Profile;
use crate::sanitize::for_terminal;
use crate::target::Alias;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Ok,
    Fail,
    Warn,
}

/// One line of the report: the outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Finding {
    pub(super) check: &'static str,
    pub(super) status: Status,
    pub(super) detail: String,
    pub(super) fix: Option<String>,
    /// The alias it concerns; `None` for the local checks.
    pub(super) alias: Option<Alias>,
}

impl Finding {
    /// Everything shown is sanitized here: details quote remote output and ssh's stderr.
    fn new(check: &'static str, status: Status, detail: &str, fix: Option<&str>) -> Self {
        Self {
            check,
            status,
            detail: for_terminal(detail),
            fix: fix.map(for_terminal),
            alias: None,
        }
    }

    pub(super) fn ok(check: &'static str, detail: impl AsRef<str>) -> Self {
        Self::new(check, Status::Ok, detail.as_ref(), None)
    }

    pub(super) fn fail(check: &'static str, detail: impl AsRef<str>, fix: impl AsRef<str>) -> Self {
        Self::new(check, Status::Fail, detail.as_ref(), Some(fix.as_ref()))
    }

    pub(super) fn warn(check: &'static str, detail: impl AsRef<str>, fix: impl AsRef<str>) -> Self {
        Self::new(check, Status::Warn, detail.as_ref(), Some(fix.as_ref()))
    }

    pub(super) fn line(&self) -> String {
        let symbol = match self.status {
            Status::Ok => "✓",
            Status::Fail => "✗",
            Status::Warn => "!",
        };
        match &self.fix {
            Some(fix) => format!("{symbol} {}: {}: {fix}", self.check, self.detail),
            None => format!("{symbol} {}: {}", self.check, self.detail),
        }
    }
}

pub(super) fn print_report(checks: &[Finding], selected: &[Profile], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, checks).context("could not write JSON")?;
        writeln!(out).context("could not write to stdout")?;
        return Ok(());
    }
    for check in checks.iter().filter(|c| c.alias.is_none()) {
        writeln!(out, "{}", check.line()).context("could not write to stdout")?;
    }
    for p in selected {
        writeln!(out, "{} ({}@{}:{}):", p.alias, p.user, p.host, p.port).context("could not write to stdout")?;
        for check in checks.iter().filter(|c| c.alias.as_ref() == Some(&p.alias)) {
            writeln!(out, "  {}", check.line()).context("could not write to stdout")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_text_is_sanitized() {
        let check = Finding::fail("x", "evil \u{1b}]0;title\u{7}", "fix \u{1b}[2J");
        assert!(!check.line().contains('\u{1b}'), "{}", check.line());
        let json = serde_json::to_value(Finding::ok("x", "d")).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["fix"], serde_json::Value::Null);
    }
}
