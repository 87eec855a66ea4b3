//! Persistent taps. The kernel creates taps only through the TUNSETIFF
//! ioctl on /dev/net/tun (rtnetlink refuses `tun` links), so this is the one
//! place the runtime uses `unsafe`. The tap is created in the calling
//! thread's network namespace.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

nix::ioctl_write_ptr_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);
nix::ioctl_write_int!(tun_set_persist, b'T', 203);

/// Creates a persistent tap named `name` (at most 15 bytes).
pub fn create(name: &str) -> std::io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!("bad tap name `{name}`")));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // IFF_TUN_EXCL: fail if a device of that name exists, rather than
    // attach to it (it may be another experiment's, or not mx's at all).
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_TUN_EXCL)
            as libc::c_short;
    // SAFETY: the fd is open on /dev/net/tun and `ifr` outlives the call.
    unsafe { tun_set_iff(f.as_raw_fd(), &ifr) }?;
    // SAFETY: as above; the argument is a plain integer.
    unsafe { tun_set_persist(f.as_raw_fd(), 1) }?;
    Ok(())
}
