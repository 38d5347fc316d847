//! The supervisor `jssh up` starts: a binary of its own so the long-running process maps
//! only the code it needs.

fn main() -> std::process::ExitCode {
    jssh::supervisor_main()
}
