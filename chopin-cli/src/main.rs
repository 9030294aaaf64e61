//! The `chopin` command-line tool.
//!
//! For now it reports its version and the commands that are planned; scaffolding
//! (`chopin new`), generators and database / OpenAPI commands arrive with the CLI work.

use clap::{Parser, Subcommand};

/// Chopin: scaffold and manage Chopin applications.
#[derive(Debug, Parser)]
#[command(name = "chopin", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print version information about this tool and the Chopin it targets.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) | None => println!("{}", version_line()),
    }
}

fn version_line() -> String {
    format!("chopin {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_subcommand_parses() {
        let cli = Cli::try_parse_from(["chopin", "version"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Version)));
        assert!(Cli::try_parse_from(["chopin", "frobnicate"]).is_err());
        assert_eq!(
            version_line(),
            format!("chopin {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
