//! The data plane: captures in, per-device packets, fingerprinting windows.
//!
//! Written once and used by the CLI (which the training job calls), the service and the
//! simulator, so that undefended and defended traffic are always scored by the same code.

pub mod error;

pub mod address;
pub mod capture;
pub mod cover;
pub mod devices;
pub mod features;
pub mod noise;
pub mod npy;
pub mod packet;
pub mod set_defense;
pub mod sets;
pub mod shaper;
pub mod simulate;
pub mod tshark_csv;
pub mod windows;
pub mod work_bounds;

pub use capture::{CaptureStats, read_captures};
pub use devices::{Device, DeviceTable};
pub use error::{Error, ErrorCode, Result};
pub use packet::{Direction, Packet, Transport};
pub use sets::{AnonymitySet, SetPartition, SilentDevices, form_sets, parse_sets};
/// The paper's baselines are one of the simulator's defenses (one device, buffering real packets).
pub use simulate::baselines;
pub use simulate::baselines::{Baseline, BaselineKind};
pub use simulate::{
    Defense, FixedRows, HomeSummary, Mode, OutputFile, OutputPacket, PadSettings, RegulatorSettings, RowSource,
    SimSettings, Summary, defend_home, simulate,
};
pub use windows::{COLUMNS, WindowSettings, Windows};
