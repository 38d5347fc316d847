//! `jssh doctor`: one line per check, each failure with its fix.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::Ctx;
use crate::cli::DoctorArgs;

pub(crate) fn run(_ctx: &Ctx, args: &DoctorArgs) -> Result<ExitCode> {
    bail!("jssh doctor is being written ({:?})", args.alias)
}
