//! The model sets one process serves: a default set and any others, chosen per request by name,
//! and reloaded from their directories without a restart.
//!
//! A request takes an `Arc` of its set's engine when it starts, so a reload never disturbs it: the
//! new engines answer the requests that start after the swap, and an old engine's inference
//! threads end when its last request lets go of it.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use super::{Engine, EngineConfig, ModelSet};
use crate::error::{Error, ErrorCode, Result};

/// The loaded sets, in the order given; the first is the default.
struct Loaded {
    engines: Vec<Arc<Engine>>,
}

pub struct ModelSets {
    dirs: Vec<PathBuf>,
    config: EngineConfig,
    loaded: RwLock<Arc<Loaded>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

fn load_all(dirs: &[PathBuf], config: &EngineConfig) -> Result<Loaded> {
    let mut engines: Vec<Arc<Engine>> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        // Every error names the set's directory (most already do, with the file at fault).
        let named = |e: Error| {
            let path = dir.display().to_string();
            match e {
                Error::Model(m) if m.contains(&path) => Error::Model(m),
                e => Error::Model(format!("{path}: {e}")),
            }
        };
        let set = ModelSet::load(dir).map_err(named)?;
        if let Some(other) = engines.iter().find(|e| e.model_set().manifest.name == set.manifest.name) {
            return Err(Error::Model(format!(
                "{} and {} are both named {:?}: model sets are chosen by name, so names must differ",
                other.model_set().dir.display(),
                dir.display(),
                set.manifest.name
            )));
        }
        engines.push(Arc::new(Engine::start(set, config).map_err(named)?));
    }
    if engines.is_empty() {
        return Err(Error::Model("no model set to serve".into()));
    }
    Ok(Loaded { engines })
}

impl ModelSets {
    /// Loads and checks every set (blocking: generators are opened and probed).
    pub fn load(dirs: Vec<PathBuf>, config: EngineConfig) -> Result<Self> {
        let loaded = load_all(&dirs, &config)?;
        Ok(Self { dirs, config, loaded: RwLock::new(Arc::new(loaded)), reloading: tokio::sync::Mutex::new(()) })
    }

    /// One already started engine, served as the only set (tests, benchmarks, embedding programs).
    /// Reloading reads its directory again.
    pub fn single(engine: Arc<Engine>) -> Self {
        Self {
            dirs: vec![engine.model_set().dir.clone()],
            config: engine.config().clone(),
            loaded: RwLock::new(Arc::new(Loaded { engines: vec![engine] })),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Already started engines, served together, the first as the default (tests, embedding
    /// programs). Reloading reads their directories again.
    pub fn of(engines: Vec<Arc<Engine>>) -> Result<Self> {
        let first = engines.first().ok_or_else(|| Error::Model("no model set to serve".into()))?;
        Ok(Self {
            dirs: engines.iter().map(|e| e.model_set().dir.clone()).collect(),
            config: first.config().clone(),
            loaded: RwLock::new(Arc::new(Loaded { engines: engines.clone() })),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The default set's engine.
    pub fn default_engine(&self) -> Arc<Engine> {
        self.current().engines[0].clone()
    }

    /// The engine of the set named `name` (its manifest's name), or the default when `None`; a
    /// 404 naming the sets there are otherwise.
    pub fn engine(&self, name: Option<&str>) -> Result<Arc<Engine>> {
        let loaded = self.current();
        let Some(name) = name else { return Ok(loaded.engines[0].clone()) };
        loaded.engines.iter().find(|e| e.model_set().manifest.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = loaded.engines.iter().map(|e| e.model_set().manifest.name.as_str()).collect();
            Error::not_found(
                ErrorCode::UnknownModelSet,
                format!("model set {name:?} is not served; model sets: {}", names.join(", ")),
            )
        })
    }

    /// Every served set's engine, the default first.
    pub fn engines(&self) -> Vec<Arc<Engine>> {
        self.current().engines.clone()
    }

    /// Loads every set again from its directory and swaps them in at once; requests already
    /// running finish on the engines they started with. On any error nothing changes.
    pub async fn reload(self: &Arc<Self>) -> Result<Vec<String>> {
        let _one = self.reloading.lock().await;
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || load_all(&this.dirs, &this.config))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::ModelReload(format!("reloading the model sets failed; the served ones stay: {e}")))?;
        let labels = loaded.engines.iter().map(|e| e.model_set().label()).collect();
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(labels)
    }
}
