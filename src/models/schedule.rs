//! Perturbation schedules: drawing the noise, and the encodings a schedule leaves the system in.
//!
//! A schedule of `n` windows has `n * slots` rows of [`COLUMNS`]. Noise is drawn from ChaCha20:
//! seeded when the client gives a seed (a reproducible schedule), else seeded from the operating
//! system (a predictable schedule is a broken defense). For `mix`, each window's generation is
//! drawn first; then a key, under which the noise is drawn in blocks of windows, one ChaCha12
//! stream per block ([`NoiseKey`]).

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, ErrorCode, Result},
    traffic::{COLUMNS, FixedRows, npy},
};

/// Which generation serves a request: one, or a fresh random one for every window. Kept in job
/// records as its text (`"3"`, `"mix"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationChoice {
    Index(usize),
    Mix,
}

impl GenerationChoice {
    /// Parses `"3"` or `"mix"` against a model set with `generations` generations.
    pub fn parse(s: &str, generations: usize) -> Result<Self> {
        match Self::from_text(s) {
            Some(choice) => choice.within(generations),
            None => Err(Error::invalid(
                ErrorCode::InvalidGeneration,
                format!("generation {s:?} is neither a whole number (0..={}) nor `mix`", generations - 1),
            )),
        }
    }

    /// This choice, if a model set with `generations` generations has it.
    pub fn within(self, generations: usize) -> Result<Self> {
        match self {
            Self::Index(g) if g >= generations => Err(Error::not_found(
                ErrorCode::UnknownGeneration,
                format!(
                    "generation {g} does not exist: this model set has generations 0..={} and `mix`",
                    generations.saturating_sub(1)
                ),
            )),
            _ => Ok(self),
        }
    }

    fn from_text(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("mix") {
            return Some(Self::Mix);
        }
        s.parse().ok().map(Self::Index)
    }
}

impl Serialize for GenerationChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GenerationChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_text(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is neither a generation index nor `mix`")))
    }
}

impl std::fmt::Display for GenerationChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(g) => write!(f, "{g}"),
            Self::Mix => f.write_str("mix"),
        }
    }
}

/// Windows per noise block. A schedule's noise is cut into blocks of this many windows, each
/// drawn from its own ChaCha12 stream under the schedule's [`NoiseKey`]: the blocks of a large
/// request are drawn on several inference threads at once, and a seed still gives the same
/// schedule on any machine, whatever the engine's thread count and batch size.
pub const NOISE_BLOCK: usize = 256;

/// The key of one schedule's noise, drawn from the request's random stream (ChaCha20, seeded or
/// from the operating system): block `b` of the noise is ChaCha12 under this key, on stream `b`.
/// ChaCha12 is `rand`'s own cryptographically secure generator (StdRng); the noise of a large
/// schedule is millions of values, and 12 rounds instead of 20 cut the time to draw them by a
/// fifth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseKey([u8; 32]);

impl NoiseKey {
    pub fn draw(rng: &mut impl Rng) -> Self {
        Self(rng.random())
    }

    /// The noise vectors of windows `first..first + windows`, row-major (`latent` values per
    /// window); `first` must start a block (a multiple of [`NOISE_BLOCK`]).
    pub fn noise(&self, first: usize, windows: usize, latent: usize) -> Array2<f32> {
        debug_assert_eq!(first % NOISE_BLOCK, 0, "noise is drawn from the start of a block");
        let mut z = Array2::zeros((windows, latent));
        for (b, mut rows) in z.axis_chunks_iter_mut(ndarray::Axis(0), NOISE_BLOCK).enumerate() {
            let mut stream = rand_chacha::ChaCha12Rng::from_seed(self.0);
            stream.set_stream((first / NOISE_BLOCK + b) as u64);
            rows.iter_mut().for_each(|v| *v = stream.sample(StandardNormal));
        }
        z
    }
}

/// The generation of each of `n` windows (for `mix`, one drawn per window), then the key of
/// their noise: what a schedule is drawn from. [`draw`] gives the noise itself.
pub fn plan(n: usize, choice: GenerationChoice, generations: usize, rng: &mut impl Rng) -> (Vec<u8>, NoiseKey) {
    let gens = match choice {
        GenerationChoice::Index(g) => vec![g as u8; n],
        GenerationChoice::Mix => (0..n).map(|_| rng.random_range(0..generations) as u8).collect(),
    };
    (gens, NoiseKey::draw(rng))
}

/// The generation of each of `n` windows and their noise vectors: what the engine computes, in
/// one piece (tests and tools compare the engine against this).
pub fn draw(
    n: usize,
    latent: usize,
    choice: GenerationChoice,
    generations: usize,
    rng: &mut impl Rng,
) -> (Vec<u8>, Array2<f32>) {
    let (gens, key) = plan(n, choice, generations, rng);
    (gens, key.noise(0, n, latent))
}

/// Bytes of the narrowest little-endian unsigned integer holding every value up to `max`: 1, 2
/// or 4. A model set's schedules are kept at the width its caps need (iPET's 4 packets and 100
/// bytes per slot fit one byte; families with larger caps take 2 or 4).
pub fn width_for(max: f64) -> u8 {
    if max <= f64::from(u8::MAX) {
        1
    } else if max <= f64::from(u16::MAX) {
        2
    } else {
        4
    }
}

/// A schedule: per window its generation, and the whole-number rows.
///
/// The rows are held once, in their stored form: row-major `[n * slots, 4]` little-endian
/// unsigned integers of `width` bytes. The generator's output is written straight into this
/// buffer, the job record stores it as it is, and every response encoding is written from it in
/// one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub slots: usize,
    pub generations: Vec<u8>,
    width: u8,
    bytes: Vec<u8>,
}

impl Schedule {
    /// A schedule from its stored parts; refuses a width other than 1, 2, 4 or a length that is
    /// not `generations.len() * slots * 4` values.
    pub fn from_parts(slots: usize, generations: Vec<u8>, width: u8, bytes: Vec<u8>) -> Result<Self> {
        if !matches!(width, 1 | 2 | 4) {
            return Err(Error::Internal(format!("stored schedule has element width {width}")));
        }
        let values = generations.len() * slots * 4;
        if bytes.len() != values * usize::from(width) {
            return Err(Error::Internal(format!(
                "stored schedule holds {} bytes, expected {} windows x {slots} slots x 4 values x {width} bytes",
                bytes.len(),
                generations.len()
            )));
        }
        Ok(Self { slots, generations, width, bytes })
    }

    /// A schedule of these values at the narrowest width that holds them (tests and tools).
    pub fn from_values(slots: usize, generations: Vec<u8>, values: &[u32]) -> Result<Self> {
        let width = width_for(f64::from(values.iter().copied().max().unwrap_or(0)));
        let mut bytes = Vec::with_capacity(values.len() * usize::from(width));
        for &v in values {
            bytes.extend_from_slice(&v.to_le_bytes()[..usize::from(width)]);
        }
        Self::from_parts(slots, generations, width, bytes)
    }

    pub fn windows(&self) -> usize {
        self.generations.len()
    }

    pub fn rows(&self) -> usize {
        self.bytes.len() / usize::from(self.width) / 4
    }

    /// Bytes per value (1, 2 or 4).
    pub fn width(&self) -> u8 {
        self.width
    }

    /// The values as stored: little-endian unsigned integers of [`Schedule::width`] bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every value, in row-major order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        let w = usize::from(self.width);
        self.bytes.chunks_exact(w).map(move |c| match w {
            1 => u32::from(c[0]),
            2 => u32::from(u16::from_le_bytes([c[0], c[1]])),
            _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        })
    }

    pub fn row(&self, r: usize) -> [i32; 4] {
        let mut it = self.values().skip(r * 4);
        std::array::from_fn(|_| it.next().map_or(0, |v| v as i32))
    }

    /// The rows as a fixed row source for the simulator (refuses values past `i32::MAX`).
    pub fn fixed_rows(&self) -> Result<FixedRows> {
        Ok(FixedRows::from_flat(self.values().map(|v| v as i32).collect())?)
    }

    /// Rows as arrays (values beyond `i32::MAX` cannot occur: caps are at most `i32::MAX`).
    pub fn row_arrays(&self) -> Vec<[i32; 4]> {
        let mut out = Vec::with_capacity(self.rows());
        let mut it = self.values();
        while let (Some(a), Some(b), Some(c), Some(d)) = (it.next(), it.next(), it.next(), it.next()) {
            out.push([a as i32, b as i32, c as i32, d as i32]);
        }
        out
    }

    /// A 2-D int32 .npy array of shape [rows, 4]: what the reference `predict.py` wrote (NPY
    /// format 1.0, the header that `numpy.save` and ndarray-npy write).
    pub fn to_npy(&self) -> Vec<u8> {
        self.encode(Encoding::Npy)
    }

    /// The whole schedule in `encoding`, in one buffer (responses are written piece by piece from
    /// [`Schedule::encoding_head`], [`Schedule::encode_rows`] and [`Encoding::tail`] instead).
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        let mut out = self.encoding_head(encoding);
        out.reserve_exact(encoding.max_row_bytes(self.width) * self.rows() + encoding.tail().len());
        self.encode_rows(encoding, 0..self.rows(), &mut out);
        out.extend_from_slice(encoding.tail());
        out
    }

    /// What comes before the rows in `encoding`: the npy header, the CSV header line, or `[`.
    pub fn encoding_head(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Npy => npy::header("<i4", self.rows(), 4),
            Encoding::Csv => format!("{}\n", COLUMNS.join(",")).into_bytes(),
            Encoding::JsonRows => b"[".to_vec(),
        }
    }

    /// Appends rows `rows` in `encoding`, written directly in one pass (a schedule is thousands
    /// of small arrays; serde's generic path was several times slower and dominated the response
    /// time of schedule requests). Between the head and the tail, the pieces of consecutive
    /// ranges make up the whole encoding, so a response can be written piece by piece.
    pub fn encode_rows(&self, encoding: Encoding, rows: std::ops::Range<usize>, out: &mut Vec<u8>) {
        let rows = rows.start.min(self.rows())..rows.end.min(self.rows());
        let w = usize::from(self.width);
        let bytes = &self.bytes[rows.start * 4 * w..rows.end * 4 * w];
        match encoding {
            Encoding::Npy => {
                let start = out.len();
                out.resize(start + bytes.len() / w * 4, 0);
                let body = &mut out[start..];
                match w {
                    1 => {
                        for (dst, &v) in body.chunks_exact_mut(4).zip(bytes) {
                            dst.copy_from_slice(&u32::from(v).to_le_bytes());
                        }
                    }
                    2 => {
                        for (dst, src) in body.chunks_exact_mut(4).zip(bytes.chunks_exact(2)) {
                            dst[..2].copy_from_slice(src);
                        }
                    }
                    _ => body.copy_from_slice(bytes),
                }
            }
            Encoding::Csv => write_rows(bytes, w, out, [b"", b""], b',', b'\n'),
            Encoding::JsonRows => {
                let first: &[u8] = if rows.start == 0 { b"[" } else { b",[" };
                write_rows(bytes, w, out, [first, b",["], b',', b']')
            }
        }
    }
}

/// How a schedule's rows leave the system ([`Schedule::encode_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// int32 `.npy`, shape `[rows, 4]`.
    Npy,
    /// CSV with a header line.
    Csv,
    /// The JSON array of rows.
    JsonRows,
}

impl Encoding {
    /// What comes after the rows.
    pub fn tail(self) -> &'static [u8] {
        match self {
            Self::JsonRows => b"]",
            Self::Npy | Self::Csv => b"",
        }
    }

    /// The most bytes one row of values `width` bytes wide can take.
    fn max_row_bytes(self, width: u8) -> usize {
        let digits = [0, 3, 5, 0, 10][usize::from(width)];
        match self {
            Self::Npy => 16,
            Self::Csv => 4 * digits + 4,
            Self::JsonRows => 4 * digits + 6,
        }
    }
}

/// Every row of `bytes` (values `w` bytes wide) as `open a sep b sep c sep d close`, where the
/// first row opens with `open[0]` and the others with `open[1]` (at most 2 bytes each).
fn write_rows(bytes: &[u8], w: usize, out: &mut Vec<u8>, open: [&[u8]; 2], sep: u8, close: u8) {
    let mut opening = open[0];
    if w == 1 {
        // One-byte values: their digits from a table, each row (at most 18 bytes) assembled in a
        // small buffer with copies of fixed size and appended at once (a copy per digit run and
        // separator was most of the encoding's time).
        let digits = digit_table();
        let mut row = [0u8; 24];
        for r in bytes.chunks_exact(4) {
            let mut at = opening.len().min(2);
            row[..at].copy_from_slice(&opening[..at]);
            opening = open[1];
            for (j, &v) in r.iter().enumerate() {
                let (d, len) = digits[usize::from(v)];
                row[at..at + 3].copy_from_slice(&d);
                at += usize::from(len);
                row[at] = if j < 3 { sep } else { close };
                at += 1;
            }
            out.extend_from_slice(&row[..at]);
        }
        return;
    }
    let mut buf = itoa::Buffer::new();
    for r in bytes.chunks_exact(4 * w) {
        out.extend_from_slice(opening);
        opening = open[1];
        for (j, v) in r.chunks_exact(w).enumerate() {
            if j > 0 {
                out.push(sep);
            }
            let v = v.iter().rev().fold(0u32, |acc, &b| acc << 8 | u32::from(b));
            out.extend_from_slice(buf.format(v).as_bytes());
        }
        out.push(close);
    }
}

/// Decimal digits of 0..=255.
fn digit_table() -> &'static [([u8; 3], u8); 256] {
    static TABLE: std::sync::OnceLock<[([u8; 3], u8); 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|v| {
            let s = v.to_string();
            let mut d = [0u8; 3];
            d[..s.len()].copy_from_slice(s.as_bytes());
            (d, s.len() as u8)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::noise::rng;

    fn sample(values: Vec<u32>) -> Schedule {
        Schedule::from_values(2, vec![0; values.len() / 8], &values).expect("schedule")
    }

    #[test]
    fn values_keep_their_width_and_round_trip_through_their_stored_parts() {
        for (vals, width) in [
            (vec![0, 4, 100, 3, 1, 2, 3, 4], 1),
            (vec![300, 4, 100, 3, 1, 2, 3, 4], 2),
            (vec![70_000, 4, 100, 3, 1, 2, 3, 4], 4),
        ] {
            let s = sample(vals.clone());
            assert_eq!(s.width(), width);
            assert_eq!(s.values().collect::<Vec<_>>(), vals);
            let back = Schedule::from_parts(2, s.generations.clone(), s.width(), s.bytes().to_vec()).expect("parts");
            assert_eq!(back, s);
            assert_eq!(s.row(1), [1, 2, 3, 4]);
            let npy = s.to_npy();
            let arr: ndarray::Array2<i32> = ndarray_npy::ReadNpyExt::read_npy(&npy[..]).expect("read");
            assert_eq!(arr.iter().map(|&v| v as u32).collect::<Vec<_>>(), vals);
            let csv = String::from_utf8(s.encode(Encoding::Csv)).expect("utf8");
            assert_eq!(csv.lines().nth(1), Some(&*format!("{},{},{},{}", vals[0], vals[1], vals[2], vals[3])));
        }
        assert_eq!((width_for(4.0), width_for(255.0), width_for(256.0), width_for(65_536.0)), (1, 1, 2, 4));
    }

    #[test]
    fn pieces_of_consecutive_row_ranges_make_up_the_whole_encoding() {
        for values in [(0..56u32).map(|v| v * 37 % 101).collect::<Vec<_>>(), (0..56).map(|v| v * 997).collect()] {
            let s = sample(values);
            for encoding in [Encoding::Npy, Encoding::Csv, Encoding::JsonRows] {
                let whole = s.encode(encoding);
                for step in [1, 3, 14, 100] {
                    let mut pieces = s.encoding_head(encoding);
                    for start in (0..s.rows()).step_by(step) {
                        s.encode_rows(encoding, start..start + step, &mut pieces);
                    }
                    pieces.extend_from_slice(encoding.tail());
                    assert_eq!(pieces, whole, "{encoding:?} width {} in steps of {step}", s.width());
                }
            }
        }
    }

    #[test]
    fn from_parts_rejects_a_wrong_length_or_width() {
        assert!(Schedule::from_parts(2, vec![0], 1, vec![1, 2, 3]).is_err());
        assert!(Schedule::from_parts(1, vec![0], 3, vec![0; 12]).is_err());
    }

    #[test]
    fn csv_and_npy_name_and_keep_the_columns() {
        let s = sample(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.encode(Encoding::Csv), b"in_packets,in_bytes,out_packets,out_bytes\n1,2,3,4\n5,6,7,8\n");
        assert_eq!(s.encode(Encoding::JsonRows), b"[[1,2,3,4],[5,6,7,8]]");
        let wide = sample(vec![1, 2, 3, 4, 5, 600, 7, 8]);
        assert_eq!(wide.encode(Encoding::JsonRows), b"[[1,2,3,4],[5,600,7,8]]");
        assert_eq!(Schedule::from_values(2, vec![], &[]).expect("empty").encode(Encoding::JsonRows), b"[]");
        let npy = s.to_npy();
        let back: ndarray::Array2<i32> = ndarray_npy::ReadNpyExt::read_npy(&npy[..]).expect("read");
        assert_eq!(back.shape(), &[2, 4]);
        assert_eq!(back[[1, 0]], 5);
    }

    #[test]
    fn generation_choice_parses_and_names_what_exists() {
        assert_eq!(GenerationChoice::parse("mix", 5).expect("mix"), GenerationChoice::Mix);
        assert_eq!(GenerationChoice::parse("4", 5).expect("4"), GenerationChoice::Index(4));
        assert!(GenerationChoice::parse("5", 5).expect_err("5").to_string().contains("0..=4"));
        assert_eq!(GenerationChoice::parse("x", 5).expect_err("x").code(), "invalid_generation");
        // Kept in job records as its text, read back without the model set.
        for (choice, text) in [(GenerationChoice::Index(3), "\"3\""), (GenerationChoice::Mix, "\"mix\"")] {
            assert_eq!(serde_json::to_string(&choice).expect("json"), text);
            assert_eq!(serde_json::from_str::<GenerationChoice>(text).expect("back"), choice);
        }
        assert!(serde_json::from_str::<GenerationChoice>("\"x\"").is_err());
        assert_eq!(GenerationChoice::Index(5).within(5).expect_err("5").code(), "unknown_generation");
        assert_eq!(GenerationChoice::Index(4).within(5).expect("4"), GenerationChoice::Index(4));
    }

    #[test]
    fn the_same_seed_draws_the_same_noise_and_mix_draws_several_generations() {
        let (g1, z1) = draw(200, 20, GenerationChoice::Mix, 5, &mut rng(Some(7)));
        let (g2, z2) = draw(200, 20, GenerationChoice::Mix, 5, &mut rng(Some(7)));
        assert_eq!((g1.clone(), z1.clone()), (g2, z2));
        let (_, z3) = draw(200, 20, GenerationChoice::Mix, 5, &mut rng(None));
        assert_ne!(z1, z3);
        let distinct: std::collections::BTreeSet<u8> = g1.into_iter().collect();
        assert_eq!(distinct.len(), 5);
    }
}
