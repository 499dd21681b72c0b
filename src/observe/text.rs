//! Text tables for `pmdswitch ctl`, made from the JSON answers (so the two never show
//! different numbers).

use serde_json::Value;

/// `show ports|workers|rxqs|stats`: the counters of a `show ... --json` answer as a table.
pub fn counters(v: &Value) -> String {
    let mut o = String::new();
    if let Some(ports) = v["ports"].as_object() {
        o.push_str(&format!("{:<12} {:<13} {:>14} {:>14} {:>10}\n", "port", "kind", "rx pkts", "tx pkts", "drops"));
        for (name, p) in ports {
            let drops: u64 = p["drops"].as_object().map(|d| d.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
            o.push_str(&format!(
                "{:<12} {:<13} {:>14} {:>14} {:>10}\n",
                name,
                p["kind"].as_str().unwrap_or(""),
                p["rx_packets"].as_u64().unwrap_or(0),
                p["tx_packets"].as_u64().unwrap_or(0),
                drops
            ));
        }
    }
    if let Some(qs) = v["rxqs"].as_array() {
        o.push_str(&format!("{:<12} {:>5} {:>5} {:>14} {:>12}\n", "rxq port", "queue", "core", "packets", "cycles/pkt"));
        for q in qs {
            o.push_str(&format!(
                "{:<12} {:>5} {:>5} {:>14} {:>12.1}\n",
                q["port"].as_str().unwrap_or(""),
                q["queue"].as_u64().unwrap_or(0),
                q["core"].as_u64().map_or("-".to_string(), |c| c.to_string()),
                q["packets"].as_u64().unwrap_or(0),
                q["cycles_per_packet"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    if let Some(ws) = v["workers"].as_array() {
        for w in ws {
            o.push_str(&format!(
                "worker core {:<3} idle {:<8} packets {:>14} {:>7.1} cycles/pkt  sleeps {}\n",
                w["core"],
                w["idle_mode"].as_str().unwrap_or(""),
                w["packets"].as_u64().unwrap_or(0),
                w["cycles_per_packet"].as_f64().unwrap_or(0.0),
                w["sleeps"].as_u64().unwrap_or(0)
            ));
        }
    }
    o
}

/// `show bridges`: members and MAC table counters per bridge.
pub fn bridges(v: &Value) -> String {
    let mut o = String::new();
    for (name, b) in v.as_object().into_iter().flatten() {
        let ports: Vec<String> = b["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}({})", p["port"].as_str().unwrap_or(""), p["vlan"].as_str().unwrap_or("")))
            .collect();
        let t = &b["mac_table"];
        o.push_str(&format!(
            "bridge {name}: ports {}\n  macs {} (static {}) of {}, aging {} s; learned {} moves {} aged {} full {} learn_dropped {}\n",
            ports.join(" "),
            t["entries"],
            t["statics"],
            t["capacity"],
            t["aging_ms"].as_u64().unwrap_or(0) / 1000,
            t["learned"],
            t["moves"],
            t["aged"],
            t["full"],
            t["learn_dropped"]
        ));
    }
    if o.is_empty() {
        o.push_str("no bridges\n");
    }
    o
}

/// `show macs BRIDGE`: one line per entry.
pub fn macs(v: &Value) -> String {
    let mut o = format!("{:<5} {:<18} {:<12} {:>8}\n", "vlan", "mac", "port", "age s");
    for e in v.as_array().into_iter().flatten() {
        let age =
            if e["static"] == true { "static".to_string() } else { format!("{:.1}", e["age_ms"].as_u64().unwrap_or(0) as f64 / 1000.0) };
        o.push_str(&format!(
            "{:<5} {:<18} {:<12} {:>8}\n",
            e["vlan"].as_u64().unwrap_or(0),
            e["mac"].as_str().unwrap_or(""),
            e["port"].as_str().unwrap_or(""),
            age
        ));
    }
    o
}
