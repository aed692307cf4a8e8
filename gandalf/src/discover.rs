//! `gandalf resources discover`: print a starting `.gandalf/resources.toml` for a repository.
//!
//! The discovery itself lives in `shared::resources::discover` (Cargo, npm/pnpm/yarn, Go,
//! Dockerfiles); this is the command-line shell around it. The map goes to standard output (so
//! `gandalf resources discover > .gandalf/resources.toml` writes it), a one-line summary to
//! standard error. The map is checked to be valid for `gandalf plan` before it is printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use shared::resources::discover::discover;

#[derive(Debug, Subcommand)]
pub enum ResourcesCommand {
    /// Print a starting resources.toml from what the repository declares.
    ///
    /// Reads Cargo workspaces, npm/pnpm/yarn workspaces, Go modules and directories with a
    /// Dockerfile. Redirect it to `.gandalf/resources.toml` and review it.
    Discover(DiscoverArgs),
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The repository's root directory.
    #[arg(long, value_name = "PATH", default_value = ".")]
    pub repo: PathBuf,
}

pub fn run(command: ResourcesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ResourcesCommand::Discover(args) => {
            if !args.repo.is_dir() {
                return Err(anyhow!("{} is not a directory", args.repo.display()));
            }
            let found = discover(&args.repo).context("cannot discover the resources")?;
            let text = found
                .to_checked_toml()
                .map_err(|e| anyhow!("the discovered map is not valid (a bug, please report it): {e}"))?;
            crate::plan::print_out(&text)?;
            let services = found.resources.iter().filter(|r| r.kind == "service").count();
            let packages = found.resources.len() - services;
            eprintln!(
                "gandalf: found {} in {}",
                [
                    count(found.resources.len(), "resource"),
                    count(services, "service"),
                    count(packages, "package")
                ]
                .join(", "),
                args.repo.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
