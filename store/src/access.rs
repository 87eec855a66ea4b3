//! Who may do what in the store: TLS with client certificates, and etcd's
//! users and roles, so that each agent reads only its host's desired state
//! and writes only its host's status, and only the coordinator publishes.
//!
//! etcd started with `--client-cert-auth` takes a client certificate's
//! common name as the user. [`make_certificates`] makes a CA and one
//! certificate per identity (the server, `root` for set-up, the
//! coordinator, `agent-<host>` per host) with the `openssl` tool;
//! [`grant`] creates the users and roles ([`roles`]) and turns
//! authentication on.

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_client::{Permission, UserAddOptions};

use crate::{Store, StoreError, layout};

/// The coordinator's user (`mxc up/down --store`).
pub const COORDINATOR: &str = "mx-coordinator";
/// The set-up user; etcd needs it before authentication is on.
pub const ROOT: &str = "root";

/// The user of `host`'s agent.
pub fn agent_user(host: &str) -> String {
    format!("agent-{host}")
}

/// A client certificate, its key and the CA that signed the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// `identity`'s files in a directory [`make_certificates`] wrote.
    pub fn in_dir(dir: &Path, identity: &str) -> TlsFiles {
        TlsFiles {
            cert: dir.join(format!("{identity}.pem")),
            key: dir.join(format!("{identity}.key")),
            ca: dir.join("ca.pem"),
        }
    }

    /// From `MX_STORE_CERT`, `MX_STORE_KEY` and `MX_STORE_CA`.
    pub fn from_env() -> Result<TlsFiles, StoreError> {
        let var = |v: &str| {
            std::env::var_os(v).map(PathBuf::from).ok_or_else(|| {
                StoreError(format!(
                    "an etcds:// store needs {v}: MX_STORE_CERT, MX_STORE_KEY and MX_STORE_CA name the client certificate, its key and the CA (`mxc store certs` makes them)"
                ))
            })
        };
        Ok(TlsFiles {
            cert: var("MX_STORE_CERT")?,
            key: var("MX_STORE_KEY")?,
            ca: var("MX_STORE_CA")?,
        })
    }

    pub(crate) fn options(&self) -> Result<etcd_client::TlsOptions, StoreError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| StoreError(format!("cannot read {}: {e}", p.display())))
        };
        Ok(etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)?))
            .identity(etcd_client::Identity::from_pem(
                read(&self.cert)?,
                read(&self.key)?,
            )))
    }
}

/// One permission of a role: a key, or every key under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: String,
    pub prefix: bool,
    pub write: bool,
}

impl Grant {
    fn read(key: String, prefix: bool) -> Grant {
        Grant {
            key,
            prefix,
            write: false,
        }
    }

    fn write(key: String, prefix: bool) -> Grant {
        Grant {
            key,
            prefix,
            write: true,
        }
    }
}

/// Every role and its grants: the coordinator reads and writes `/mx/`; an
/// agent reads its host's wants and bundles, every commit and every status
/// (its VMs wait for other hosts' tasks), and writes only its own agent
/// key and its host's status.
pub fn roles(hosts: &[String]) -> Vec<(String, Vec<Grant>)> {
    let mut out = vec![(
        COORDINATOR.to_string(),
        vec![Grant::write("/mx/".into(), true)],
    )];
    for h in hosts {
        out.push((
            agent_user(h),
            vec![
                Grant::read(layout::want_prefix(h), true),
                Grant::read(format!("{}{h}/", layout::BUNDLE), true),
                Grant::read(layout::COMMIT.into(), true),
                Grant::read(layout::STATUS.into(), true),
                Grant::write(layout::agent(h), false),
                Grant::write(format!("{}{h}/", layout::STATUS), true),
            ],
        ));
    }
    out
}

/// Creates the users and roles for `hosts` and turns authentication on.
/// Connected as `root`. Users and roles that exist are kept, so it can be
/// run again to add hosts.
pub fn grant(store: &Store, hosts: &[String]) -> Result<(), StoreError> {
    let mut c = store.client.clone();
    let exists = |e: &etcd_client::Error| e.to_string().contains("already exists");
    store
        .rt
        .block_on(async {
            let mut users: Vec<(String, String)> = vec![(ROOT.into(), ROOT.into())];
            for (role, grants) in roles(hosts) {
                match c.role_add(role.clone()).await {
                    Err(e) if !exists(&e) => return Err(e),
                    _ => {}
                }
                for g in grants {
                    let p = match g.write {
                        true => Permission::read_write(g.key.clone()),
                        false => Permission::read(g.key.clone()),
                    };
                    let p = if g.prefix { p.with_prefix() } else { p };
                    c.role_grant_permission(role.clone(), p).await?;
                }
                users.push((role.clone(), role));
            }
            for (user, role) in users {
                if user == ROOT {
                    match c.role_add(ROOT).await {
                        Err(e) if !exists(&e) => return Err(e),
                        _ => {}
                    }
                }
                match c
                    .user_add(user.clone(), "", Some(UserAddOptions::new().with_no_pwd()))
                    .await
                {
                    Err(e) if !exists(&e) => return Err(e),
                    _ => {}
                }
                c.user_grant_role(user, role).await?;
            }
            c.auth_enable().await?;
            Ok(())
        })
        .map_err(|e| {
            StoreError(format!(
                "store {}: setting up users and roles: {e}",
                store.url
            ))
        })
}

/// Makes (in `dir`, created 0700) a CA and certificates for the server
/// (valid for the addresses and names in `servers`), `root`, the
/// coordinator and each host's agent. Existing files are kept, so hosts
/// can be added. Returns the identities made.
pub fn make_certificates(
    dir: &Path,
    servers: &[String],
    hosts: &[String],
) -> Result<Vec<String>, StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |e: std::io::Error| StoreError(format!("{}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let openssl = |args: &[&str]| -> Result<(), StoreError> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| {
                StoreError(format!("cannot run openssl: {e} (apt-get install openssl)"))
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(StoreError(format!(
                "openssl {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    const CURVE: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    if !dir.join("ca.key").exists() {
        let mut args = vec!["req", "-x509", "-nodes"];
        args.extend(CURVE);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=mx-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&args)?;
    }
    let san: Vec<String> = servers
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{s}"),
            Err(_) => format!("DNS:{s}"),
        })
        .collect();
    let mut made = Vec::new();
    let mut identities: Vec<(String, String)> = vec![
        (
            "server".into(),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                san.join(",")
            ),
        ),
        (ROOT.into(), String::new()),
        (COORDINATOR.into(), String::new()),
    ];
    identities.extend(hosts.iter().map(|h| (agent_user(h), String::new())));
    for (id, extra) in identities {
        if dir.join(format!("{id}.pem")).exists() {
            continue;
        }
        let ext = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n{}",
            if extra.is_empty() {
                "extendedKeyUsage=clientAuth\n".to_string()
            } else {
                extra
            }
        );
        std::fs::write(dir.join(format!("{id}.ext")), ext).map_err(err)?;
        let (key, csr, pem, extf) = (
            format!("{id}.key"),
            format!("{id}.csr"),
            format!("{id}.pem"),
            format!("{id}.ext"),
        );
        let subj = format!("/CN={id}");
        let mut args = vec!["req", "-nodes"];
        args.extend(CURVE);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&args)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "825",
            "-extfile",
            &extf,
        ])?;
        std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        let _ = std::fs::remove_file(dir.join(&csr));
        let _ = std::fs::remove_file(dir.join(&extf));
        made.push(id);
    }
    Ok(made)
}
