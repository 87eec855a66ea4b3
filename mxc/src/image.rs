//! `mxc image`: the guest images VMs boot.

use clap::Args;
use mx_runtime::{Runtime, images};

use crate::Status;

#[derive(Args)]
pub struct ImageArgs {
    /// Build this image from Debian packages (see `mxc image list`), or
    /// rebuild it if it is installed.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = mx_materializer::DEFAULT_IMAGE)]
    build: Option<String>,
    /// The guest architecture.
    #[arg(long, default_value = "x86_64", value_parser = ["x86_64", "aarch64"])]
    arch: String,
    /// What to do: `list` (the default) shows what is installed and what
    /// can be built.
    #[arg(value_parser = ["list"])]
    action: Option<String>,
}

pub fn image(args: &ImageArgs) -> Status {
    let rt = Runtime::from_env();
    if let Some(name) = &args.build {
        return match images::build(&rt.images, name, &args.arch, true, &mut |l| {
            eprintln!("{l}")
        }) {
            Ok(d) => {
                eprintln!("{}: ready", d.display());
                Status::Success
            }
            Err(e) => {
                eprintln!("error: {e}");
                Status::Error
            }
        };
    }
    list(&rt)
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
