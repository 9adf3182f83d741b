//! The simulator's input: one device's packets, checked to be in time order.

use crate::{
    error::{Error, ErrorCode, Result},
    packet::Packet,
};

/// The input, checked to be in time order.
pub(crate) struct Input<I> {
    it: I,
    prev: i64,
}

impl<I: Iterator<Item = Packet>> Input<I> {
    pub(crate) fn new(it: I) -> Self {
        Self { it, prev: i64::MIN }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Packet>> {
        match self.it.next() {
            Some(p) if p.time_ns < self.prev => Err(Error::invalid(
                ErrorCode::UnsortedTrace,
                format!("the trace is not in time order: a packet at {} ns follows one at {} ns", p.time_ns, self.prev),
            )),
            Some(p) => {
                self.prev = p.time_ns;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }
}
