//! Cover frames on the wire: the layout the live gateway (`crates/gateway`) writes and the data
//! plane reads, written once here.
//!
//! A cover frame is an Ethernet frame of the local experimental EtherType 0x88B5 (a device's
//! stack drops it silently). Its length is that of an IPv4/UDP frame carrying the cover packet's
//! size (`COVER_OVERHEAD + size` bytes, at least `MIN_FRAME`): the simulator counts transport
//! payload bytes and emits cover as UDP. Its first bytes after the Ethernet header are a tag:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | `IPCV` |
//! | 4 | direction (0 in, 1 out) |
//! | 5 | flags (0) |
//! | 6..8 | device index (big-endian) |
//! | 8..12 | the payload size it stands for (big-endian) |
//! | 12..20 | the time it was due, ns (big-endian) |
//! | 20..28 | the time of the real frame it mirrors, ns (0: none) |
//!
//! The capture reader ([`crate::capture`]) attributes a cover frame by MAC like any frame and
//! counts it as a UDP packet of the tag's size, so cover on the wire is counted as the simulator
//! counts it.

use crate::{devices::Mac, packet::Direction};

pub const COVER_ETHERTYPE: u16 = 0x88B5;
pub const MAGIC: &[u8; 4] = b"IPCV";
/// Ethernet + IPv4 + UDP headers: a cover packet of size s is `s + COVER_OVERHEAD` on the wire.
pub const COVER_OVERHEAD: usize = 42;
pub const MIN_FRAME: usize = 60;
pub const MAX_FRAME: usize = 9000 + 14;
/// Bytes of the tag after the Ethernet header.
pub const TAG_LEN: usize = 4 + 1 + 1 + 2 + 4 + 8 + 8;

/// The cover tag of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverTag {
    pub direction: Direction,
    pub device: u16,
    pub size: u32,
    pub due_ns: i64,
    pub mirrors_ns: i64,
}

/// Builds a cover frame for `tag` into `out` (cleared first).
pub fn cover(out: &mut Vec<u8>, dst: &Mac, src: &Mac, tag: &CoverTag) {
    let len = (tag.size as usize + COVER_OVERHEAD).clamp(MIN_FRAME, MAX_FRAME);
    out.clear();
    out.extend_from_slice(dst);
    out.extend_from_slice(src);
    out.extend_from_slice(&COVER_ETHERTYPE.to_be_bytes());
    out.extend_from_slice(MAGIC);
    out.push(tag.direction.index() as u8);
    out.push(0);
    out.extend_from_slice(&tag.device.to_be_bytes());
    out.extend_from_slice(&tag.size.to_be_bytes());
    out.extend_from_slice(&tag.due_ns.to_be_bytes());
    out.extend_from_slice(&tag.mirrors_ns.to_be_bytes());
    out.resize(len, 0);
}

/// Reads the tag of an Ethernet frame, if it is a cover frame.
pub fn cover_tag(frame: &[u8]) -> Option<CoverTag> {
    if frame.get(12..14)? != COVER_ETHERTYPE.to_be_bytes() {
        return None;
    }
    let b = frame.get(14..14 + TAG_LEN)?;
    if &b[0..4] != MAGIC {
        return None;
    }
    let be64 = |s: &[u8]| i64::from_be_bytes(s.try_into().unwrap_or_default());
    Some(CoverTag {
        direction: if b[4] == 0 { Direction::In } else { Direction::Out },
        device: u16::from_be_bytes([b[6], b[7]]),
        size: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        due_ns: be64(&b[12..20]),
        mirrors_ns: be64(&b[20..28]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cover_frame_carries_its_tag_and_the_length_of_a_udp_frame() {
        let tag = CoverTag { direction: Direction::Out, device: 3, size: 500, due_ns: 123, mirrors_ns: -1 };
        let mut f = Vec::new();
        cover(&mut f, &[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10, 11, 12], &tag);
        assert_eq!(f.len(), 542);
        assert_eq!(cover_tag(&f), Some(tag));
        let small = CoverTag { size: 1, ..tag };
        cover(&mut f, &[0; 6], &[0; 6], &small);
        assert_eq!(f.len(), MIN_FRAME);
        assert_eq!(cover_tag(&f), Some(small));
        f[14] = b'X';
        assert_eq!(cover_tag(&f), None);
    }
}
