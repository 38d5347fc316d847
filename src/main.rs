//! Thin entry point: all logic lives in the library so tests can drive it.

fn main() -> std::process::ExitCode {
    jssh::main()
}
