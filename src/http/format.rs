//! Which encoding a response takes: `format=` wins, else the `Accept` header, else JSON.

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{Error, ErrorCode, Result};

pub const NPY: &str = "application/x-npy";
pub const CSV: &str = "text/csv";
pub const JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Npy,
    Csv,
}

impl Format {
    pub fn negotiate(param: Option<&str>, headers: &HeaderMap) -> Result<Self> {
        if let Some(p) = param {
            return match p.to_ascii_lowercase().as_str() {
                "json" => Ok(Format::Json),
                "npy" => Ok(Format::Npy),
                "csv" => Ok(Format::Csv),
                other => Err(Error::invalid(
                    ErrorCode::InvalidFormat,
                    format!("format {other:?} is not one of json, npy, csv"),
                )),
            };
        }
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Ok(Format::Json);
        };
        // First acceptable media type in the order given (q-values are rare in gateway clients).
        for part in accept.split(',') {
            let media = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            match media.as_str() {
                JSON | "application/*" | "*/*" | "" => return Ok(Format::Json),
                NPY | "application/octet-stream" => return Ok(Format::Npy),
                CSV | "text/*" => return Ok(Format::Csv),
                _ => {}
            }
        }
        Err(Error::invalid(
            ErrorCode::NotAcceptable,
            format!("cannot answer Accept: {accept}; this resource is served as {JSON}, {NPY} or {CSV}"),
        ))
    }
}
