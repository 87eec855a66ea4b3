//! Time dilation: calibrating and steering a VM's cgroup quota so its instruction-counted clock runs at 1/tdf.

#[allow(unused_imports)]
use super::*;

/// What calibrating or holding a time-dilation factor failed at.
#[derive(Debug, thiserror::Error)]
pub enum TdfError {
    /// QEMU runs without `-icount`.
    #[error("QMP query-replay gave no icount (is -icount on?)")]
    NoIcount,
    /// The guest did not run while it was measured.
    #[error("the guest executed no instructions while calibrating")]
    Stalled,
    /// The controller (this binary, detached) could not be started.
    #[error("{what}: {source}")]
    Controller {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

type R<T> = Result<T, TdfError>;

/// The guest's instruction count (icount mode), through QMP.
pub(crate) fn icount(q: &mut Qmp) -> R<u64> {
    q.execute("query-replay")?["icount"]
        .as_u64()
        .ok_or(TdfError::NoIcount)
}

/// Guest seconds per real second over `window`, from QMP's icount.
pub(crate) fn guest_rate(q: &mut Qmp, ns_per_instr: f64, window: Duration) -> R<f64> {
    let (i0, t0) = (icount(q)?, Instant::now());
    std::thread::sleep(window);
    let (i1, dt) = (icount(q)?, t0.elapsed().as_secs_f64());
    Ok(i1.saturating_sub(i0) as f64 * ns_per_instr / 1e9 / dt)
}

/// Steers the CPU quota until guest time advances at 1/tdf of real time,
/// then leaves a controller (`mxc tdf-control`, see [`tdf_control`])
/// holding it there: the guest's instruction rate drifts with what it runs.
pub(crate) fn tdf_calibrate(
    socket: &Path,
    cgroup: &str,
    tdf: f64,
    shift: u32,
    period_us: u64,
) -> R<Option<String>> {
    let mut q = Qmp::connect(socket)?;
    let ns_per_instr = (1u64 << shift) as f64;
    let target = 1.0 / tdf;
    // The VM booted without a quota: the first round measures full speed.
    let mut share = 1.0;
    let mut rate = 0.0;
    // A first estimate only: at small shares one window's rate is noisy
    // (±40% over 1.5 s here), and the controller's integral action, not
    // this, makes the factor hold on average.
    for round in 0..4 {
        rate = guest_rate(&mut q, ns_per_instr, Duration::from_millis(1500))?;
        if rate <= 0.0 {
            return Err(TdfError::Stalled);
        }
        if round > 0 && ((rate - target) / target).abs() < 0.05 {
            break;
        }
        let step = target / rate;
        share = (share * if round == 0 { step } else { step.sqrt() }).clamp(0.01, 1.0);
        set_quota(
            cgroup,
            ((share * period_us as f64).round() as u64).max(1000),
            period_us,
        )?;
    }
    drop(q);
    // The controller: this binary, detached, until QEMU goes.
    let exe = std::env::current_exe().map_err(|source| TdfError::Controller {
        what: "cannot find mxc",
        source,
    })?;
    let pidfile = socket.with_file_name("tdf.pid");
    let child = Command::new("setsid")
        .arg(exe)
        .args(["tdf-control", "--socket"])
        .arg(socket)
        .args([
            "--cgroup",
            cgroup,
            "--tdf",
            &tdf.to_string(),
            "--shift",
            &shift.to_string(),
        ])
        .args([
            "--period",
            &period_us.to_string(),
            "--share",
            &share.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| TdfError::Controller {
            what: "start the time-dilation controller",
            source,
        })?;
    write(&pidfile, &child.id().to_string())?;
    Ok(Some(format!(
        "time dilation {tdf}: guest clock at {rate:.4} of real time (1/{:.2}) with {share:.3} of a core; held by controller {}",
        1.0 / rate,
        child.id()
    )))
}

/// Holds a dilated VM's guest clock at 1/tdf of real time for as long as
/// its QEMU runs. Every second it measures the guest's rate, keeps a smoothed
/// estimate of rate per unit of CPU share, and sets the share that would
/// bring the guest's total time since the controller started back to
/// 1/tdf of the host's within a few seconds: integral action, so per-window
/// noise averages out instead of biasing the factor.
pub fn tdf_control(
    socket: &Path,
    cgroup: &str,
    tdf: f64,
    shift: u32,
    period_us: u64,
    mut share: f64,
) -> R<()> {
    /// Seconds over which a lag or lead is made up.
    const HORIZON: f64 = 5.0;
    let ns_per_instr = (1u64 << shift) as f64;
    let target = 1.0 / tdf;
    let pidfile = socket.with_file_name("qemu.pid");
    let alive = || read_pid(&pidfile).ok().flatten().is_some_and(qemu_alive);
    let mut origin: Option<(u64, Instant)> = None;
    let mut gain: Option<f64> = None;
    loop {
        // A lost QMP connection is taken up again; the controller ends only
        // with QEMU, since a VM left at a stale quota drifts from its factor.
        let mut q = match Qmp::connect(socket) {
            Ok(q) => q,
            Err(e) if !alive() => return Err(e.into()),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        loop {
            let sample = (|| -> R<(u64, u64, f64, Instant)> {
                let (i0, t0) = (icount(&mut q)?, Instant::now());
                std::thread::sleep(Duration::from_secs(1));
                let i1 = icount(&mut q)?;
                Ok((i0, i1, t0.elapsed().as_secs_f64(), Instant::now()))
            })();
            let (i0, i1, dt, now) = match sample {
                Ok(s) => s,
                Err(e) if !alive() => return Err(e),
                Err(_) => break,
            };
            let (i_origin, t_origin) =
                *origin.get_or_insert((i0, now - Duration::from_secs_f64(dt)));
            let rate = i1.saturating_sub(i0) as f64 * ns_per_instr / 1e9 / dt;
            if rate <= 0.0 {
                continue;
            }
            let k = rate / share;
            let g = *gain.insert(gain.map_or(k, |g| 0.7 * g + 0.3 * k));
            let guest = i1.saturating_sub(i_origin) as f64 * ns_per_instr / 1e9;
            let host = now.duration_since(t_origin).as_secs_f64();
            let behind = host * target - guest;
            let want = (target + behind / HORIZON).clamp(target / 4.0, target * 4.0);
            share = (want / g).clamp(0.01, 1.0);
            set_quota(
                cgroup,
                ((share * period_us as f64).round() as u64).max(1000),
                period_us,
            )?;
        }
    }
}
