//! The committed completions and man page match what the binary generates now, and the bash
//! completion really completes in bash.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

const GENERATED: &[(&[&str], &str)] = &[
    (&["completions", "bash"], "completions/jssh.bash"),
    (&["completions", "zsh"], "completions/_jssh"),
    (&["completions", "fish"], "completions/jssh.fish"),
    (&["man"], "man/jssh.1"),
];

/// Every generated file: the completions, jssh(1), and a jssh-SUBCOMMAND(1) per subcommand.
fn generated() -> Vec<(Vec<String>, String)> {
    let mut all: Vec<(Vec<String>, String)> = GENERATED
        .iter()
        .map(|(args, file)| (args.iter().map(|a| (*a).to_owned()).collect(), (*file).to_owned()))
        .collect();
    for sub in jssh::Cli::command().get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        all.push((vec!["man".into(), name.into()], format!("man/jssh-{name}.1")));
    }
    all
}

#[test]
fn committed_files_are_current() {
    for (args, file) in generated() {
        let out = Command::new(env!("CARGO_BIN_EXE_jssh")).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let committed = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(&file))
            .unwrap_or_else(|e| panic!("{file}: {e}: run scripts/generate"));
        assert!(committed == out.stdout, "{file} is stale: run scripts/generate");
    }
}

/// Completes `words` in a real bash with the committed script and a `jssh` on PATH whose
/// `hosts --names` prints two aliases.
fn complete_in_bash(words: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("jssh");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1 $2\" = 'hosts --names' ] && printf 'gpu\\ngateway\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/jssh.bash");
    let program = format!(
        "source '{}'\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         $(complete -p jssh | sed 's/.*-F \\([^ ]*\\).*/\\1/') jssh \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completes_subcommands_flags_and_aliases() {
    let subcommands = complete_in_bash("jssh se");
    assert_eq!(subcommands.split_whitespace().collect::<Vec<_>>(), ["setup", "service"]);
    let flags = complete_in_bash("jssh setup box --no-p");
    assert_eq!(flags.trim(), "--no-passphrase");
    let aliases = complete_in_bash("jssh setup g");
    assert_eq!(aliases.lines().collect::<Vec<_>>(), ["gpu", "gateway"]);
}
