//! Shaping with `tc` (netlink-packet-route has no token bucket): rates, delays, loss, emulation profiles.

#[allow(unused_imports)]
use super::*;

/// What shaping failed at: `tc` or `ip` could not run, or refused.
#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error(transparent)]
    Command(#[from] CommandError),
}

type R<T> = Result<T, TcError>;

/// Whether the kernel has netem (it is absent on some cloud kernels).
pub(crate) fn has_netem() -> bool {
    static NETEM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NETEM.get_or_init(|| {
        // Probe in a throwaway namespace, not on anything real.
        let ns = format!("mxprobe-{}", std::process::id());
        if netns_add(&ns).is_err() {
            return false;
        }
        // A veth pair: kernels without the dummy module (this one) have it.
        // Output is captured: the probe's failures are not the user's.
        let ok = Command::new("ip")
            .args([
                "-n", &ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
            && Command::new("tc")
                .args([
                    "-n", &ns, "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
        let _ = netns_del(&ns);
        ok
    })
}

/// Runs `ip` or `tc` (in namespace `ns`), failing with its message.
pub(crate) fn tc_or_ip(bin: &str, ns: Option<&str>, args: &[&str]) -> R<()> {
    let mut cmd = Command::new(bin);
    if let Some(n) = ns {
        cmd.args(["-n", n]);
    }
    cmd.args(args);
    Ok(run_command(
        &mut cmd,
        bin,
        format!("{bin} {}", args.join(" ")),
    )?)
}

pub(crate) fn shape(
    ns: Option<&str>,
    dev: &str,
    rate: Option<u64>,
    latency: Option<u64>,
    loss: Option<f64>,
    jitter: Option<u64>,
) -> R<Option<String>> {
    let mut note = None;
    let mut args: Vec<String> = Vec::new();
    if let Some(n) = ns {
        args.extend(["-n".into(), n.into()]);
    }
    args.extend(["qdisc", "replace", "dev", dev, "root"].map(String::from));
    let wants_netem = latency.is_some() || loss.is_some();
    if wants_netem && has_netem() {
        args.push("netem".into());
        if let Some(l) = latency {
            args.extend(["delay".into(), format!("{}us", l / 1000)]);
            if let Some(j) = jitter {
                args.push(format!("{}us", j / 1000));
            }
        }
        if let Some(l) = loss {
            args.extend(["loss".into(), format!("{}%", l * 100.0)]);
        }
        if let Some(r) = rate {
            args.extend(["rate".into(), format!("{r}bit")]);
        }
    } else if let Some(r) = rate {
        if wants_netem {
            note = Some(format!(
                "{dev}: this kernel has no netem; latency and loss are not emulated, only the rate"
            ));
        }
        // A burst of at least 10 ms at the rate (and an MTU), queueing up to 50 ms.
        let burst = (r / 8 / 100).max(3000);
        args.extend([
            "tbf".into(),
            "rate".into(),
            format!("{r}bit"),
            "burst".into(),
            burst.to_string(),
            "latency".into(),
            "50ms".into(),
        ]);
    } else {
        return Ok(Some(format!(
            "{dev}: this kernel has no netem; latency and loss are not emulated"
        )));
    }
    run_command(
        Command::new("tc").args(&args),
        "tc",
        format!("tc {}", args.join(" ")),
    )?;
    Ok(note)
}
