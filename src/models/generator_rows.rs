//! Rows drawn from a device's generators on demand: a [`RowSource`] for the simulator.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;

use super::{Engine, GenerationChoice};
use crate::{
    error::{Error, ErrorCode, Result},
    traffic::{RowSource, noise},
};

/// Rows drawn from a device's generators on demand: `chunk` windows at a time, each window with
/// fresh noise (and, for `mix`, a fresh random generation), through [`Engine::sample_blocking`].
/// Never runs out. Blocks on inference: call from a blocking thread (`spawn_blocking`), never
/// from an async task.
pub struct GeneratorRows {
    engine: Arc<Engine>,
    device: usize,
    choice: GenerationChoice,
    chunk: usize,
    rng: ChaCha20Rng,
    values: Vec<i32>,
    at: usize,
    windows_drawn: u64,
}

impl GeneratorRows {
    /// `seed`: reproducible noise; None draws the seed from the operating system.
    pub fn new(
        engine: Arc<Engine>,
        device: usize,
        choice: GenerationChoice,
        chunk: usize,
        seed: Option<u64>,
    ) -> Result<Self> {
        let set = engine.model_set();
        if device >= set.files.len() {
            return Err(Error::not_found(
                ErrorCode::UnknownDevice,
                format!("device index {device} is not in the model set"),
            ));
        }
        if let GenerationChoice::Index(g) = choice
            && g >= set.generations()
        {
            return Err(Error::not_found(ErrorCode::UnknownGeneration, format!("generation {g} does not exist")));
        }
        Ok(Self {
            engine,
            device,
            choice,
            chunk: chunk.max(1),
            rng: noise::rng(seed),
            values: Vec::new(),
            at: 0,
            windows_drawn: 0,
        })
    }

    /// Windows drawn from the generators so far.
    pub fn windows_drawn(&self) -> u64 {
        self.windows_drawn
    }
}

impl RowSource for GeneratorRows {
    fn next_row(&mut self) -> crate::traffic::Result<Option<[i32; 4]>> {
        if self.at + 4 > self.values.len() {
            let s = self.engine.sample_blocking(self.device, self.chunk, self.choice, &mut self.rng)?;
            self.windows_drawn += s.windows() as u64;
            self.values = s.values().map(|v| v as i32).collect();
            self.at = 0;
            if self.values.len() < 4 {
                return Err(Error::Internal("the generator returned an empty schedule".into()).into());
            }
        }
        let v = &self.values[self.at..self.at + 4];
        self.at += 4;
        Ok(Some([v[0].max(0), v[1].max(0), v[2].max(0), v[3].max(0)]))
    }
}
