//! Compact encodings of a job's input packets and defended output, as stored in job records.
//!
//! Both are time-ordered, so times are stored as LEB128 deltas (a few bytes each) after an
//! absolute origin; sizes as LEB128 integers; direction and kind in one flag byte. A week of a
//! busy device's defended traffic stays in the tens of megabytes.

use crate::{
    error::{Error, Result},
    traffic::{Direction, Packet, Transport, simulate::OutputPacket},
};

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn corrupt() -> Error {
    Error::Internal("a stored trace is damaged".into())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or_else(corrupt)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.at).ok_or_else(corrupt)?;
        self.at += 1;
        Ok(b)
    }

    fn f32(&mut self) -> Result<f32> {
        let b = self.bytes.get(self.at..self.at + 4).ok_or_else(corrupt)?;
        self.at += 4;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64> {
        let b: [u8; 8] = self.bytes.get(self.at..self.at + 8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?;
        self.at += 8;
        Ok(f64::from_le_bytes(b))
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

const OUT: u8 = 1;
const UDP: u8 = 2;
const DUMMY: u8 = 2;
/// A size stored as an f32 (records written before sizes kept their full precision).
const FRACTIONAL_F32: u8 = 4;
/// A size stored as the simulator's f64, bit for bit.
const FRACTIONAL: u8 = 8;

/// Packets sorted by time.
pub fn encode_packets(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packets.len() * 5 + 10);
    let origin = packets.first().map_or(0, |p| p.time_ns);
    put_varint(&mut out, origin as u64);
    let mut last = origin;
    for p in packets {
        put_varint(&mut out, (p.time_ns - last) as u64);
        last = p.time_ns;
        put_varint(&mut out, u64::from(p.size));
        let mut flags = 0;
        if p.direction == Direction::Out {
            flags |= OUT;
        }
        if p.transport == Transport::Udp {
            flags |= UDP;
        }
        out.push(flags);
    }
    out
}

pub fn decode_packets(bytes: &[u8]) -> Result<Vec<Packet>> {
    let mut r = Reader { bytes, at: 0 };
    let mut time = r.varint()? as i64;
    let mut packets = Vec::new();
    while !r.done() {
        time += r.varint()? as i64;
        let size = u32::try_from(r.varint()?).map_err(|_| corrupt())?;
        let flags = r.byte()?;
        packets.push(Packet {
            time_ns: time,
            size,
            direction: if flags & OUT != 0 { Direction::Out } else { Direction::In },
            transport: if flags & UDP != 0 { Transport::Udp } else { Transport::Tcp },
        });
    }
    Ok(packets)
}

/// Streams a defended trace into its encoding; `origin_ns` is the time output rows count from.
pub struct OutputEncoder {
    bytes: Vec<u8>,
    last: i64,
    rows: u64,
}

impl OutputEncoder {
    pub fn new(origin_ns: i64) -> Self {
        let mut bytes = Vec::with_capacity(1 << 16);
        put_varint(&mut bytes, origin_ns as u64);
        Self { bytes, last: origin_ns, rows: 0 }
    }

    pub fn push(&mut self, p: &OutputPacket) -> Result<()> {
        let delta = p.time_ns - self.last;
        if delta < 0 {
            return Err(Error::Internal("the simulator emitted packets out of time order".into()));
        }
        put_varint(&mut self.bytes, delta as u64);
        self.last = p.time_ns;
        let mut flags = 0;
        if p.direction == Direction::Out {
            flags |= OUT;
        }
        if p.dummy {
            flags |= DUMMY;
        }
        let whole = p.size.fract() == 0.0 && p.size >= 0.0 && p.size < 1e15;
        if !whole {
            flags |= FRACTIONAL;
        }
        self.bytes.push(flags);
        if whole {
            put_varint(&mut self.bytes, p.size as u64);
        } else {
            self.bytes.extend_from_slice(&p.size.to_le_bytes());
        }
        self.rows += 1;
        Ok(())
    }

    /// (encoded bytes, rows)
    pub fn finish(self) -> (Vec<u8>, u64) {
        (self.bytes, self.rows)
    }
}

/// The origin and every row `[direction, is_dummy, size_bytes, time_s]`, time relative to the
/// origin (the trace's first real packet).
pub fn decode_output(bytes: &[u8], mut each: impl FnMut([f64; 4]) -> Result<()>) -> Result<()> {
    let mut r = Reader { bytes, at: 0 };
    let origin = r.varint()? as i64;
    let mut time = origin;
    while !r.done() {
        time += r.varint()? as i64;
        let flags = r.byte()?;
        let size = if flags & FRACTIONAL != 0 {
            r.f64()?
        } else if flags & FRACTIONAL_F32 != 0 {
            f64::from(r.f32()?)
        } else {
            r.varint()? as f64
        };
        let p = OutputPacket {
            time_ns: time,
            direction: if flags & OUT != 0 { Direction::Out } else { Direction::In },
            dummy: flags & DUMMY != 0,
            size,
            delay_ns: 0,
        };
        each(p.row(origin))?;
    }
    Ok(())
}

/// Several encodings in one record (a home job's per-device traces and outputs, in the order of
/// its device table): their count, then each one's length and bytes.
pub fn encode_sections(sections: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sections.iter().map(|s| s.len() + 10).sum::<usize>() + 10);
    put_varint(&mut out, sections.len() as u64);
    for s in sections {
        put_varint(&mut out, s.len() as u64);
        out.extend_from_slice(s);
    }
    out
}

pub fn decode_sections(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.varint()?;
    let mut sections = Vec::new();
    for _ in 0..n {
        let len = usize::try_from(r.varint()?).map_err(|_| corrupt())?;
        let end = r.at.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(corrupt)?;
        sections.push(&bytes[r.at..end]);
        r.at = end;
    }
    if !r.done() {
        return Err(corrupt());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip_and_damage_is_detected() {
        let sections = vec![vec![1, 2, 3], vec![], vec![0x80; 200]];
        let bytes = encode_sections(&sections);
        let back = decode_sections(&bytes).expect("decode");
        assert_eq!(back, sections.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(decode_sections(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_sections(&encode_sections(&[])).expect("none").is_empty());
    }

    #[test]
    fn packets_round_trip() {
        let packets = vec![
            Packet { time_ns: 1_615_000_000_123_456_789, size: 0, direction: Direction::In, transport: Transport::Udp },
            Packet {
                time_ns: 1_615_000_000_123_456_789,
                size: 1448,
                direction: Direction::Out,
                transport: Transport::Tcp,
            },
            Packet {
                time_ns: 1_615_000_900_000_000_000,
                size: 70_000,
                direction: Direction::In,
                transport: Transport::Tcp,
            },
        ];
        let bytes = encode_packets(&packets);
        assert!(bytes.len() < 3 * 16);
        assert_eq!(decode_packets(&bytes).expect("decode"), packets);
        assert!(decode_packets(&encode_packets(&[])).expect("empty").is_empty());
    }

    #[test]
    fn output_round_trips_with_fractional_sizes() {
        let origin = 1_000_000_000;
        let rows = [
            OutputPacket { time_ns: origin, direction: Direction::Out, dummy: false, size: 120.0, delay_ns: 0 },
            OutputPacket {
                time_ns: origin + 25_000_000,
                direction: Direction::In,
                dummy: true,
                size: 33.5,
                delay_ns: 0,
            },
            OutputPacket {
                time_ns: origin + 25_000_000,
                direction: Direction::In,
                dummy: true,
                size: 0.0,
                delay_ns: 0,
            },
        ];
        let mut enc = OutputEncoder::new(origin);
        for r in &rows {
            enc.push(r).expect("push");
        }
        let (bytes, n) = enc.finish();
        assert_eq!(n, 3);
        let mut back = Vec::new();
        decode_output(&bytes, |r| {
            back.push(r);
            Ok(())
        })
        .expect("decode");
        assert_eq!(back, vec![[1.0, 0.0, 120.0, 0.0], [-1.0, 1.0, 33.5, 0.025], [-1.0, 1.0, 0.0, 0.025]]);
    }

    #[test]
    fn fractional_sizes_keep_every_bit() {
        let sizes = [0.1, 1.0 / 3.0, 1_234.567_890_123_456_7, 2.0_f64.powi(-40), 1e15 + 0.5];
        let mut enc = OutputEncoder::new(0);
        for (k, &size) in sizes.iter().enumerate() {
            let p = OutputPacket { time_ns: k as i64, direction: Direction::In, dummy: true, size, delay_ns: 0 };
            enc.push(&p).expect("push");
        }
        let (bytes, _) = enc.finish();
        let mut back = Vec::new();
        decode_output(&bytes, |r| {
            back.push(r[2].to_bits());
            Ok(())
        })
        .expect("decode");
        assert_eq!(back, sizes.iter().map(|s| s.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn out_of_order_output_is_refused_and_damage_detected() {
        let mut enc = OutputEncoder::new(10);
        assert!(
            enc.push(&OutputPacket { time_ns: 5, direction: Direction::In, dummy: true, size: 1.0, delay_ns: 0 })
                .is_err()
        );
        assert!(decode_packets(&[0x80]).is_err());
        assert!(decode_packets(&[0, 1, 0x80]).is_err());
    }
}
