//! Ethernet frames: addresses, the payload size the defense counts, and cover frames.
//!
//! A cover frame is an Ethernet frame of the local experimental EtherType 0x88B5
//! (docs/threat-model.md: a device's stack drops it silently, where a closed UDP port would be
//! answered with ICMP). To the device it goes from the gateway's port address to the device's
//! MAC; from the device (outgoing cover) under the device's MAC as source. Its length is the
//! length of an IPv4/UDP frame carrying the cover packet's size (14 + 20 + 8 + size bytes, at
//! least 60): the simulator counts transport payload bytes and emits cover as UDP, so a cover
//! packet of size s is on the wire as long as a real UDP packet of size s.
//!
//! Its first bytes are a tag the testbed's observer reads (on a real Wi-Fi link the frame body
//! is encrypted with the device's pairwise key, so only the device, which drops it, sees it):
//! `IPCV`, direction (0 in, 1 out), a flag byte, the device index, the size it stands for, the
//! time it was due (ns) and the time of the real frame it mirrors (0: none). The layout is
//! written once, in the data plane (`ipet_traffic::cover`), which reads cover frames in captures.

use ipet_traffic::{
    DeviceTable, Direction,
    capture::{IpPacket, Skip, attribute, decode_frame},
    devices::Mac,
};
use pcap_file::DataLink;

pub use ipet_traffic::cover::{COVER_ETHERTYPE, CoverTag, MAX_FRAME, MIN_FRAME, cover, cover_tag};

pub fn dst(frame: &[u8]) -> Option<Mac> {
    frame.get(0..6).map(|s| s.try_into().unwrap_or_default())
}

pub fn src(frame: &[u8]) -> Option<Mac> {
    frame.get(6..12).map(|s| s.try_into().unwrap_or_default())
}

pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

pub fn ethertype(frame: &[u8]) -> Option<u16> {
    frame.get(12..14).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

pub const PROBE_MAGIC: &[u8; 4] = b"IPPR";

/// A probe frame (the testbed's outage probe): to an address nobody has, passed untouched.
pub fn probe(out: &mut Vec<u8>, seq: u64) {
    out.clear();
    out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98]);
    out.extend_from_slice(&COVER_ETHERTYPE.to_be_bytes());
    out.extend_from_slice(PROBE_MAGIC);
    out.extend_from_slice(&seq.to_be_bytes());
    out.resize(MIN_FRAME, 0);
}

pub fn is_probe(frame: &[u8]) -> bool {
    ethertype(frame) == Some(COVER_ETHERTYPE) && frame.get(14..18) == Some(PROBE_MAGIC)
}

/// A real frame as the defense counts it: the device it belongs to (by the data plane's rules:
/// TCP or UDP with a payload, crossing the LAN boundary, the device by MAC or IP), its direction
/// and transport payload size. `Err` for frames the simulator would not count.
pub fn classify(frame: &[u8], table: &DeviceTable) -> Result<(usize, Direction, u32), Skip> {
    let p: IpPacket = decode_frame(DataLink::ETHERNET, frame, 0)?;
    if p.cover {
        // The data plane counts a cover frame as its device's UDP packet; here it is no real one.
        return Err(Skip::NonIp);
    }
    let (device, _, packet) = attribute(&p, table)?;
    Ok((device, packet.direction, packet.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag's layout is the data plane's (and tested there); here, what the gateway adds: a
    /// cover frame goes under the address it is given, and is never taken for a real frame of
    /// the device it stands for.
    #[test]
    fn a_cover_frame_goes_under_its_addresses_and_is_no_real_frame() {
        let device = [0x02, 0, 0, 0, 0, 0x07];
        let table = DeviceTable::new(vec![("cam".into(), Some(device), vec![])]).expect("table");
        let tag = CoverTag { direction: Direction::Out, device: 0, size: 500, due_ns: 123, mirrors_ns: -1 };
        let mut f = Vec::new();
        cover(&mut f, &[1, 2, 3, 4, 5, 6], &device, &tag);
        assert_eq!((dst(&f), src(&f)), (Some([1, 2, 3, 4, 5, 6]), Some(device)));
        assert_eq!(ethertype(&f), Some(COVER_ETHERTYPE));
        assert!(!is_probe(&f));
        assert!(matches!(classify(&f, &table), Err(Skip::NonIp)));
    }
}
