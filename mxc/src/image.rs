//! `mxc image`: the guest images VMs boot.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use mx_runtime::{Runtime, images};

use crate::Status;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImageArgs {
    /// Build this image from Debian packages (see `mxc image list`), or
    /// rebuild it if it is installed.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = mx_materializer::DEFAULT_IMAGE)]
    build: Option<String>,
    /// The guest architecture.
    #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "aarch64"])]
    arch: String,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Subcommand)]
enum Action {
    /// Show what is installed and what can be built (the default).
    List,
    /// Import a bootable qcow2 cloud image (Debian's genericcloud, Ubuntu's
    /// cloud images): VMs boot it through the firmware and cloud-init
    /// configures them from a NoCloud seed mx writes. It must stand alone
    /// (no backing or data file) and have cloud-init and sshd.
    Import {
        /// The name models give it (`image == 'NAME'`).
        name: String,
        /// The qcow2 file; it is copied, never used in place.
        file: PathBuf,
        /// The OS, for `mxc image list` (`Ubuntu 22.04`).
        #[arg(long, default_value = "")]
        os: String,
        /// The guest architecture.
        #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "aarch64"])]
        arch: String,
    },
    /// Remove an installed image (VMs running on it keep it until they stop).
    Remove {
        name: String,
        #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "aarch64"])]
        arch: String,
    },
}

pub fn image(args: &ImageArgs) -> Status {
    let rt = Runtime::from_env();
    let done = |r: Result<PathBuf, String>, what: &str| match r {
        Ok(d) => {
            eprintln!("{}: {what}", d.display());
            Status::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Error
        }
    };
    if let Some(name) = &args.build {
        let r = images::build(&rt.images, name, &args.arch, true, &mut |l| {
            eprintln!("{l}")
        });
        return done(r, "ready");
    }
    match &args.action {
        None | Some(Action::List) => list(&rt),
        Some(Action::Import {
            name,
            file,
            os,
            arch,
        }) => {
            let r = images::import(&rt.images, name, file, arch, os, &mut |l| eprintln!("{l}"));
            done(r, "imported")
        }
        Some(Action::Remove { name, arch }) => {
            done(images::remove(&rt.images, name, arch), "removed")
        }
    }
}

fn list(rt: &Runtime) -> Status {
    let installed = images::installed(&rt.images);
    println!("installed in {}:", rt.images.display());
    if installed.is_empty() {
        println!("  (none)");
    }
    for (key, i) in &installed {
        let access = match (i.agent, i.ssh) {
            (images::AgentKind::Qga | images::AgentKind::MxAgent, true) => "exec, cp, console, ssh",
            (images::AgentKind::Qga | images::AgentKind::MxAgent, false) => "exec, cp, console",
            (images::AgentKind::None, true) => "console, ssh",
            (images::AgentKind::None, false) => "console",
        };
        println!("  {key:<20} {:<10} {:<12} {access}", i.arch, i.os);
    }
    println!("buildable (`mxc image --build NAME [--arch ARCH]`):");
    for b in images::BUILDABLE {
        println!(
            "  {:<20} {:<16} {}",
            b.name,
            b.arches.join(","),
            b.description
        );
    }
    println!("aliases:");
    for (a, to) in images::ALIASES {
        println!("  {a:<20} -> {to}");
    }
    Status::Success
}
