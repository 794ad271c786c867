//! The `proactive` command: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    proactive::cli::main()
}
