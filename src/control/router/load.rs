//! `route load FILE [del]`: many routes in one request (a full table, a benchmark's
//! million prefixes). The file is read and every line parsed first: one bad line and
//! nothing is applied. Then the routes are added (or removed) in chunks, the router's
//! lock let go between chunks so that the slow path keeps answering; a route the
//! router refuses midway (a gateway on no subnet, a full table) undoes the ones this
//! load added or changed before it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Origin, Prefix, RouterCtl};
use crate::parse::{self, RouteTarget};

const CHUNK: usize = 10_000;

/// Parses a route file: `PREFIX TARGET` (or `PREFIX=TARGET`) per line, `#` comments.
pub fn parse_file(text: &str, del: bool) -> Result<Vec<(Prefix, Option<RouteTarget>)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let mut w = l.splitn(2, |c: char| c.is_whitespace() || c == '=');
        let p = w.next().unwrap_or("");
        let t = w.next().map(str::trim).filter(|t| !t.is_empty());
        let (addr, len) = parse::parse_prefix(p).map_err(|e| format!("line {}: {e}", n + 1))?;
        let target = match (t, del) {
            (_, true) => None,
            (Some(t), false) => Some(parse::parse_route_arg(&format!("{p}={t}")).map_err(|e| format!("line {}: {e}", n + 1))?.2),
            (None, false) => {
                return Err(format!("line {}: '{l}' has no target: write PREFIX TARGET, e.g. 198.19.0.0/16 via:198.18.1.1", n + 1))
            }
        };
        out.push((Prefix::of(addr, len), target));
    }
    Ok(out)
}

/// Applies route file `path`, whose text the control thread read (`text`).
pub fn load(rc: &Arc<Mutex<RouterCtl>>, path: &str, text: &str, del: bool) -> Result<String, String> {
    let t0 = Instant::now();
    let lines = parse_file(text, del).map_err(|e| format!("{path}: {e}: nothing applied"))?;
    // Undo list: prefix and what it was before (None: it was not there).
    let mut undo: Vec<(Prefix, Option<RouteTarget>)> = Vec::new();
    let mut done = 0usize;
    for chunk in lines.chunks(CHUNK) {
        let mut r = rc.lock().unwrap_or_else(|e| e.into_inner());
        for (p, t) in chunk {
            let before = match r.routes.get(p).map(|x| &x.origin) {
                Some(Origin::Static(t)) => Some(t.clone()),
                _ => None,
            };
            let res = match t {
                Some(t) => r.add_route(*p, t),
                None => r.del_route(*p),
            };
            if let Err(e) = res {
                let n = undo.len();
                for (p, old) in undo.into_iter().rev() {
                    let _ = match old {
                        Some(t) => r.add_route(p, &t),
                        None => r.del_route(p),
                    };
                }
                return Err(format!("{path}: route {} of {}: {e}: the {n} applied before it were undone", done + 1, lines.len()));
            }
            undo.push((*p, before));
            done += 1;
        }
    }
    let r = rc.lock().unwrap_or_else(|e| e.into_inner());
    Ok(format!(
        "{done} routes {} from {path} in {:.2} s ({} IPv4 and {} IPv6 in the FIB, {} MiB of tables)",
        if del { "removed" } else { "added" },
        t0.elapsed().as_secs_f64(),
        r.rt.fib4.len(),
        r.rt.fib6.len(),
        (r.rt.fib4.memory_bytes() + r.rt.fib6.memory_bytes()) >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_names_itself_and_nothing_else_matters() {
        let ok = parse_file("# comment\n198.19.0.0/16 via:198.18.1.1\n\n10.0.0.0/8=blackhole  # trailing\n", false).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].1, Some(RouteTarget::Blackhole));
        let e = parse_file("198.19.0.0/16 via:198.18.1.1\n10.0.0.1/8 blackhole\n", false).unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("host bits"), "{e}");
        let e = parse_file("198.19.0.0/16\n", false).unwrap_err();
        assert!(e.contains("no target"), "{e}");
        assert_eq!(parse_file("198.19.0.0/16\n", true).unwrap().len(), 1);
    }
}
