//! Validated values every phase shares: names, interface names, IPv4
//! prefixes, MAC and PCI addresses, mediated-device types and UUIDs.
//!
//! Each is a newtype over its text that can only hold a valid value: it is
//! checked when built and when deserialized, so a realization or bundle read
//! from disk (untrusted input, handled as root) is refused at the boundary
//! rather than deep in the runtime. The compiler, the realizer, the
//! materializer and the runtime all use these definitions, so no phase
//! accepts a value another refuses. They serialize as plain strings.

use std::borrow::Borrow;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Deref;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A value that failed validation: what it should have been and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The kind of value (`interface name`).
    pub what: &'static str,
    /// The value, shortened for messages.
    pub value: String,
    /// What a valid one looks like.
    pub rule: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid {} ({})",
            self.value, self.what, self.rule
        )
    }
}

impl std::error::Error for Invalid {}

fn invalid(what: &'static str, value: &str, rule: &'static str) -> Invalid {
    let mut v: String = value.chars().take(80).collect();
    if v.len() < value.len() {
        v.push_str("...");
    }
    // Never echo control characters (a terminal would act on them).
    let v = v
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Invalid {
        what,
        value: v,
        rule,
    }
}

macro_rules! validated {
    ($(#[$m:meta])* $name:ident, $check:ident, $what:literal, $rule:literal, $pattern:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            /// Validates `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, Invalid> {
                let s = s.into();
                if $check(&s) {
                    Ok($name(s))
                } else {
                    Err(invalid($what, &s, $rule))
                }
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Invalid;
            fn try_from(s: String) -> Result<Self, Invalid> {
                $name::new(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Invalid> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Invalid;
            fn try_from(s: &str) -> Result<Self, Invalid> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl AsRef<std::ffi::OsStr> for $name {
            fn as_ref(&self) -> &std::ffi::OsStr {
                std::ffi::OsStr::new(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, o: &str) -> bool {
                self.0 == o
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, o: &&str) -> bool {
                self.0 == *o
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, o: &String) -> bool {
                &self.0 == o
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, o: &$name) -> bool {
                *self == o.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, o: &$name) -> bool {
                self == o.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": concat!("A ", $what, ": ", $rule, "."),
                    "type": "string",
                    "pattern": $pattern
                })
            }
        }
    };
}

validated!(
    /// A name that is safe as a path component, a command-line word and a
    /// table key: experiments, nodes, hosts, VMs, images.
    Name,
    is_name,
    "name",
    "1 to 64 of A-Z a-z 0-9 _ . -, not starting with . or -",
    "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
);

validated!(
    /// A network interface name the kernel accepts and `ip`/`tc` cannot
    /// mistake for an option.
    IfName,
    is_ifname,
    "interface name",
    "1 to 15 printable ASCII characters without space, / or :, not starting with -, not . or ..",
    "^[!-,.0-9;-~][!-.0-9;-~]{0,14}$"
);

validated!(
    /// A unicast Ethernet address, `02:ab:cd:00:00:01`.
    Mac,
    is_mac,
    "MAC address",
    "six pairs of hex digits separated by :, unicast (first byte even)",
    "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"
);

validated!(
    /// A PCI address as `lspci -D` prints it, `0000:3b:00.0`.
    PciAddr,
    is_pci_addr,
    "PCI address",
    "DDDD:BB:DD.F in lower-case hex, function 0 to 7",
    "^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$"
);

validated!(
    /// A mediated-device type, as listed under
    /// `/sys/bus/pci/devices/<address>/mdev_supported_types` (`nvidia-472`).
    MdevType,
    is_mdev_type,
    "mediated-device type",
    "1 to 64 of A-Z a-z 0-9 _ -",
    "^[A-Za-z0-9_-]{1,64}$"
);

validated!(
    /// A UUID in its hyphenated lower-case form.
    Uuid,
    is_uuid,
    "UUID",
    "8-4-4-4-12 lower-case hex digits",
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
);

validated!(
    /// A network namespace mx made: `mxh-<host>` for a one-machine host,
    /// `mxu-<facility>` for its underlay. Nothing else is ever created or
    /// deleted under /run/netns.
    NetnsName,
    is_netns_name,
    "namespace name",
    "mxh- or mxu- followed by a name",
    "^mx[hu]-[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
);

/// Whether `s` is a [`NetnsName`].
pub fn is_netns_name(s: &str) -> bool {
    s.strip_prefix("mxh-")
        .or_else(|| s.strip_prefix("mxu-"))
        .is_some_and(is_name)
}

/// Whether `s` is a [`Name`].
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !matches!(b[0], b'.' | b'-')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

/// Whether `s` is an [`IfName`]: what the kernel's `dev_valid_name` takes,
/// restricted to printable ASCII and to names that cannot read as options.
pub fn is_ifname(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && s != "."
        && s != ".."
        && b[0] != b'-'
        && b.iter().all(|c| c.is_ascii_graphic() && !b"/:".contains(c))
}

/// Whether `s` is a [`Mac`].
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// Whether `s` is a [`PciAddr`].
pub fn is_pci_addr(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11])
}

/// Whether `s` is an [`MdevType`].
pub fn is_mdev_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

/// Whether `s` is a [`Uuid`].
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Maps any name to a [`Name`], deterministically: characters a name cannot
/// carry become `-`, a leading `.` or `-` becomes `_`, and a name longer
/// than 64 bytes keeps 55 and gains a hash of the whole. Plain names map to
/// themselves, so models that use them see no change.
pub fn safe_name(s: &str) -> Name {
    if is_name(s) {
        return Name(s.to_string());
    }
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with(['.', '-']) {
        out.replace_range(..1, "_");
    }
    if out.len() > 64 {
        // FNV-1a of the original: stable across versions and platforms.
        let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        out.truncate(55);
        out.push_str(&format!("-{:08x}", h as u32));
    }
    Name(out)
}

/// An IPv4 address with a prefix length, `10.0.0.1/24`. Written in dotted
/// decimal without leading zeros, so parsing and printing round-trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub len: u8,
}

impl Ipv4Cidr {
    /// Parses `a.b.c.d/len`; the error says what is wrong, for diagnostics.
    pub fn parse(s: &str) -> Result<Ipv4Cidr, String> {
        // One pass over the bytes for the usual form; anything else is
        // read again below, which says what is wrong.
        match Self::parse_plain(s.as_bytes()) {
            Some(c) => Ok(c),
            None => Self::parse_explained(s),
        }
    }

    /// Canonical `a.b.c.d/len` (no signs, spaces or leading zeros), or
    /// `None`. One pass over the bytes: a model sets an address per
    /// endpoint, 400,000 at 100,000 nodes, and each is parsed when it is
    /// made and when it is set.
    fn parse_plain(b: &[u8]) -> Option<Ipv4Cidr> {
        let mut i = 0;
        let mut addr = 0u32;
        for part in 0..5 {
            let (start, mut v) = (i, 0u32);
            while let Some(&c) = b.get(i) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                // Longer than any octet or prefix length: not canonical.
                if i - start == 3 {
                    return None;
                }
                v = v * 10 + u32::from(d);
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || (digits > 1 && b[start] == b'0') {
                return None;
            }
            if part == 4 {
                return (digits <= 2 && v <= 32 && i == b.len()).then_some(Ipv4Cidr {
                    addr: Ipv4Addr::from(addr),
                    len: v as u8,
                });
            }
            if v > 255 || b.get(i) != Some(if part == 3 { &b'/' } else { &b'.' }) {
                return None;
            }
            addr = addr << 8 | v;
            i += 1;
        }
        None
    }

    fn parse_explained(s: &str) -> Result<Ipv4Cidr, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| "it has no prefix length, e.g. `/24`".to_string())?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32 && !len.starts_with('+') && (len == "0" || !len.starts_with('0')))
            .ok_or_else(|| format!("`/{len}` is not a prefix length (0 to 32)"))?;
        if ip.split('.').count() != 4 {
            return Err(format!("`{ip}` does not have four dotted parts"));
        }
        let mut addr = 0u32;
        for p in ip.split('.') {
            let octet: u8 = p
                .parse()
                .ok()
                .filter(|_| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("`{p}` is not a number from 0 to 255"))?;
            if p.len() > 1 && p.starts_with('0') {
                return Err(format!("`{p}` has a leading zero (write `{octet}`)"));
            }
            addr = addr << 8 | octet as u32;
        }
        Ok(Ipv4Cidr {
            addr: Ipv4Addr::from(addr),
            len,
        })
    }

    /// The netmask as a number.
    pub fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    /// The network (address with host bits cleared), same prefix length.
    pub fn network(self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}/{}", self.addr, self.len))
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Ipv4Cidr::parse(s).map_err(|_| invalid("IPv4 prefix", s, "a.b.c.d/len"))
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

impl JsonSchema for Ipv4Cidr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ipv4Cidr".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An IPv4 address with a prefix length, a.b.c.d/len.",
            "type": "string",
            "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass reading accepts only what the explaining one accepts,
    /// with the same result.
    #[test]
    fn the_quick_reading_agrees_with_the_explaining_one() {
        let pieces = [
            "0", "1", "09", "10", "255", "256", "1000", "", "+1", " ", ".", "/", "32", "33", "a",
        ];
        let mut plain = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}.1.{b}.2/{c}");
                    let quick = Ipv4Cidr::parse_plain(text.as_bytes());
                    let slow = Ipv4Cidr::parse_explained(&text);
                    if let Some(q) = quick {
                        plain += 1;
                        assert_eq!(slow, Ok(q), "{text}");
                    }
                    assert_eq!(Ipv4Cidr::parse(&text).is_ok(), slow.is_ok(), "{text}");
                }
            }
        }
        assert!(plain > 50, "{plain}");
    }

    /// The compiler keeps an address's text as written once it parses
    /// (`ip4`): what parses must already be the canonical form.
    #[test]
    fn what_parses_is_canonical() {
        let octets = [
            "0", "1", "9", "10", "99", "100", "255", "256", "01", "001", "+1", " 1", "1 ", "",
        ];
        let lens = ["0", "8", "31", "32", "33", "08", "+8", " 8", ""];
        let mut parsed = 0;
        for a in octets {
            for b in ["0", "01", "200"] {
                for len in lens {
                    let text = format!("{a}.{b}.0.{a}/{len}");
                    if let Ok(c) = Ipv4Cidr::parse(&text) {
                        assert_eq!(c.to_string(), text);
                        parsed += 1;
                    }
                }
            }
        }
        assert!(parsed > 20, "{parsed}");
        for bad in ["1.2.3/8", "1.2.3.4.5/8", "1.2.3.4", "1.2.3.4/", "a.b.c.d/8"] {
            assert!(Ipv4Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    /// The one-pass reader accepts exactly what the explaining one does,
    /// with the same value: it is only the fast way to the same answer.
    #[test]
    fn the_fast_reader_agrees_with_the_explaining_one() {
        let parts = [
            "0",
            "1",
            "9",
            "10",
            "99",
            "100",
            "199",
            "255",
            "256",
            "999",
            "1000",
            "01",
            "00",
            "001",
            "+1",
            "-1",
            " 1",
            "1 ",
            "",
            "a",
            "4294967296",
            "2.",
        ];
        let lens = [
            "0",
            "8",
            "9",
            "10",
            "24",
            "31",
            "32",
            "33",
            "99",
            "100",
            "08",
            "00",
            "+8",
            " 8",
            "",
            "3a",
            "4294967328",
        ];
        let mut texts = vec![
            "1.2.3/8".to_string(),
            "1.2.3.4.5/8".into(),
            "1.2.3.4".into(),
            "1.2.3.4/".into(),
            "1.2.3.4//8".into(),
            "/8".into(),
            "".into(),
            "10.0.0.1/24/".into(),
        ];
        for a in parts {
            for b in ["0", "7", "255", "256", "01"] {
                for len in lens {
                    texts.push(format!("{a}.{b}.{b}.{a}/{len}"));
                    texts.push(format!("{b}.{a}.0.1/{len}"));
                }
            }
        }
        let mut accepted = 0;
        for t in &texts {
            let fast = Ipv4Cidr::parse_plain(t.as_bytes());
            let explained = Ipv4Cidr::parse_explained(t).ok();
            assert_eq!(fast, explained, "{t:?}");
            accepted += usize::from(fast.is_some());
        }
        assert!(accepted > 100, "{accepted}");
    }

    #[test]
    fn names() {
        for ok in ["a", "hv0", "example-network", "a.b", "_x", "A_1-2"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            ".x",
            "a/b",
            "a b",
            "../etc",
            "/",
            &"x".repeat(65),
        ] {
            assert!(!is_name(bad), "{bad}");
        }
        assert!(Name::new("..").is_err());
        let e = Name::new("a\x1b[2Jb").unwrap_err();
        assert!(!e.to_string().contains('\x1b'), "{e}");
    }

    #[test]
    fn safe_names_are_names_and_stable() {
        assert_eq!(safe_name("hello").as_str(), "hello");
        assert_eq!(safe_name("example network").as_str(), "example-network");
        assert_eq!(safe_name("..").as_str(), "_.");
        assert_eq!(safe_name("").as_str(), "_");
        assert_eq!(safe_name("café").as_str(), "caf-");
        let long = "n".repeat(100);
        let s = safe_name(&long);
        assert_eq!(s.len(), 64);
        assert_eq!(s, safe_name(&long));
        assert_ne!(s, safe_name(&"n".repeat(101)));
        for weird in ["a/b", "-", "..", "x\0y", "\u{202e}", " "] {
            assert!(is_name(&safe_name(weird)), "{weird}");
        }
    }

    #[test]
    fn interface_names() {
        for ok in [
            "eth0",
            "eth0.100",
            "enp59s0f0np0",
            "tab12cd0",
            "br-x",
            "a@b",
        ] {
            assert!(is_ifname(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            "a/b",
            "a:b",
            "a b",
            "sixteen_bytes_xx",
            "é",
        ] {
            assert!(!is_ifname(bad), "{bad}");
        }
    }

    #[test]
    fn cidrs_round_trip_and_refuse_leading_zeros() {
        for ok in ["10.0.0.1/24", "0.0.0.0/0", "255.255.255.255/32"] {
            let c: Ipv4Cidr = ok.parse().unwrap();
            assert_eq!(c.to_string(), ok);
        }
        for bad in [
            "10.0.0.1",
            "10.0.0/24",
            "10.0.0.01/24",
            "10.0.0.1/33",
            "10.0.0.1/024",
            "a.b.c.d/1",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        let c: Ipv4Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.1.0.0/16");
        assert!(c.contains("10.1.200.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
    }

    #[test]
    fn device_addresses() {
        assert!(is_mac("02:ab:cd:00:00:01"));
        assert!(!is_mac("03:ab:cd:00:00:01"));
        assert!(!is_mac("02:ab:cd:00:00"));
        assert!(is_pci_addr("0000:3b:00.0"));
        assert!(!is_pci_addr("0000:3b:00.8"));
        assert!(!is_pci_addr("../../x/y/z.0"));
        assert!(is_mdev_type("nvidia-472"));
        assert!(!is_mdev_type("../.."));
        assert!(is_uuid("0012ab34-6d78-4000-8000-000001000002"));
        assert!(!is_uuid("0012ab34-6d78-4000-8000-00000100000"));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<IfName>("\"eth0\"").is_ok());
        let e = serde_json::from_str::<IfName>("\"docker0/../x\"").unwrap_err();
        assert!(e.to_string().contains("interface name"), "{e}");
        assert!(serde_json::from_str::<Name>("\"..\"").is_err());
        assert_eq!(
            serde_json::to_string(&Ipv4Cidr::parse("10.0.0.1/24").unwrap()).unwrap(),
            "\"10.0.0.1/24\""
        );
    }
}
