//! Helpers shared by the simulator's unit tests.

use super::{Defense, FixedRows, Mode, OutputPacket, SimSettings, Summary, simulate};
use crate::packet::{Direction, Packet, Transport};

pub(super) const MS: i64 = 1_000_000;
pub(super) const S: i64 = 1_000_000_000;

pub(super) fn pkt(t_ns: i64, direction: Direction, size: u32) -> Packet {
    Packet { time_ns: t_ns, size, direction, transport: Transport::Tcp }
}

pub(super) fn run_with(
    packets: &[Packet],
    mode: Mode,
    rows: &mut FixedRows,
    settings: SimSettings,
) -> (Vec<OutputPacket>, Summary) {
    let mut got = Vec::new();
    let summary = simulate(packets.iter().copied(), Defense::Ipet { mode, rows }, &settings, |p| {
        got.push(*p);
        Ok(())
    })
    .expect("simulate");
    (got, summary)
}

pub(super) fn run(packets: &[Packet], mode: Mode, rows: Vec<[i32; 4]>) -> (Vec<OutputPacket>, Summary, usize) {
    let mut rows = FixedRows::new(rows).expect("rows");
    let (got, summary) = run_with(packets, mode, &mut rows, SimSettings::default());
    (got, summary, rows.remaining())
}

pub(super) fn dummies(out: &[OutputPacket], d: Direction) -> Vec<OutputPacket> {
    out.iter().filter(|p| p.dummy && p.direction == d).copied().collect()
}

pub(super) fn reals(out: &[OutputPacket]) -> Vec<OutputPacket> {
    out.iter().filter(|p| !p.dummy).copied().collect()
}
