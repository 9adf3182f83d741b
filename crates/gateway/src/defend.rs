//! The defenses, live: each built from the data plane's push-driven step, so that what the
//! simulator predicts and what the gateway does come from one implementation.

use anyhow::{Result, bail};

use crate::{
    config::{Checked, DefenseName, Mode},
    engine::{Engine, PassThrough},
};

pub fn build(cfg: &Checked, _mode: Mode) -> Result<Box<dyn Engine>> {
    match cfg.doc.defense {
        DefenseName::PassThrough => Ok(Box::new(PassThrough)),
        other => bail!("defense: {other:?} is not wired to the data plane's step yet"),
    }
}
