//! The `listen` field: the addresses pmi binds once for an app and shares with all its instances.
//!
//! Invariant: a `ListenAddr` is a fixed, bindable address: a TCP port ≥ 1 on every interface or
//! on one IP address, or an absolute-or-relative `unix:` path. Nothing is resolved here (no DNS,
//! no file system); binding is `os::listen`'s job. Every element that does not parse is reported
//! at its own line and column, and all of them at once.

// `parse_listen`/`report` are called by the validator once its hook lands (after the
// validate/ split); until then only the tests call them.
#![cfg_attr(not(test), allow(dead_code))]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;

use super::diag::Diags;
use super::tree::{Node, Pos, Value};

/// Most addresses one app may list: each is an fd in every instance.
pub const MAX_LISTEN: usize = 64;

/// Longest `unix:` path the kernel takes (`sun_path` is 108 bytes, one for the NUL).
const MAX_UNIX_PATH: usize = 107;

/// systemd's limit on one `LISTEN_FDNAMES` name.
const MAX_FDNAME: usize = 255;

/// One address of `listen`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ListenAddr {
    /// A bare `PORT`: every interface, as Node's `listen(port)` (dual-stack where IPv6 exists).
    Any { port: u16 },
    /// `HOST:PORT` or `[V6]:PORT` with an IP address.
    Tcp { addr: SocketAddr },
    /// `unix:PATH`.
    Unix { path: PathBuf },
}

impl ListenAddr {
    /// The TCP port, if this is a TCP address.
    pub fn port(&self) -> Option<u16> {
        match self {
            ListenAddr::Any { port } => Some(*port),
            ListenAddr::Tcp { addr } => Some(addr.port()),
            ListenAddr::Unix { .. } => None,
        }
    }

    /// The name of this socket in `LISTEN_FDNAMES`: the address as written, with systemd's rule
    /// applied (printable ASCII, no `:`, at most 255 bytes): `:` and anything else outside
    /// printable ASCII become `_`. `3000`, `127.0.0.1_3000`, `[__1]_8080`, `unix_/run/app.sock`.
    pub fn fd_name(&self) -> String {
        fd_name(&self.to_string())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Any { port } => write!(f, "{port}"),
            ListenAddr::Tcp { addr } => write!(f, "{addr}"),
            ListenAddr::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// systemd's naming rule for `LISTEN_FDNAMES` (see `ListenAddr::fd_name`).
pub fn fd_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c == ':' || !(' '..='~').contains(&c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    s.truncate(MAX_FDNAME);
    if s.is_empty() {
        s.push_str("listen");
    }
    s
}

/// A problem with one element of `listen`, at that element's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenError {
    pub pos: Pos,
    pub message: String,
}

/// Reads the `listen` field: one address (a port number or a string) or a list of them.
/// Every bad element is an error at its own place; repeated or overlapping addresses too.
pub fn parse_listen(node: &Node) -> Result<Vec<ListenAddr>, Vec<ListenError>> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(v) => v.iter().collect(),
        _ => vec![node],
    };
    let mut errors = Vec::new();
    if items.is_empty() {
        errors.push(err(
            node.pos,
            "is an empty list; give a port (3000) or a list of addresses, or remove the key".into(),
        ));
    }
    if items.len() > MAX_LISTEN {
        errors.push(err(
            node.pos,
            format!(
                "has {} addresses; at most {MAX_LISTEN} are allowed",
                items.len()
            ),
        ));
        return Err(errors);
    }
    let mut out: Vec<(ListenAddr, Pos)> = Vec::new();
    for item in items {
        match one(item) {
            Ok(a) => {
                if let Some((_, first)) = out.iter().find(|(b, _)| overlaps(&a, b)) {
                    errors.push(err(item.pos, format!("{a} overlaps the address at line {}; each address may be bound once (a bare port already covers every interface)", first.line)));
                } else {
                    out.push((a, item.pos));
                }
            }
            Err(m) => errors.push(err(item.pos, m)),
        }
    }
    if errors.is_empty() {
        Ok(out.into_iter().map(|(a, _)| a).collect())
    } else {
        Err(errors)
    }
}

/// `parse_listen`, with its errors recorded in `d` against `app` and `field`: the one-line hook
/// for the validator (`let listen = listen::report(n, &mut self.d, &raw.label, &e.key);`).
pub fn report(node: &Node, d: &mut Diags, app: &str, field: &str) -> Option<Vec<ListenAddr>> {
    match parse_listen(node) {
        Ok(v) => Some(v),
        Err(errs) => {
            for e in errs {
                d.error(e.pos, Some(app), Some(field), e.message);
            }
            None
        }
    }
}

fn err(pos: Pos, message: String) -> ListenError {
    ListenError { pos, message }
}

const HINT: &str = "use a port (3000), HOST:PORT (127.0.0.1:3000), [::]:PORT or unix:/path/to.sock";

fn one(n: &Node) -> Result<ListenAddr, String> {
    let text = match &n.value {
        Value::Num(_) => n.to_env_string(),
        Value::Str(s) => s.trim().to_string(),
        _ => {
            return Err(format!(
                "must be a port or an address, not {}; {HINT}",
                n.kind()
            ))
        }
    };
    parse_text(&text).map_err(|why| format!("{} {why}; {HINT}", n.show()))
}

/// One address as text.
pub fn parse_text(t: &str) -> Result<ListenAddr, String> {
    if let Some(p) = t.strip_prefix("unix:") {
        return unix(p);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
        return port(t).map(|port| ListenAddr::Any { port });
    }
    let Some((host, p)) = t.rsplit_once(':') else {
        return Err("is not an address".into());
    };
    let port = port(p)?;
    let ip: IpAddr = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse()
            .map_err(|_| format!("has {v6:?}, which is not an IPv6 address"))?
    } else if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if host == "*" {
        return Ok(ListenAddr::Any { port });
    } else if host.contains(':') {
        return Err("has an IPv6 address without brackets (write [::1]:3000)".into());
    } else {
        host.parse().map_err(|_| {
            format!("has host {host:?}, which is not an IP address (pmi does not look names up)")
        })?
    };
    Ok(ListenAddr::Tcp {
        addr: SocketAddr::new(ip, port),
    })
}

fn port(p: &str) -> Result<u16, String> {
    match p.parse::<u32>() {
        Ok(0) => Err(
            "has port 0, which would pick a random port for each bind; give a fixed port".into(),
        ),
        Ok(n) if n <= 65535 => Ok(n as u16),
        _ => Err(format!("has port {p:?}, which is not a port (1 to 65535)")),
    }
}

fn unix(p: &str) -> Result<ListenAddr, String> {
    if p.is_empty() {
        return Err("has no path after unix:".into());
    }
    if p.len() > MAX_UNIX_PATH {
        return Err(format!(
            "has a path of {} bytes; Unix socket paths are at most {MAX_UNIX_PATH}",
            p.len()
        ));
    }
    if p.contains('\0') {
        return Err("has a NUL byte in its path".into());
    }
    Ok(ListenAddr::Unix {
        path: PathBuf::from(p),
    })
}

/// Two addresses that cannot both be bound: the same one, or a bare port and a host on it.
fn overlaps(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Any { port: x }, o) | (o, ListenAddr::Any { port: x }) => o.port() == Some(*x),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, v: Value) -> Node {
        Node::new(Pos::new(line, 3), v)
    }
    fn s(line: usize, t: &str) -> Node {
        at(line, Value::Str(t.into()))
    }

    #[test]
    fn every_form_parses() {
        let n = at(
            1,
            Value::Seq(vec![
                at(2, Value::Num(3000.0)),
                s(3, "127.0.0.1:8080"),
                s(4, "[::]:9090"),
                s(5, "[::1]:9091"),
                s(6, "unix:/run/app.sock"),
                s(7, "localhost:7000"),
                s(8, " 4000 "),
            ]),
        );
        let v = parse_listen(&n).unwrap();
        assert_eq!(v[0], ListenAddr::Any { port: 3000 });
        assert_eq!(v[1].to_string(), "127.0.0.1:8080");
        assert_eq!(v[2].to_string(), "[::]:9090");
        assert_eq!(v[3].port(), Some(9091));
        assert_eq!(
            v[4],
            ListenAddr::Unix {
                path: "/run/app.sock".into()
            }
        );
        assert_eq!(v[5].to_string(), "127.0.0.1:7000");
        assert_eq!(v[6], ListenAddr::Any { port: 4000 });
        // A single value is a one-element list.
        assert_eq!(
            parse_listen(&s(1, "3000")).unwrap(),
            vec![ListenAddr::Any { port: 3000 }]
        );
    }

    #[test]
    fn every_bad_element_is_located() {
        let n = at(
            1,
            Value::Seq(vec![
                s(2, "3000"),
                s(3, "70000"),
                s(4, "example.com:80"),
                s(5, "::1:80"),
                s(6, "unix:"),
                at(7, Value::Bool(true)),
                s(8, "0"),
                s(9, "0.0.0.0:3000"),
                s(10, "nonsense"),
                s(11, &format!("unix:/{}", "x".repeat(200))),
            ]),
        );
        let errs = parse_listen(&n).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.pos.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(
            errs[0].message.contains("not a port"),
            "{}",
            errs[0].message
        );
        assert!(errs[1].message.contains("not an IP address"));
        assert!(errs[2].message.contains("brackets"));
        assert!(errs[5].message.contains("random port"));
        assert!(errs[6].message.contains("overlaps the address at line 2"));
        assert!(errs
            .iter()
            .filter(|e| !e.message.contains("overlaps"))
            .all(|e| e.message.contains("unix:/path")));
    }

    #[test]
    fn empty_and_oversized_lists_are_errors() {
        assert!(parse_listen(&at(1, Value::Seq(vec![]))).is_err());
        let many = (1..=65).map(|p| at(1, Value::Num(f64::from(p)))).collect();
        let e = parse_listen(&at(1, Value::Seq(many))).unwrap_err();
        assert!(e[0].message.contains("at most 64"));
    }

    #[test]
    fn fd_names_have_no_colons() {
        let names: Vec<String> = ["3000", "127.0.0.1:80", "[::1]:8080", "unix:/run/a b.sock"]
            .iter()
            .map(|t| parse_text(t).unwrap().fd_name())
            .collect();
        assert_eq!(
            names,
            ["3000", "127.0.0.1_80", "[__1]_8080", "unix_/run/a b.sock"]
        );
        assert_eq!(fd_name("é:\n"), "___");
        assert_eq!(fd_name(&"a".repeat(300)).len(), 255);
        assert!(names.iter().all(|n| !n.contains(':')));
    }

    #[test]
    fn report_records_app_and_field() {
        let mut d = Diags::new(std::path::Path::new("apps.yaml"));
        assert!(report(&s(4, "nope"), &mut d, "api", "listen").is_none());
        let line = d.errors[0].to_string();
        assert!(
            line.starts_with("apps.yaml:4:3: app 'api' field 'listen': \"nope\" is not an address"),
            "{line}"
        );
    }
}
