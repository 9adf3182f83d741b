use clap::Parser;

fn main() -> std::process::ExitCode {
    ipet::cli::run(ipet::cli::Cli::parse())
}
