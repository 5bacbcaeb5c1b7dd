//! The server's inference id: `<unix ms>.<token>.<counter>.<pod>` in hex
//! (docs/monitoring.md). Unique across pods (a random process token and
//! the pod's address), and it says when and where it was made, so
//! feedback can tell "expired" from "unknown" and reach the pod that
//! served the inference.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Makes the ids of one process.
#[derive(Debug)]
pub struct IdMaker {
    token: u32,
    counter: AtomicU64,
    /// `0a0000051f90` (IP octets and port, hex) or `local`.
    pod: String,
}

/// What an id says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedId {
    pub unix_ms: u64,
    pub token: u32,
    /// The pod's address, or `None` for `local`.
    pub pod: Option<SocketAddr>,
}

impl IdMaker {
    /// Ids that name `pod` (the pod IP and HTTP port) or `local`.
    pub fn new(pod: Option<SocketAddr>) -> IdMaker {
        IdMaker {
            token: fastrand::u32(..),
            counter: AtomicU64::new(0),
            pod: pod.map(encode_addr).unwrap_or_else(|| "local".into()),
        }
    }

    pub fn token(&self) -> u32 {
        self.token
    }

    /// A new id.
    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:x}.{:08x}.{n:x}.{}", now_ms(), self.token, self.pod)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode_addr(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => hex::encode(v4.octets()),
        IpAddr::V6(v6) => hex::encode(v6.octets()),
    };
    format!("{ip}{:04x}", addr.port())
}

fn decode_addr(s: &str) -> Option<SocketAddr> {
    if s == "local" {
        return None;
    }
    let bytes = hex::decode(s).ok()?;
    let (ip, port) = match bytes.len() {
        6 => (
            IpAddr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?),
            &bytes[4..],
        ),
        18 => (
            IpAddr::from(<[u8; 16]>::try_from(&bytes[..16]).ok()?),
            &bytes[16..],
        ),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
}

/// Reads an id made by [`IdMaker::next`]; `None` when it is not one.
pub fn parse(id: &str) -> Option<ParsedId> {
    let mut parts = id.split('.');
    let (ms, token, counter, pod) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || token.len() != 8 {
        return None;
    }
    u64::from_str_radix(counter, 16).ok()?;
    let pod = match pod {
        "local" => None,
        other => Some(decode_addr(other)?),
    };
    Some(ParsedId {
        unix_ms: u64::from_str_radix(ms, 16).ok()?,
        token: u32::from_str_radix(token, 16).ok()?,
        pod,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_time_token_and_pod() {
        let addr: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        let maker = IdMaker::new(Some(addr));
        let before = now_ms();
        let id = maker.next();
        let parsed = parse(&id).unwrap();
        assert_eq!(parsed.pod, Some(addr));
        assert_eq!(parsed.token, maker.token());
        assert!(parsed.unix_ms >= before && parsed.unix_ms <= now_ms());
        assert!(id.ends_with(".0a0000051f90"), "{id}");
        assert_ne!(maker.next(), maker.next());
    }

    #[test]
    fn ipv6_and_local_ids_parse_and_junk_does_not() {
        let v6: SocketAddr = "[fd00::1]:9000".parse().unwrap();
        assert_eq!(parse(&IdMaker::new(Some(v6)).next()).unwrap().pod, Some(v6));
        assert_eq!(parse(&IdMaker::new(None).next()).unwrap().pod, None);
        for junk in [
            "",
            "abc",
            "1.2.3",
            "1.0000000g.1.local",
            "1.00000001.1.zz",
            "1.00000001.1.local.x",
        ] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}
