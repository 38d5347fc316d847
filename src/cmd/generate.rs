//! `jssh completions` and `jssh man`: generated from the clap definitions, plus what clap
//! cannot know (host aliases, exit codes, files).

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::UsageError;
use crate::cli::{Cli, ShellKind};

/// Subcommands whose first positional argument is a host alias.
fn alias_commands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|s| s.get_positionals().any(|a| a.get_id() == "alias"))
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// Shell code that completes host aliases by asking `jssh hosts --names`, so completion
/// follows the profiles without regenerating the script.
fn alias_completion(shell: ShellKind, script: &str) -> String {
    let commands = alias_commands();
    match shell {
        ShellKind::Bash => format!(
            "{script}\n\
             # Host aliases come from jssh itself, so they are always current.\n\
             _jssh_with_aliases() {{\n\
             \x20   _jssh \"$@\"\n\
             \x20   local cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n\
             \x20   [[ $cur == -* || $COMP_CWORD -lt 2 ]] && return 0\n\
             \x20   case \"${{COMP_WORDS[1]}}\" in\n\
             \x20       {}) ;;\n\
             \x20       *) return 0 ;;\n\
             \x20   esac\n\
             \x20   if [[ $COMP_CWORD -eq 2 || \" ${{COMPREPLY[*]}} \" == *\" <ALIAS> \"* ]]; then\n\
             \x20       COMPREPLY=($(compgen -W \"$(jssh hosts --names 2>/dev/null)\" -- \"$cur\"))\n\
             \x20   fi\n\
             }}\n\
             complete -F _jssh_with_aliases -o bashdefault -o default jssh\n",
            commands.join("|")
        ),
        ShellKind::Zsh => {
            let helper = "(( $+functions[_jssh_aliases] )) ||\n\
                 _jssh_aliases() {\n\
                 \x20   local -a aliases\n\
                 \x20   aliases=(${(f)\"$(jssh hosts --names 2>/dev/null)\"})\n\
                 \x20   _describe -t aliases 'host alias' aliases\n\
                 }\n\n";
            let mut out = String::new();
            for line in script.lines() {
                if line.starts_with("if [ \"$funcstack[1]\" = \"_jssh\" ]") {
                    out.push_str(helper);
                }
                if line.trim_start().starts_with("':alias") && line.ends_with(":_default' \\") {
                    out.push_str(&line.replace(":_default' \\", ":_jssh_aliases' \\"));
                } else if line.trim_start().starts_with("':alias") && line.ends_with(":_default'") {
                    out.push_str(&line.replace(":_default'", ":_jssh_aliases'"));
                } else {
                    out.push_str(line);
                }
                out.push('\n');
            }
            out
        }
        ShellKind::Fish => format!(
            "{script}\n# Host aliases come from jssh itself, so they are always current.\n\
             complete -c jssh -n \"__fish_seen_subcommand_from {}\" -f -a \"(jssh hosts --names 2>/dev/null)\" -d 'host alias'\n",
            commands.join(" ")
        ),
    }
}

pub(crate) fn completions(shell: ShellKind) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell.generator(), &mut Cli::command(), "jssh", &mut buf);
    let script = String::from_utf8(buf).context("clap generated a non-UTF-8 script")?;
    std::io::stdout()
        .write_all(alias_completion(shell, &script).as_bytes())
        .context("could not write the completion script")
}

/// The sections clap cannot derive, in roff.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Failure: a command jssh ran failed, a host could not be reached, or a file could not be written. The message says what to do next.
.TP
\fB2\fR
Usage error: a bad argument (an alias, host, user or jump with whitespace, \fB#\fR, \fB"\fR, \fB=\fR or a leading \fB\-\fR; a port outside 1\(en65535) or an unknown alias. Nothing was written and nothing was run.
.PP
\fBjssh attach\fR exits with ssh's status. After a signal, 128 + its number.
.SH ENVIRONMENT
.TP
\fBJSSH_SSH_CONFIG\fR
The OpenSSH client config jssh edits, as \fB\-\-ssh\-config\fR.
.TP
\fBJSSH_CONFIG_DIR\fR
jssh's own configuration (host profiles); default \fI$XDG_CONFIG_HOME/jssh\fR or \fI~/.config/jssh\fR.
.TP
\fBJSSH_STATE_DIR\fR
Runtime state (pidfiles, logs, tokens); default \fI$XDG_STATE_HOME/jssh\fR or \fI~/.local/state/jssh\fR.
.SH FILES
.TP
\fI~/.ssh/config\fR
Your ssh config. jssh adds one line, \fBInclude config.d/jssh\fR, at its top, after a one\-time backup to \fIconfig.jssh\-backup\fR; every other byte is kept.
.TP
\fI~/.ssh/config.d/jssh\fR
The one file jssh owns: one \fBHost\fR block per alias, rendered from the profiles. Do not edit it.
.TP
\fI~/.ssh/jssh_ed25519\fR
The key \fBjssh setup\fR makes when no \fB\-\-identity\fR is given (mode 0600).
.TP
\fI~/.config/jssh/hosts.toml\fR
Host profiles: alias, host, user, port, jump, identity, remote environment, what jssh learned about the remote Jupyter.
.TP
\fI~/.local/state/jssh/ALIAS/\fR
Runtime state (0700): \fIsession.json\fR (0600: ports, token, counters), \fIsupervisor.lock\fR (held by the running supervisor, with its pid), \fIsupervisor.log\fR, the local port to reuse.
.TP
\fI~/.jssh/run/jssh\-ALIAS/\fR (remote)
The server's token (0600), port, socket and Jupyter log; removed by \fBjssh down\fR.
.TP
\fI~/.jupyter/jssh_config.json\fR (remote)
jssh's Jupyter settings and password hash (0600), loaded by \fBjssh up\fR with \-\-config; your own Jupyter config is never edited.
.SH "SEE ALSO"
\fBssh\fR(1), \fBssh_config\fR(5), \fBssh\-copy\-id\fR(1), \fBtmux\fR(1)
"#;

/// jssh(1), or jssh-SUBCOMMAND(1) for one subcommand (the pages jssh(1) refers to).
pub(crate) fn man(subcommand: Option<&str>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let Some(name) = subcommand else {
        let man = clap_mangen::Man::new(Cli::command());
        return (|| -> std::io::Result<()> {
            man.render_title(&mut out)?;
            man.render_name_section(&mut out)?;
            man.render_synopsis_section(&mut out)?;
            man.render_description_section(&mut out)?;
            man.render_options_section(&mut out)?;
            man.render_subcommands_section(&mut out)?;
            out.write_all(EXTRA_SECTIONS.as_bytes())?;
            man.render_version_section(&mut out)
        })()
        .context("could not write the man page");
    };
    let mut cli = Cli::command();
    cli.build();
    let sub = cli
        .find_subcommand(name)
        .ok_or_else(|| UsageError(format!("no subcommand {name:?}: see `jssh --help`")))?
        .clone()
        .display_name(format!("jssh-{name}"));
    clap_mangen::Man::new(sub)
        .render(&mut out)
        .context("could not write the man page")
}
