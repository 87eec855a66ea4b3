//! The recorded facility: facilities, hosts, switches and cables in
//! declaration order, the operations the API performs on them, and
//! [`lower`], which checks the whole facility (names, ports, cables) and
//! lowers it to XIR. Nothing here knows the interpreter.

use mx_diag::code;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use mx_diag::Diagnostic;
use mx_xir::Span;

#[derive(Default)]
pub struct FacModel {
    pub facilities: Vec<(String, Span)>,
    pub devices: Vec<DeviceData>,
    pub cables: Vec<(u32, u32, u32, u32, u64, Span)>,
}

pub struct DeviceData {
    pub fac: u32,
    pub name: Rc<str>,
    pub span: Span,
    pub kind: DeviceKind,
}

pub enum DeviceKind {
    Host(Box<mx_xir::Host>),
    Switch(mx_xir::Switch),
}

/// Why the facility refused an operation; the API adds the spans.
#[derive(Debug, PartialEq)]
pub enum FacError {
    /// A cable end is a port of a device of another facility.
    ForeignPort { end: usize },
}

impl FacModel {
    pub fn add_facility(&mut self, name: String, span: Span) -> u32 {
        self.facilities.push((name, span));
        self.facilities.len() as u32 - 1
    }

    pub fn add_device(&mut self, fac: u32, name: Rc<str>, span: Span, kind: DeviceKind) -> u32 {
        self.devices.push(DeviceData {
            fac,
            name,
            span,
            kind,
        });
        self.devices.len() as u32 - 1
    }

    /// A cable of facility `fac` between two `(device, port)` ends. Without
    /// a capacity it takes the slower host NIC port at either end, else
    /// 100 Gb/s. Ports and duplicates are checked by [`lower`].
    pub fn cable(
        &mut self,
        fac: u32,
        ends: [(u32, u32); 2],
        capacity: Option<u64>,
        span: Span,
    ) -> Result<(), FacError> {
        if let Some(end) = ends
            .iter()
            .position(|(d, _)| self.devices[*d as usize].fac != fac)
        {
            return Err(FacError::ForeignPort { end });
        }
        let capacity = capacity.unwrap_or_else(|| {
            ends.iter()
                .filter_map(|(d, p)| match &self.devices[*d as usize].kind {
                    DeviceKind::Host(h) => h.nic_of_port(*p).map(|(n, _)| h.nics[n].capacity),
                    DeviceKind::Switch(_) => None,
                })
                .min()
                .unwrap_or(100_000_000_000)
        });
        self.cables
            .push((ends[0].0, ends[0].1, ends[1].0, ends[1].1, capacity, span));
        Ok(())
    }

    pub fn facility_name(&self, f: u32) -> &str {
        &self.facilities[f as usize].0
    }

    pub fn device_name(&self, d: u32) -> &Rc<str> {
        &self.devices[d as usize].name
    }
}

/// Checks the facility and lowers it to XIR.
pub fn lower(path: &str, fac: &FacModel, diags: &mut Vec<Diagnostic>) -> Option<mx_xir::Facility> {
    let (name, fspan) = fac.facilities.last()?;
    if fac.facilities.len() > 1 {
        diags.push(
            Diagnostic::error(code::E0217, "the model defines several facilities")
                .primary(fspan.range(), "second facility")
                .secondary(fac.facilities[0].1.range(), "first facility")
                .help("describe one facility per file"),
        );
        return None;
    }
    let mut out = mx_xir::Facility::new(name, path);
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let mut cabled: BTreeMap<(u32, u32), Span> = BTreeMap::new();
    for d in &fac.devices {
        if let Some(first) = seen.get(&*d.name) {
            diags.push(
                Diagnostic::error(code::E0206, format!("two devices are named `{}`", d.name))
                    .primary(d.span.range(), "second device with this name")
                    .secondary(first.range(), "first defined here")
                    .help("hosts and switches share one namespace; give each a unique name"),
            );
        }
        seen.insert(&d.name, d.span);
        match &d.kind {
            DeviceKind::Host(h) => {
                let mut h = (**h).clone();
                h.name = mx_xir::safe_name(&d.name);
                out.hosts.push(h);
            }
            DeviceKind::Switch(s) => {
                let mut s = s.clone();
                s.name = mx_xir::safe_name(&d.name);
                out.switches.push(s);
            }
        }
    }
    for &(d0, p0, d1, p1, capacity, span) in &fac.cables {
        let mut ok = true;
        for (d, p) in [(d0, p0), (d1, p1)] {
            let dev = &fac.devices[d as usize];
            if let DeviceKind::Host(h) = &dev.kind
                && p >= h.ports()
            {
                ok = false;
                diags.push(
                    Diagnostic::error(code::E0222, format!("host `{}` has no port {p}", dev.name))
                        .primary(span.range(), format!("port {p}"))
                        .secondary(
                            dev.span.range(),
                            format!(
                                "declared with {} port{}",
                                h.ports(),
                                if h.ports() == 1 { "" } else { "s" }
                            ),
                        )
                        .help("host ports are numbered from 0 across its NICs in order"),
                );
            }
            if let Some(first) = cabled.get(&(d, p)) {
                ok = false;
                diags.push(
                    Diagnostic::error(
                        code::E0221,
                        format!("port {p} of `{}` is cabled twice", dev.name),
                    )
                    .primary(span.range(), "second cable")
                    .secondary(first.range(), "first cable")
                    .help("a port takes one cable"),
                );
            } else {
                cabled.insert((d, p), span);
            }
        }
        if d0 == d1 {
            ok = false;
            diags.push(
                Diagnostic::error(code::E0221, "a cable connects a device to itself")
                    .primary(span.range(), "loop")
                    .help("cable a host to a switch, or two switches"),
            );
        }
        if ok {
            out.cables.push(mx_xir::Cable {
                ends: [
                    mx_xir::PortRef {
                        device: fac.devices[d0 as usize].name.to_string(),
                        port: p0,
                    },
                    mx_xir::PortRef {
                        device: fac.devices[d1 as usize].name.to_string(),
                        port: p1,
                    },
                ],
                capacity,
                span,
            });
        }
    }
    // Hosts without any cable cannot carry links to other hosts.
    if !out.switches.is_empty() {
        for (i, d) in fac.devices.iter().enumerate() {
            if matches!(d.kind, DeviceKind::Host(_))
                && !cabled.keys().any(|(dev, _)| *dev == i as u32)
            {
                diags.push(
                    Diagnostic::warning(code::W0203, format!("host `{}` has no cables", d.name))
                        .primary(d.span.range(), "unconnected host")
                        .help("cable it to a leaf switch, or experiments placed on it cannot reach other hosts"),
                );
            }
        }
    }
    if out.hosts.is_empty() {
        diags.push(
            Diagnostic::error(code::E0217, format!("facility `{name}` has no hosts"))
                .primary(fspan.range(), "empty facility")
                .help("declare hosts with fac.host('hv0', cores=32, memory=gb(128), ...)"),
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch() -> DeviceKind {
        DeviceKind::Switch(mx_xir::Switch {
            name: mx_xir::safe_name(""),
            role: mx_xir::SwitchRole::Leaf,
            vxlan: true,
            underlay: None,
            netns: false,
            span: Span::new(0, 1),
        })
    }

    #[test]
    fn cables_stay_inside_their_facility_and_default_to_100g_between_switches() {
        let mut f = FacModel::default();
        let lab = f.add_facility("lab".into(), Span::new(0, 1));
        let other = f.add_facility("other".into(), Span::new(1, 2));
        let s0 = f.add_device(lab, "s0".into(), Span::new(2, 3), switch());
        let s1 = f.add_device(lab, "s1".into(), Span::new(3, 4), switch());
        let x = f.add_device(other, "x".into(), Span::new(4, 5), switch());
        let at = Span::new(5, 6);
        assert_eq!(
            f.cable(lab, [(s0, 0), (x, 0)], None, at),
            Err(FacError::ForeignPort { end: 1 })
        );
        assert!(f.cables.is_empty(), "a refused cable is not recorded");
        f.cable(lab, [(s0, 0), (s1, 0)], None, at).unwrap();
        f.cable(lab, [(s0, 1), (s1, 1)], Some(10_000_000_000), at)
            .unwrap();
        let caps: Vec<u64> = f.cables.iter().map(|c| c.4).collect();
        assert_eq!(caps, [100_000_000_000, 10_000_000_000]);
        assert_eq!(&**f.device_name(s1), "s1");
        assert_eq!(f.facility_name(other), "other");
    }

    #[test]
    fn lowering_reports_two_devices_of_one_name_and_refuses_two_facilities() {
        let mut f = FacModel::default();
        let lab = f.add_facility("lab".into(), Span::new(0, 1));
        f.add_device(lab, "s0".into(), Span::new(2, 3), switch());
        f.add_device(lab, "s0".into(), Span::new(3, 4), switch());
        let mut diags = Vec::new();
        lower("lab.mx", &f, &mut diags);
        assert_eq!(diags[0].code, code::E0206);
        f.add_facility("again".into(), Span::new(5, 6));
        let mut diags = Vec::new();
        assert!(lower("lab.mx", &f, &mut diags).is_none());
        assert_eq!(diags[0].code, code::E0217);
    }
}
