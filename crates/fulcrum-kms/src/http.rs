//! A small blocking HTTP/1.1 client for KMS APIs (Vault), over plain TCP on loopback or rustls
//! (aws-lc-rs) with a pinned CA. Signing is synchronous in Fulcrum, and KMS calls are rare
//! (rotation, re-signing on change), so a blocking call on a worker thread is acceptable.
//! Every request has a deadline; bodies are bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 4 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Endpoint {
    tls: Option<Arc<rustls::ClientConfig>>,
    host: String,
    port: u16,
    base_path: String,
}

impl Endpoint {
    /// Parse `http://host:port[/path]` or `https://host:port[/path]` (https needs `ca_pem`).
    ///
    /// # Errors
    /// Bad URLs, https without a CA, unreadable CA PEM.
    pub fn parse(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} is not an http(s) URL"));
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| format!("bad port in {url:?}"))?),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        let tls = if tls {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            let pem = ca_pem.ok_or("https endpoints need a pinned CA certificate")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                roots.add(c.map_err(|e| format!("CA PEM: {e}"))?).map_err(|e| format!("CA: {e}"))?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(cfg))
        } else {
            None
        };
        Ok(Self { tls, host, port, base_path: format!("/{}", path.trim_end_matches('/')).replace("//", "/") })
    }

    /// Send a request; returns (status, body).
    ///
    /// # Errors
    /// Connection, TLS, protocol or size failures.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), String> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(self.host.as_str(), self.port))
            .map_err(|e| format!("resolving {}: {e}", self.host))?
            .next()
            .ok_or("no address")?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
        let full_path = format!("{}{}", self.base_path.trim_end_matches('/'), path);
        let mut req = format!(
            "{method} {full_path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.host
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()));
        let mut raw = Vec::new();
        match &self.tls {
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone()).map_err(|e| e.to_string())?;
                let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                s.write_all(req.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| e.to_string())?;
                read_bounded(&mut s, &mut raw)?;
            }
            None => {
                let mut s = tcp;
                s.write_all(req.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| e.to_string())?;
                read_bounded(&mut s, &mut raw)?;
            }
        }
        parse_response(&raw)
    }
}

fn read_bounded(r: &mut impl Read, out: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_BODY {
                    return Err("response too large".into());
                }
            }
            // A peer that closes TLS without close_notify after a complete response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => return Ok(()),
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("malformed HTTP response")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "malformed HTTP headers")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    let chunked = lines.any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = &raw[split + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest.windows(2).position(|w| w == b"\r\n").ok_or("malformed chunk")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&rest[..nl]).map_err(|_| "bad chunk")?.split(';').next().unwrap_or("").trim(),
            16,
        )
        .map_err(|_| "bad chunk size")?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap(), (200, b"hi".to_vec()));
        assert_eq!(
            parse_response(
                b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            .unwrap(),
            (403, b"abcde".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(Endpoint::parse("https://vault:8200", None).is_err(), "TLS needs a pinned CA");
        assert!(Endpoint::parse("ftp://x", None).is_err());
        let e = Endpoint::parse("http://127.0.0.1:8200/", None).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 8200));
    }
}
