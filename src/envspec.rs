//! How the remote finds Jupyter (`--env`): venvs, conda environments, environment modules and
//! free-form shell snippets, rendered as POSIX sh that runs in the user's login shell before
//! Jupyter starts. A missing environment stops the script with a message that names it and,
//! where that is cheap, lists what exists.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One step of the remote environment, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) enum EnvSpec {
    /// A virtualenv (or any prefix with `bin/jupyter`); `~/` is the remote home.
    Venv(String),
    /// A conda environment, activated through micromamba's, mamba's or conda's shell hook.
    Conda(String),
    /// Lmod / Environment Modules: `module load A B …`.
    Module(Vec<String>),
    /// A shell snippet run as written, once, before Jupyter starts.
    Pre(String),
}

/// Names that go into `module load`/`conda activate` unquoted by the user: no shell syntax.
fn plain_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '+' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use letters, digits and . _ - / + @"
        ))
    }
}

impl FromStr for EnvSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage =
            || format!("invalid --env {s:?}: use venv:PATH, conda:NAME, module:NAME[,NAME…] or pre:SHELL-SNIPPET");
        let (kind, value) = s.split_once(':').ok_or_else(usage)?;
        if value.trim().is_empty() {
            return Err(usage());
        }
        match kind {
            "venv" => Ok(Self::Venv(value.to_owned())),
            "conda" => plain_name("conda env", value).map(|()| Self::Conda(value.to_owned())),
            "module" => {
                let names: Vec<String> = value.split(',').map(str::to_owned).collect();
                names.iter().try_for_each(|n| plain_name("module", n))?;
                Ok(Self::Module(names))
            }
            "pre" => Ok(Self::Pre(value.to_owned())),
            _ => Err(usage()),
        }
    }
}

impl TryFrom<String> for EnvSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<EnvSpec> for String {
    fn from(e: EnvSpec) -> String {
        e.to_string()
    }
}

impl fmt::Display for EnvSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Venv(p) => write!(f, "venv:{p}"),
            Self::Conda(n) => write!(f, "conda:{n}"),
            Self::Module(names) => write!(f, "module:{}", names.join(",")),
            Self::Pre(s) => write!(f, "pre:{s}"),
        }
    }
}

/// A path for the remote shell: `~/rest` becomes `"$HOME"/'rest'`, anything else is quoted.
pub(crate) fn remote_path(path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => format!("\"$HOME\"/{}", shell_words::quote(rest)),
        None if path == "~" => "\"$HOME\"".to_owned(),
        None => shell_words::quote(path).into_owned(),
    }
}

/// Activates the first conda front end the remote has, through its own shell hook.
const CONDA: &str = include_str!("../remote/env/conda.sh");

/// Loads environment modules one by one, so the error names the one that failed.
const MODULE: &str = include_str!("../remote/env/module.sh");

/// The shell lines that set up `env`, in order.
pub(crate) fn activation(env: &[EnvSpec]) -> String {
    let mut s = String::new();
    for step in env {
        match step {
            EnvSpec::Venv(path) => {
                let p = remote_path(path);
                let _ = write!(
                    s,
                    "[ -x {p}/bin/jupyter ] || {{ echo \"jssh: no jupyter in the venv \"{p}\" (--env venv:PATH)\" >&2; exit 127; }}\n\
                     export VIRTUAL_ENV={p}; PATH={p}/bin:\"$PATH\"\n"
                );
            }
            EnvSpec::Conda(name) => {
                let _ = write!(s, "jssh_env={}\n{CONDA}", shell_words::quote(name));
            }
            EnvSpec::Module(names) => {
                let _ = write!(s, "jssh_modules={}\n{MODULE}", shell_words::quote(&names.join(" ")));
            }
            EnvSpec::Pre(snippet) => {
                s.push_str(snippet);
                s.push('\n');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        for spec in [
            "venv:~/v",
            "conda:ml-2.1",
            "module:cuda/12.1,gcc",
            "pre:module load x; echo 'a'",
        ] {
            assert_eq!(spec.parse::<EnvSpec>().unwrap().to_string(), spec);
        }
        assert_eq!(
            "module:a,b".parse::<EnvSpec>(),
            Ok(EnvSpec::Module(vec!["a".into(), "b".into()]))
        );
        for bad in [
            "venv:",
            "conda",
            "pre:  ",
            "x:y",
            "conda:a b",
            "conda:$(x)",
            "module:a,,b",
            "module:-x",
        ] {
            assert!(bad.parse::<EnvSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_paths_expand_only_a_leading_tilde() {
        assert_eq!(remote_path("~/a b"), "\"$HOME\"/'a b'");
        assert_eq!(remote_path("/x/$(y)"), "'/x/$(y)'");
        assert_eq!(remote_path("~"), "\"$HOME\"");
    }

    /// Runs a script in a local `sh` with `PATH` limited to `bin` plus the basics.
    fn sh(script: &str, path: &str) -> (i32, String) {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .env("PATH", path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    #[test]
    fn conda_uses_the_hook_and_names_a_missing_env() {
        // A fake micromamba: its hook defines `micromamba activate`, which knows one env.
        let dir = std::env::temp_dir().join(format!("jssh-conda-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("micromamba");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$1\" in\nshell) echo 'micromamba() { [ \"$2\" = ml ] && export CONDA_PREFIX=/envs/ml; }';;\n\
             env) echo '  base'; echo '  ml';;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = format!("{}:/usr/bin:/bin", dir.display());
        let ok = activation(&[EnvSpec::Conda("ml".into())]) + "echo prefix=$CONDA_PREFIX";
        assert_eq!(sh(&ok, &path), (0, "prefix=/envs/ml\n".into()));
        let (code, text) = sh(&activation(&[EnvSpec::Conda("nope".into())]), &path);
        assert_eq!(code, 127);
        assert!(text.contains("no conda env 'nope'") && text.contains("ml"), "{text}");
        let (code, text) = sh(&activation(&[EnvSpec::Conda("ml".into())]), "/usr/bin:/bin");
        assert!(code == 127 && text.contains("no micromamba, mamba or conda"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn modules_load_in_order_and_name_the_failure() {
        let fake_module = "module() { [ \"$1\" = load ] && { [ \"$2\" = bad ] && return 1; echo loaded $2; }; [ \"$1\" = -t ] && echo cuda; return 0; }\n";
        let env = [EnvSpec::Module(vec!["cuda".into(), "gcc".into()])];
        assert_eq!(
            sh(&format!("{fake_module}{}", activation(&env)), "/usr/bin:/bin"),
            (0, "loaded cuda\nloaded gcc\n".into())
        );
        let env = [EnvSpec::Module(vec!["cuda".into(), "bad".into()])];
        let (code, text) = sh(&format!("{fake_module}{}", activation(&env)), "/usr/bin:/bin");
        assert!(code == 127 && text.contains("'module load bad' failed"), "{text}");
    }

    /// The conda and module snippets (`remote/env/`) read a variable the line before them
    /// sets, so they are checked as they run: after that line.
    #[test]
    fn activation_snippets_parse_and_pass_shellcheck() {
        let env = [
            EnvSpec::Conda("ml".into()),
            EnvSpec::Module(vec!["cuda".into(), "gcc".into()]),
        ];
        let script = activation(&env);
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if which::which("shellcheck").is_err() {
            eprintln!("shellcheck is not installed: the activation snippets were only parsed (sh -n)");
            return;
        }
        let mut child = std::process::Command::new("shellcheck")
            .args(["--shell=sh", "--severity=style", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    #[test]
    fn pre_snippets_run_once_as_written() {
        let env = [EnvSpec::Pre(
            "echo \"a  b\" '$(x)'; n=$((${n:-0}+1)); echo run $n".into(),
        )];
        assert_eq!(sh(&activation(&env), "/usr/bin:/bin"), (0, "a  b $(x)\nrun 1\n".into()));
    }
}
