//! Which side of the home's LAN boundary an address is on.

use std::net::IpAddr;

/// Where an address sits relative to the home gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A unicast address inside the home: RFC 1918, IPv4 link-local, IPv6 ULA or link-local.
    Lan,
    /// A globally routed unicast address: the internet side.
    Internet,
    /// Neither: loopback, multicast, broadcast, unspecified, documentation, shared (CGNAT).
    Other,
}

pub fn scope(addr: IpAddr) -> Scope {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_private() || a.is_link_local() {
                Scope::Lan
            } else if a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
            {
                Scope::Other
            } else {
                Scope::Internet
            }
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return scope(IpAddr::V4(v4));
            }
            let s = a.segments();
            if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 {
                Scope::Lan
            } else if a.is_loopback() || a.is_multicast() || a.is_unspecified() || (s[0] == 0x2001 && s[1] == 0x0db8) {
                Scope::Other
            } else {
                Scope::Internet
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(s: &str) -> Scope {
        scope(s.parse().expect("address"))
    }

    #[test]
    fn private_ranges_are_lan() {
        for a in ["10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.129", "169.254.3.4", "fd00::1", "fe80::1"] {
            assert_eq!(sc(a), Scope::Lan, "{a}");
        }
    }

    #[test]
    fn public_addresses_are_internet() {
        for a in ["3.227.188.171", "172.32.0.1", "192.169.0.1", "8.8.8.8", "2600:1f18::1", "::ffff:52.70.158.224"] {
            assert_eq!(sc(a), Scope::Internet, "{a}");
        }
    }

    #[test]
    fn broadcast_multicast_and_friends_are_neither() {
        for a in ["255.255.255.255", "0.0.0.0", "224.0.0.251", "127.0.0.1", "100.64.0.1", "ff02::fb", "::1", "::"] {
            assert_eq!(sc(a), Scope::Other, "{a}");
        }
    }
}
