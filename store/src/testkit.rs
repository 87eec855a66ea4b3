//! A real etcd for tests and benchmarks: Debian's `etcd` (3.4) started on
//! private loopback ports in a temporary directory, killed and removed on
//! drop. Tests run against the engine users run, not a fake.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Store, StoreError, StoreUrl};

/// A running etcd.
pub struct Etcd {
    child: Child,
    dir: PathBuf,
    pub url: StoreUrl,
    client_port: u16,
    peer_port: u16,
    /// With TLS: the certificates' directory ([`make_certificates`]); the
    /// testkit connects as `root`.
    ///
    /// [`make_certificates`]: crate::access::make_certificates
    certs: Option<PathBuf>,
}

/// A port nothing listens on right now.
fn free_port() -> Result<u16, StoreError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| StoreError(format!("no free port: {e}")))
}

impl Etcd {
    /// Starts etcd in a fresh directory under `parent` and waits until it
    /// answers (at most 20 s).
    pub fn start(parent: &Path) -> Result<Etcd, StoreError> {
        Etcd::start_with(parent, None)
    }

    /// Starts etcd serving TLS with the server certificate in `certs` and
    /// requiring client certificates signed by its CA (users are their
    /// common names).
    pub fn start_tls(parent: &Path, certs: &Path) -> Result<Etcd, StoreError> {
        Etcd::start_with(parent, Some(certs.to_path_buf()))
    }

    fn start_with(parent: &Path, certs: Option<PathBuf>) -> Result<Etcd, StoreError> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!("etcd-{}-{n}", std::process::id()));
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let scheme = if certs.is_some() { "etcds" } else { "etcd" };
        let mut e = Etcd {
            child: spawn(&dir, client_port, peer_port, certs.as_deref())?,
            dir,
            url: StoreUrl::parse(&format!("{scheme}://127.0.0.1:{client_port}"))?,
            client_port,
            peer_port,
            certs,
        };
        e.wait()?;
        Ok(e)
    }

    /// Kills etcd and starts it again on the same data and ports, as an
    /// operator's restart would.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(
            &self.dir,
            self.client_port,
            self.peer_port,
            self.certs.as_deref(),
        )?;
        self.wait()
    }

    fn wait(&mut self) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.connect() {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(StoreError(format!("etcd did not come up: {e}")));
                }
                Err(_) => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StoreError(format!(
                    "etcd exited ({status}); see {}",
                    self.dir.join("etcd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Connects (as `root` with TLS).
    pub fn connect(&self) -> Result<Store, StoreError> {
        self.connect_as(crate::access::ROOT)
    }

    /// Connects as `identity` (its certificate, with TLS).
    pub fn connect_as(&self, identity: &str) -> Result<Store, StoreError> {
        let tls = self
            .certs
            .as_deref()
            .map(|d| crate::access::TlsFiles::in_dir(d, identity));
        Store::connect_with(&self.url, tls.as_ref())
    }
}

fn spawn(dir: &Path, client: u16, peer: u16, certs: Option<&Path>) -> Result<Child, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
    let log = std::fs::File::create(dir.join("etcd.log"))
        .map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
    let scheme = if certs.is_some() { "https" } else { "http" };
    let client_url = format!("{scheme}://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new("etcd");
    if let Some(c) = certs {
        cmd.arg("--client-cert-auth")
            .arg("--trusted-ca-file")
            .arg(c.join("ca.pem"))
            .arg("--cert-file")
            .arg(c.join("server.pem"))
            .arg("--key-file")
            .arg(c.join("server.key"));
    }
    cmd.arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--name", "mx-test"])
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("mx-test={peer_url}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| {
            StoreError(format!(
                "cannot start etcd: {e} (install it: apt-get install etcd-server etcd-client)"
            ))
        })
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
