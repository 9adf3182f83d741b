//! The device table: which device a packet belongs to.
//!
//! A CSV with a header naming at least `name` and one of `mac` / `ip` (other columns, such as a
//! description, are kept aside). A device is recognised by its MAC address where the table gives
//! one (DHCP changes IPs, MACs stay), else by its LAN IP; the `ip` cell may list several addresses
//! separated by `;` or spaces. An optional `set` column names each device's anonymity set (any
//! string; empty = unassigned, see [`super::sets`]).

use std::{collections::HashMap, net::IpAddr, path::Path};

use serde::Serialize;

use crate::error::{Error, ErrorCode, Result};

pub type Mac = [u8; 6];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Device {
    pub id: usize,
    pub name: String,
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<Mac>,
    pub ips: Vec<IpAddr>,
    /// The anonymity set named in the table's `set` column (None: unassigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
}

fn ser_mac<S: serde::Serializer>(mac: &Option<Mac>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match mac {
        Some(m) => s.serialize_some(&format_mac(m)),
        None => s.serialize_none(),
    }
}

/// How a packet was attributed to its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchedBy {
    Mac = 0,
    Ip = 1,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceTable {
    devices: Vec<Device>,
    by_mac: HashMap<Mac, usize>,
    by_ip: HashMap<IpAddr, usize>,
    /// Whether a device's traffic with other hosts of the LAN counts as its traffic (default:
    /// only traffic crossing the LAN boundary, the reference's rule).
    lan_traffic: bool,
}

pub fn parse_mac(s: &str) -> Option<Mac> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

pub fn format_mac(m: &Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl DeviceTable {
    /// Builds a table; ids are positions. Fails on duplicate names, MACs or IPs.
    pub fn new(entries: Vec<(String, Option<Mac>, Vec<IpAddr>)>) -> Result<Self> {
        let mut table = DeviceTable::default();
        for (name, mac, ips) in entries {
            let id = table.devices.len();
            table.check_new_name(&name)?;
            if mac.is_none() && ips.is_empty() {
                return Err(Error::invalid(
                    ErrorCode::InvalidDeviceTable,
                    format!("device {name:?} has neither a MAC nor an IP address"),
                ));
            }
            if let Some(m) = mac
                && table.by_mac.insert(m, id).is_some()
            {
                return Err(Error::invalid(
                    ErrorCode::InvalidDeviceTable,
                    format!("MAC {} appears twice", format_mac(&m)),
                ));
            }
            for ip in &ips {
                if table.by_ip.insert(*ip, id).is_some() {
                    return Err(Error::invalid(ErrorCode::InvalidDeviceTable, format!("IP {ip} appears twice")));
                }
            }
            table.devices.push(Device { id, name, mac, ips, set: None });
        }
        table.non_empty()
    }

    /// Devices known by name only (and their sets), for packets already attributed to their
    /// device (a trace given as packets); such a table selects no packet from a capture.
    pub fn named(entries: Vec<(String, Option<String>)>) -> Result<Self> {
        let mut table = DeviceTable::default();
        for (name, set) in entries {
            let id = table.devices.len();
            table.check_new_name(&name)?;
            table.devices.push(Device { id, name, mac: None, ips: Vec::new(), set });
        }
        table.non_empty()
    }

    /// Fails on a name the next device may not take: empty, or one the table already holds.
    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid(
                ErrorCode::InvalidDeviceTable,
                format!("device {}: empty name", self.devices.len() + 1),
            ));
        }
        if self.devices.iter().any(|d| d.name == name) {
            return Err(Error::invalid(ErrorCode::InvalidDeviceTable, format!("device name {name:?} appears twice")));
        }
        Ok(())
    }

    /// The table, unless it lists no device.
    fn non_empty(self) -> Result<Self> {
        if self.devices.is_empty() {
            return Err(Error::invalid(ErrorCode::InvalidDeviceTable, "the device table lists no device"));
        }
        Ok(self)
    }

    /// Reads a `name,mac,ip[,...]` CSV file.
    pub fn from_csv_path(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::from_csv_str(&text).map_err(|e| match e {
            Error::InvalidInput { code, message } => {
                Error::InvalidInput { code, message: format!("{}: {message}", path.display()) }
            }
            other => other,
        })
    }

    pub fn from_csv_str(text: &str) -> Result<Self> {
        let bad = |m: String| Error::invalid(ErrorCode::InvalidDeviceTable, m);
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| bad(format!("header: {e}")))?.clone();
        let col = |n: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(n));
        let name_col = col("name").ok_or_else(|| bad("the header must name a `name` column".into()))?;
        let (mac_col, ip_col, set_col) = (col("mac"), col("ip"), col("set"));
        if mac_col.is_none() && ip_col.is_none() {
            return Err(bad("the header must name a `mac` or an `ip` column".into()));
        }
        let mut entries = Vec::new();
        let mut sets = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| bad(format!("line {line}: {e}")))?;
            let cell = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim();
            let name = cell(Some(name_col)).to_string();
            let mac = match cell(mac_col) {
                "" => None,
                s => Some(parse_mac(s).ok_or_else(|| bad(format!("line {line}: {s:?} is not a MAC address")))?),
            };
            let mut ips = Vec::new();
            for s in cell(ip_col).split([';', ' ']).filter(|s| !s.is_empty()) {
                ips.push(s.parse().map_err(|_| bad(format!("line {line}: {s:?} is not an IP address")))?);
            }
            entries.push((name, mac, ips));
            sets.push(Some(cell(set_col)).filter(|s| !s.is_empty()).map(str::to_string));
        }
        let mut table = Self::new(entries)?;
        for (d, set) in table.devices.iter_mut().zip(sets) {
            d.set = set;
        }
        Ok(table)
    }

    /// Counts the devices' traffic inside the LAN too (a gateway that sees it; devices that
    /// never talk to the internet then keep their packets).
    pub fn with_lan_traffic(mut self, lan: bool) -> Self {
        self.lan_traffic = lan;
        self
    }

    pub fn counts_lan_traffic(&self) -> bool {
        self.lan_traffic
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn by_name(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// The device a LAN endpoint belongs to. `mac` is the endpoint's hardware address where the
    /// capture has a link layer. A device with a MAC in the table is only recognised by that MAC
    /// when the frame shows one: an IP that DHCP has since handed to another host must not pull
    /// that host's packets into the device.
    pub fn attribute(&self, ip: IpAddr, mac: Option<Mac>) -> Option<(usize, MatchedBy)> {
        if let Some(m) = mac
            && let Some(&id) = self.by_mac.get(&m)
        {
            return Some((id, MatchedBy::Mac));
        }
        let &id = self.by_ip.get(&ip)?;
        if mac.is_some() && self.devices[id].mac.is_some() {
            return None;
        }
        Some((id, MatchedBy::Ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "name,mac,ip,description\n\
        cam,f4:b8:5e:ff:2b:1b,192.168.1.129,\"A camera, indoor\"\n\
        lock,,192.168.1.122;fd00::22,\n\
        hub,A4-CF-12-32-5B-88,,\n";

    #[test]
    fn parses_the_table() {
        let t = DeviceTable::from_csv_str(TABLE).expect("table");
        assert_eq!(t.len(), 3);
        assert_eq!(t.devices()[1].ips.len(), 2);
        assert_eq!(t.devices()[2].mac, parse_mac("a4:cf:12:32:5b:88"));
    }

    #[test]
    fn the_optional_set_column_is_read_and_empty_means_unassigned() {
        let t =
            DeviceTable::from_csv_str("name,ip,Set\na,10.0.0.1,cams\nb,10.0.0.2,\nc,10.0.0.3, hubs \n").expect("table");
        let sets: Vec<Option<&str>> = t.devices().iter().map(|d| d.set.as_deref()).collect();
        assert_eq!(sets, vec![Some("cams"), None, Some("hubs")]);
        assert!(DeviceTable::from_csv_str(TABLE).expect("table").devices().iter().all(|d| d.set.is_none()));
    }

    #[test]
    fn mac_wins_and_ip_is_the_fallback() {
        let t = DeviceTable::from_csv_str(TABLE).expect("table");
        let cam_mac = parse_mac("f4:b8:5e:ff:2b:1b");
        let hub_mac = parse_mac("a4:cf:12:32:5b:88");
        let ip = |s: &str| -> IpAddr { s.parse().expect("address") };
        // The hub under any IP is the hub.
        assert_eq!(t.attribute(ip("192.168.1.50"), hub_mac), Some((2, MatchedBy::Mac)));
        // The camera's old IP now used by an unknown MAC is not the camera.
        assert_eq!(t.attribute(ip("192.168.1.129"), parse_mac("00:00:00:00:00:01")), None);
        // Without a link layer the camera is found by IP.
        assert_eq!(t.attribute(ip("192.168.1.129"), None), Some((0, MatchedBy::Ip)));
        assert_eq!(t.attribute(ip("192.168.1.129"), cam_mac), Some((0, MatchedBy::Mac)));
        // The lock has no MAC: found by either of its IPs whatever the MAC.
        assert_eq!(t.attribute(ip("fd00::22"), parse_mac("00:00:00:00:00:02")), Some((1, MatchedBy::Ip)));
    }

    #[test]
    fn rejects_bad_tables() {
        for (text, needle) in [
            ("mac,ip\n", "`name`"),
            ("name,description\n", "`mac` or an `ip`"),
            ("name,mac\na,zz:zz\n", "not a MAC"),
            ("name,ip\na,1.2.3\n", "not an IP"),
            ("name,ip\na,10.0.0.1\na,10.0.0.2\n", "twice"),
            ("name,ip\na,\n", "neither"),
            ("name,ip\n", "no device"),
        ] {
            let err = DeviceTable::from_csv_str(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
