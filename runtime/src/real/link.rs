//! Links, addresses, bridges, VXLAN and flood entries over netlink (rtnetlink), one connection per namespace.

#[allow(unused_imports)]
use super::*;

/// What a link operation failed at. Its text is what a failed task shows;
/// callers decide by the variant (and errno), never by the text.
#[derive(Debug)]
pub enum LinkError {
    /// The kernel refused the request with this errno.
    Kernel { errno: i32 },
    /// The netlink exchange failed without an errno.
    Netlink(String),
    /// No netlink connection in the namespace (entering it failed).
    Connect(String),
    /// No device of that name.
    NoDevice { name: String, ns: Option<String> },
    /// An address in the plan that does not parse.
    BadAddress(String),
    /// A device of that name exists and belongs to something else (another
    /// experiment, or the host): it is never adopted or removed.
    Foreign {
        name: String,
        ns: Option<String>,
        group: u32,
        ours: u32,
    },
}

impl LinkError {
    /// Whether the kernel refused with `errno`.
    pub fn is(&self, errno: Errno) -> bool {
        matches!(self, LinkError::Kernel { errno: e } if *e == errno as i32)
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Kernel { errno } => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
            LinkError::Netlink(m) | LinkError::Connect(m) | LinkError::BadAddress(m) => {
                f.write_str(m)
            }
            LinkError::NoDevice { name, ns } => write!(
                f,
                "no device `{name}`{}",
                ns.as_deref()
                    .map(|n| format!(" in {n}"))
                    .unwrap_or_default()
            ),
            LinkError::Foreign {
                name,
                ns,
                group,
                ours,
            } => write!(
                f,
                "device `{name}`{} exists and is not this experiment's (device group {group:#x}, not {ours:#x}); it was left alone",
                ns.as_deref()
                    .map(|n| format!(" in {n}"))
                    .unwrap_or_default()
            ),
        }
    }
}

impl std::error::Error for LinkError {}

type R<T> = Result<T, LinkError>;

/// See [`Real::claim`].
pub(super) enum Claim {
    Free,
    /// Its index.
    Ours(u32),
    Orphan(u32),
}

impl Real {
    /// A connection into `ns`, opened on first use.
    pub(super) fn conn(&self, ns: Option<&str>) -> R<std::sync::Arc<Conn>> {
        let key = ns.map(str::to_string);
        let mut conns = self
            .conns
            .lock()
            .map_err(|_| LinkError::Connect("connection table poisoned".into()))?;
        if let Some(c) = conns.get(&key) {
            return Ok(c.clone());
        }
        if let Some(n) = ns
            && !ns_exists(n)
        {
            return Err(LinkError::Connect(format!("namespace {n} does not exist")));
        }
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let nsname = key.clone();
        let thread = std::thread::spawn(move || {
            let setup = || -> Result<tokio::runtime::Runtime, String> {
                if let Some(n) = &nsname {
                    let target =
                        fs::File::open(Path::new(NETNS_DIR).join(n)).map_err(|e| e.to_string())?;
                    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
                }
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            };
            let rt = match setup() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = htx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match rtnetlink::new_connection() {
                    Ok((conn, handle, _)) => {
                        tokio::spawn(conn);
                        let _ = htx.send(Ok(handle));
                        let _ = stop_rx.await;
                    }
                    Err(e) => {
                        let _ = htx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let handle = hrx
            .recv()
            .map_err(|_| LinkError::Connect("netlink thread died".into()))?
            .map_err(LinkError::Connect)?;
        let c = std::sync::Arc::new(Conn {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        });
        conns.insert(key, c.clone());
        Ok(c)
    }

    /// Closes the connection into `ns` (before the namespace is deleted, so
    /// that no socket keeps it alive).
    pub(super) fn forget(&self, ns: &str) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(&Some(ns.to_string()));
        }
    }

    /// A netlink exchange in namespace `ns`, its failure typed: callers
    /// that accept "already there" or "already gone" match the errno, not
    /// the message.
    pub(super) fn netlink<T, F>(
        &self,
        ns: Option<&str>,
        f: impl FnOnce(Handle) -> F,
    ) -> Result<T, LinkError>
    where
        F: std::future::Future<Output = Result<T, rtnetlink::Error>>,
    {
        let c = self.conn(ns)?;
        futures_executor::block_on(f(c.handle.clone())).map_err(|e| match nl_errno(&e) {
            Some(errno) => LinkError::Kernel { errno },
            None => LinkError::Netlink(e.to_string()),
        })
    }

    pub(super) fn index(&self, ns: Option<&str>, name: &str) -> R<Option<u32>> {
        self.netlink(ns, |h| async move { link_index(&h, name).await })
    }

    pub(super) fn need_index(&self, ns: Option<&str>, name: &str) -> R<u32> {
        self.index(ns, name)?.ok_or_else(|| LinkError::NoDevice {
            name: name.to_string(),
            ns: ns.map(str::to_string),
        })
    }

    pub(super) fn set(
        &self,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(
            rtnetlink::LinkMessageBuilder<LinkUnspec>,
        ) -> rtnetlink::LinkMessageBuilder<LinkUnspec>,
    ) -> R<()> {
        // Addressed by name: the kernel finds the device itself, one
        // round trip (and one turn at its RTNL lock) instead of a lookup
        // and a change.
        let msg = f(LinkUnspec::new_with_name(name)).build();
        match self.netlink(ns, |h| async move { h.link().set(msg).execute().await }) {
            Err(e) if e.is(Errno::ENODEV) => Err(LinkError::NoDevice {
                name: name.to_string(),
                ns: ns.map(str::to_string),
            }),
            other => other,
        }
    }

    /// Whether the experiment whose device group is `group` has a device
    /// `name`: `Some(index)` if so, `None` if no device has that name, and
    /// an error if one does that is not in the group: a device mx did not
    /// create for this experiment is never adopted, changed or deleted.
    pub(super) fn owned(
        &self,
        ns: Option<&str>,
        name: &str,
        group: u32,
    ) -> Result<Option<u32>, LinkError> {
        match self.claim(ns, name, group)? {
            Claim::Free => Ok(None),
            Claim::Ours(idx) => Ok(Some(idx)),
            Claim::Orphan(_) => Err(LinkError::Foreign {
                name: name.to_string(),
                ns: ns.map(str::to_string),
                group: 0,
                ours: group,
            }),
        }
    }

    /// Whether the experiment has its device `name`: `Ours` (its index); an
    /// `Orphan` (its index) when a tap of that name is in no group, which
    /// only a crash between making one of our taps and grouping it leaves
    /// (the name embeds the experiment's tag, every device mx makes has a
    /// group, and only root can make devices in mx's namespaces); `Free`
    /// when no device has the name. Any other device of the name (another
    /// kind, or another group) is refused as [`Real::owned`] refuses it.
    /// Making a tap and deleting a device of the experiment take an orphan
    /// for theirs; everything else goes through [`Real::owned`].
    pub(super) fn claim(&self, ns: Option<&str>, name: &str, group: u32) -> R<Claim> {
        match self.netlink(ns, |h| async move { link_found(&h, name).await })? {
            None => Ok(Claim::Free),
            Some(f) if f.group == group => Ok(Claim::Ours(f.index)),
            Some(f) if f.group == 0 && f.tun => Ok(Claim::Orphan(f.index)),
            Some(f) => Err(LinkError::Foreign {
                name: name.to_string(),
                ns: ns.map(str::to_string),
                group: f.group,
                ours: group,
            }),
        }
    }

    /// Adds a link unless the experiment has it already (see
    /// [`Real::owned`]). `msg` must set `group`, so that creation and
    /// ownership are one atomic step.
    pub(super) fn add_link(
        &self,
        ns: Option<&str>,
        name: &str,
        group: u32,
        msg: rtnetlink::packet_route::link::LinkMessage,
    ) -> R<()> {
        if self.owned(ns, name, group)?.is_some() {
            return Ok(());
        }
        let r = self.netlink(ns, |h| async move { h.link().add(msg).execute().await });
        match r {
            // Made meanwhile: by a concurrent task of ours, or by someone else.
            // Anything else taken (a veth's peer name in the other
            // namespace) is the original error, not a success.
            Err(e) if e.is(Errno::EEXIST) => match self.owned(ns, name, group)? {
                Some(_) => Ok(()),
                None => Err(e),
            },
            other => Ok(other?),
        }
    }
}

pub(crate) fn link_name(m: &rtnetlink::packet_route::link::LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// What a link lookup tells: the index, the device group, and whether the
/// device is a tun/tap.
pub(crate) struct Found {
    pub index: u32,
    pub group: u32,
    pub tun: bool,
}

pub(crate) async fn link_found(h: &Handle, name: &str) -> Result<Option<Found>, rtnetlink::Error> {
    use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => {
            let mut found = Found {
                index: msg.header.index,
                group: 0,
                tun: false,
            };
            for a in &msg.attributes {
                match a {
                    LinkAttribute::Group(g) => found.group = *g,
                    LinkAttribute::LinkInfo(infos) => {
                        found.tun = infos
                            .iter()
                            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Tun)));
                    }
                    _ => {}
                }
            }
            Ok(Some(found))
        }
        Ok(None) => Ok(None),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) async fn fdb_append_default(
    h: &Handle,
    vx_idx: u32,
    remote: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    };
    use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = vx_idx;
    m.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry is the VXLAN device's own, not its bridge's.
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![0u8; 6]));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            remote,
        )));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(m));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    let mut h = h.clone();
    let mut resp = h.request(req)?;
    while let Some(msg) = resp.next().await {
        if let NetlinkPayload::Error(e) = msg.payload
            && e.code.is_some()
        {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

pub(crate) fn parse_cidr(c: &str) -> R<(Ipv4Addr, u8)> {
    let (ip, len) = c
        .split_once('/')
        .ok_or_else(|| LinkError::BadAddress(format!("`{c}` is not an address/prefix")))?;
    Ok((
        ip.parse()
            .map_err(|_| LinkError::BadAddress(format!("`{ip}` is not an IPv4 address")))?,
        len.parse()
            .map_err(|_| LinkError::BadAddress(format!("`{len}` is not a prefix length")))?,
    ))
}
