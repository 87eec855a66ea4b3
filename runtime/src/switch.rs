//! The switch driver for Linux-based switches (Cumulus, SONiC's kernel
//! path, DENT): leaf VLANs on the switch's VLAN-aware bridge, set through
//! netlink as `bridge vlan` does. The namespace testbed's kernel has no
//! VLAN filtering, so there the same fragments drive an emulation (see
//! `plan::up`); these messages are what a real switch receives, and the
//! plan snapshots show them.

use rtnetlink::LinkBridgeVlan;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{BridgeVlanInfoFlags, LinkMessage};

/// The link message that puts port `index` in VLAN `vid`: a tagged trunk
/// member, or with `untagged` the port's untagged PVID (an access port, or
/// a VNI's VXLAN device).
pub fn bridge_vlan_message(index: u32, vid: u16, untagged: bool) -> LinkMessage {
    let flags = if untagged {
        BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
    } else {
        BridgeVlanInfoFlags::empty()
    };
    LinkBridgeVlan::new(index).vlan(vid, flags).build()
}

/// The whole request as the kernel receives it (sequence number 0):
/// RTM_SETLINK to add, RTM_DELLINK to remove.
pub fn bridge_vlan_request(index: u32, vid: u16, untagged: bool, add: bool) -> Vec<u8> {
    let msg = bridge_vlan_message(index, vid, untagged);
    let inner = if add {
        RouteNetlinkMessage::SetLink(msg)
    } else {
        RouteNetlinkMessage::DelLink(msg)
    };
    let mut req = NetlinkMessage::from(inner);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf);
    buf
}

/// Whether this machine has the VLAN-aware bridge the driver configures.
pub fn has_vlan_bridge() -> bool {
    std::fs::read_to_string(format!(
        "/sys/class/net/{}/bridge/vlan_filtering",
        crate::plan::SWITCH_BRIDGE
    ))
    .is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout the kernel's bridge (br_setlink, br_afspec) parses and
    /// iproute2's `bridge vlan add dev DEV vid 100` builds: a 16-byte
    /// nlmsghdr of type 19 (RTM_SETLINK), an ifinfomsg of family 7
    /// (AF_BRIDGE) naming the port, and IFLA_AF_SPEC (26) nesting
    /// IFLA_BRIDGE_VLAN_INFO (2) = { flags, vid }.
    #[test]
    fn requests_are_the_kernel_bridge_vlan_messages() {
        let add = bridge_vlan_request(7, 100, false, true);
        let hex: Vec<String> = add.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(""),
            concat!(
                "2c000000", "1300", "0500", "00000000",
                "00000000", // nlmsghdr: len 44, RTM_SETLINK, REQUEST|ACK
                "07000000", "07000000", "00000000",
                "00000000", // ifinfomsg: AF_BRIDGE, ifindex 7
                "0c001a00", "08000200", "0000",
                "6400", // IFLA_AF_SPEC { VLAN_INFO { flags 0, vid 100 } }
            )
        );
        let del = bridge_vlan_request(7, 100, true, false);
        assert_eq!(&del[4..6], &[0x11, 0x00], "RTM_DELLINK");
        // PVID (0x2) | UNTAGGED (0x4).
        assert_eq!(&del[40..44], &[0x06, 0x00, 0x64, 0x00]);
    }
}
