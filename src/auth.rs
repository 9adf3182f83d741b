//! Access control: gateways authenticate with bearer tokens, each with a name and scopes.
//!
//! Tokens are configured as SHA-256 hashes (never in clear), one per line of a tokens file or of
//! the `IPET_TOKENS` variable: `<name> <sha256-hex> [scope,scope,...]` (`#` starts a comment).
//! Scopes: `perturbations` (fetch schedules), `simulations` (submit and read simulations),
//! `metrics` (scrape /metrics), `admin` (all of them, and every caller's jobs). Without scopes a
//! token gets `perturbations,simulations`. A caller sees only its own jobs: another's are 404.
//!
//! With no token configured every caller is `anonymous` with every scope, and the service
//! refuses to listen beyond loopback unless told to (`--allow-unauthenticated`). The HTTP side
//! (the middleware that puts the [`Caller`] on each request) is `crate::http::auth`.

use std::{collections::HashMap, num::NonZeroU32, path::Path, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Perturbations,
    Simulations,
    Metrics,
    Admin,
}

impl Scope {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "perturbations" => Some(Scope::Perturbations),
            "simulations" => Some(Scope::Simulations),
            "metrics" => Some(Scope::Metrics),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scope::Perturbations => "perturbations",
            Scope::Simulations => "simulations",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

/// Who is calling: a token's name and scopes, or `anonymous` when no token is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self { name: "anonymous".into(), scopes: vec![Scope::Admin] }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("token {:?} does not have the `{}` scope", self.name, scope.name())))
        }
    }

    /// Whose jobs this caller may see: None for every caller's (admin).
    pub fn owner_filter(&self) -> Option<&str> {
        (!self.scopes.contains(&Scope::Admin)).then_some(self.name.as_str())
    }
}

/// The configured tokens (by hash) and the per-caller rate limiter.
#[derive(Clone)]
pub struct Auth {
    tokens: Arc<HashMap<[u8; 32], Caller>>,
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

impl Auth {
    /// Parses token lines; `requests_per_minute` 0 disables the rate limit.
    pub fn new(lines: &str, requests_per_minute: u32) -> Result<Self> {
        let bad = |n: usize, m: String| Error::invalid(ErrorCode::InvalidTokens, format!("token line {n}: {m}"));
        let mut tokens = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, line) in lines.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, hash) = match fields.as_slice() {
                [name, hash] | [name, hash, _] => (*name, *hash),
                _ => return Err(bad(i + 1, "expected `<name> <sha256-hex> [scopes]`".into())),
            };
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hash.trim_start_matches("sha256:"), &mut digest)
                .map_err(|_| bad(i + 1, format!("{hash:?} is not a SHA-256 hash in hex (64 digits)")))?;
            let scopes = match fields.get(2) {
                None => vec![Scope::Perturbations, Scope::Simulations],
                Some(list) => list
                    .split(',')
                    .map(|s| Scope::parse(s.trim()).ok_or_else(|| bad(i + 1, format!("unknown scope {s:?}"))))
                    .collect::<Result<Vec<_>>>()?,
            };
            if !names.insert(name.to_string()) {
                return Err(bad(i + 1, format!("token name {name:?} appears twice")));
            }
            if tokens.insert(digest, Caller { name: name.to_string(), scopes }).is_some() {
                return Err(bad(i + 1, "the same token hash appears twice".into()));
            }
        }
        let limiter = NonZeroU32::new(requests_per_minute).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        Ok(Self { tokens: Arc::new(tokens), limiter })
    }

    /// From the tokens file and/or the tokens variable's text.
    pub fn from_config(file: Option<&Path>, inline: Option<&str>, requests_per_minute: u32) -> Result<Self> {
        let mut text = String::new();
        if let Some(f) = file {
            text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("reading the tokens file {}", f.display()), e))?;
            text.push('\n');
        }
        text.push_str(&inline.unwrap_or("").replace(';', "\n"));
        Self::new(&text, requests_per_minute)
    }

    /// No tokens: every caller is anonymous.
    pub fn open() -> Self {
        Self { tokens: Arc::new(HashMap::new()), limiter: None }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn with_rate_limit(mut self, requests_per_minute: u32) -> Self {
        self.limiter = NonZeroU32::new(requests_per_minute).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        self
    }

    /// The caller an `Authorization` header value names (401 without a valid bearer token), or
    /// `anonymous` when no token is configured.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller> {
        if !self.enabled() {
            return Ok(Caller::anonymous());
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or_else(|| Error::Unauthorized("this route needs `Authorization: Bearer <token>`".into()))?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.tokens.get(&digest).cloned().ok_or_else(|| Error::Unauthorized("the bearer token is not valid".into()))
    }

    /// 429 when the caller is over its rate limit.
    pub fn check_rate(&self, caller: &Caller) -> Result<()> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&caller.name).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            Error::RateLimited {
                message: format!("rate limit of caller {:?} reached", caller.name),
                retry_after: wait.max(Duration::from_secs(1)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_parse_and_name_their_problems() {
        let h = hash_token("s3cret");
        let auth = Auth::new(&format!("# gateways\ngw-1 {h}\nops sha256:{} metrics,admin\n", hash_token("other")), 0)
            .expect("tokens");
        assert!(auth.enabled());
        for (text, needle) in [
            (format!("gw {h} nap"), "unknown scope"),
            ("gw abc".to_string(), "SHA-256"),
            ("gw".to_string(), "expected"),
            (format!("gw {h}\ngw {}", hash_token("x")), "twice"),
        ] {
            let err = Auth::new(&text, 0).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn scopes_and_ownership() {
        let gw = Caller { name: "gw".into(), scopes: vec![Scope::Perturbations] };
        assert!(gw.require(Scope::Perturbations).is_ok());
        assert_eq!(gw.require(Scope::Simulations).expect_err("403").code(), "forbidden");
        assert_eq!(gw.owner_filter(), Some("gw"));
        assert_eq!(Caller::anonymous().owner_filter(), None);
    }
}
