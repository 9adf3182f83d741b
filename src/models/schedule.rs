//! Perturbation schedules: drawing the noise, and the encodings a schedule leaves the system in.
//!
//! A schedule of `n` windows has `n * slots` rows of [`COLUMNS`]. Noise is drawn from ChaCha20:
//! seeded when the client gives a seed (a reproducible schedule), else seeded from the operating
//! system (a predictable schedule is a broken defense). For `mix`, each window's generation is
//! drawn first, then the noise matrix row by row.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    traffic::COLUMNS,
};

/// Which generation serves a request: one, or a fresh random one for every window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenerationChoice {
    Index(usize),
    Mix,
}

impl GenerationChoice {
    /// Parses `"3"` or `"mix"` against a model set with `generations` generations.
    pub fn parse(s: &str, generations: usize) -> Result<Self> {
        if s.eq_ignore_ascii_case("mix") {
            return Ok(Self::Mix);
        }
        match s.parse::<usize>() {
            Ok(g) if g < generations => Ok(Self::Index(g)),
            Ok(g) => Err(Error::not_found(
                "unknown_generation",
                format!(
                    "generation {g} does not exist: this model set has generations 0..={} and `mix`",
                    generations - 1
                ),
            )),
            Err(_) => Err(Error::invalid(
                "invalid_generation",
                format!("generation {s:?} is neither a whole number (0..={}) nor `mix`", generations - 1),
            )),
        }
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

/// A noise source: seeded, or from the operating system.
pub fn rng(seed: Option<u64>) -> ChaCha20Rng {
    match seed {
        Some(s) => ChaCha20Rng::seed_from_u64(s),
        None => ChaCha20Rng::from_os_rng(),
    }
}

/// The generation of each of `n` windows and their noise vectors.
pub fn draw(
    n: usize,
    latent: usize,
    choice: GenerationChoice,
    generations: usize,
    rng: &mut impl Rng,
) -> (Vec<u8>, Array2<f32>) {
    let gens = match choice {
        GenerationChoice::Index(g) => vec![g as u8; n],
        GenerationChoice::Mix => (0..n).map(|_| rng.random_range(0..generations) as u8).collect(),
    };
    let z = Array2::from_shape_simple_fn((n, latent), || rng.sample::<f32, _>(StandardNormal));
    (gens, z)
}

/// A schedule: per window its generation, and the whole-number rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub slots: usize,
    pub generations: Vec<u8>,
    /// Row-major [n * slots, 4].
    pub values: Vec<i32>,
}

impl Schedule {
    pub fn windows(&self) -> usize {
        self.generations.len()
    }

    pub fn rows(&self) -> usize {
        self.values.len() / 4
    }

    pub fn row(&self, r: usize) -> [i32; 4] {
        let v = &self.values[r * 4..r * 4 + 4];
        [v[0], v[1], v[2], v[3]]
    }

    /// Compact storage: little-endian unsigned integers of the narrowest width holding every
    /// value (1, 2 or 4 bytes). Returns (width, bytes).
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let max = self.values.iter().copied().max().unwrap_or(0);
        if max <= i32::from(u8::MAX) {
            (1, self.values.iter().map(|&v| v as u8).collect())
        } else if max <= i32::from(u16::MAX) {
            (2, self.values.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect())
        } else {
            (4, self.values.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect())
        }
    }

    pub fn decode(slots: usize, generations: Vec<u8>, width: u8, bytes: &[u8]) -> Result<Self> {
        let values: Vec<i32> = match width {
            1 => bytes.iter().map(|&b| i32::from(b)).collect(),
            2 => bytes.chunks_exact(2).map(|c| i32::from(u16::from_le_bytes([c[0], c[1]]))).collect(),
            4 => bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i32).collect(),
            _ => return Err(Error::Internal(format!("stored schedule has element width {width}"))),
        };
        if values.len() != generations.len() * slots * 4 {
            return Err(Error::Internal(format!(
                "stored schedule holds {} values, expected {} windows x {slots} slots x 4",
                values.len(),
                generations.len()
            )));
        }
        Ok(Self { slots, generations, values })
    }

    /// A 2-D int32 .npy array of shape [rows, 4]: what the reference `predict.py` wrote.
    pub fn to_npy(&self) -> Result<Vec<u8>> {
        let arr = ndarray::ArrayView2::from_shape((self.rows(), 4), &self.values)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut out = Vec::with_capacity(self.values.len() * 4 + 128);
        ndarray_npy::WriteNpyExt::write_npy(&arr, &mut out).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(out)
    }

    /// CSV with a header naming the columns.
    pub fn to_csv(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.values.len() * 4 + 64);
        out.push_str(&COLUMNS.join(","));
        out.push('\n');
        for r in self.values.chunks_exact(4) {
            let _ = writeln!(out, "{},{},{},{}", r[0], r[1], r[2], r[3]);
        }
        out
    }

    /// Rows as `[[in_packets, in_bytes, out_packets, out_bytes], ...]`.
    pub fn row_arrays(&self) -> Vec<[i32; 4]> {
        self.values.chunks_exact(4).map(|r| [r[0], r[1], r[2], r[3]]).collect()
    }

    /// Rows as the JSON text `[[in_packets, in_bytes, out_packets, out_bytes], ...]`, written
    /// directly (a schedule is thousands of small arrays; serde's generic path is several times
    /// slower and dominated the response time of schedule requests).
    pub fn rows_json(&self) -> String {
        let mut out = String::with_capacity(self.values.len() * 4 + 2);
        let mut buf = itoa::Buffer::new();
        out.push('[');
        for (i, r) in self.values.chunks_exact(4).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            for (j, v) in r.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str(buf.format(*v));
            }
            out.push(']');
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: Vec<i32>) -> Schedule {
        Schedule { slots: 2, generations: vec![0; values.len() / 8], values }
    }

    #[test]
    fn encoding_round_trips_at_every_width() {
        for (vals, width) in [
            (vec![0, 4, 100, 3, 1, 2, 3, 4], 1),
            (vec![300, 4, 100, 3, 1, 2, 3, 4], 2),
            (vec![70_000, 4, 100, 3, 1, 2, 3, 4], 4),
        ] {
            let s = sample(vals);
            let (w, bytes) = s.encode();
            assert_eq!(w, width);
            assert_eq!(Schedule::decode(2, s.generations.clone(), w, &bytes).expect("decode"), s);
        }
    }

    #[test]
    fn decode_rejects_a_wrong_length() {
        assert!(Schedule::decode(2, vec![0], 1, &[1, 2, 3]).is_err());
    }

    #[test]
    fn csv_and_npy_name_and_keep_the_columns() {
        let s = sample(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.to_csv(), "in_packets,in_bytes,out_packets,out_bytes\n1,2,3,4\n5,6,7,8\n");
        assert_eq!(s.rows_json(), "[[1,2,3,4],[5,6,7,8]]");
        let npy = s.to_npy().expect("npy");
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
