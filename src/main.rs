//! The `proactive` command: parses the command line and hands over to the library.

#[global_allocator]
static ALLOCATOR: proactive::Allocator = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    proactive::cli::main()
}
