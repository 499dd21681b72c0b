//! Captures in and out of the generator: replaying a pcap or pcapng file (its frames
//! loaded once, checked record by record), and writing what ports receive to a pcapng
//! file from a thread of its own (`--capture`), fed through a bounded queue of recycled
//! buffers so that the receive loop never writes a file or allocates; what the writer
//! cannot keep up with is counted, never waited for.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::DataLink;

use super::frame::{self, Layout, L4};
use super::packet::{FCS, MAX_FRAME, SIG_LEN};
use crate::datapath::wire::{csum, l3};

/// A loaded capture: its frames back to back in one buffer (a sender reads it front to
/// back, which the hardware prefetcher streams; a `Vec` per frame would cost a pointer
/// chase and a cache miss per packet on a large capture), the gap before each frame (ns,
/// the first's 0) and, for frames whose headers this generator understands, their layout
/// (to stamp a signature or let the field engine rewrite addresses).
#[derive(Debug)]
pub struct Replay {
    /// The frames, then `TAIL` zero bytes (a fixed-size copy of a short last frame stays
    /// inside).
    data: Vec<u8>,
    recs: Vec<Rec>,
    /// The distinct layouts the records point to.
    layouts: Vec<Layout>,
    pub gaps_ns: Vec<u64>,
}

/// Where a frame is in `Replay::data`, its length, its layout's index (`NO_LAYOUT`: none).
#[derive(Debug, Clone, Copy)]
pub struct Rec {
    /// Offset in the frame buffer (a capture holds at most [`MAX_BYTES`]): 32 bits keep
    /// a record at 16 bytes, and the table streams from memory on a large capture.
    off: u32,
    len: u16,
    lay: u16,
    /// Where a signature goes (0: no room or headers not understood), and where the L4
    /// checksum is when the frame keeps one (0: none; the top bit: it is UDP's): what a
    /// stamping sender needs without looking at the layout.
    pub sig: u16,
    l4_csum: u16,
    /// With an L4 checksum and a signature: the checksum's complement plus that of the
    /// captured signature words, folded (RFC 1624 eqn. 3 less the new words), so that a
    /// stamping sender adds only its own words.
    pub rest: u16,
}

impl Rec {
    /// The L4 checksum's offset (0: none).
    #[inline(always)]
    pub fn l4_at(self) -> usize {
        usize::from(self.l4_csum & 0x7fff)
    }

    /// Its L4 is UDP (a computed 0 is sent as 0xffff).
    #[inline(always)]
    pub fn l4_udp(self) -> bool {
        self.l4_csum & 0x8000 != 0
    }
}

const NO_LAYOUT: u16 = u16::MAX;
/// The most frame bytes a capture may hold (record offsets are 32-bit).
pub const MAX_BYTES: usize = u32::MAX as usize - TAIL;
/// Zero bytes after the last frame.
pub const TAIL: usize = 128;

impl Replay {
    /// A replay of `frames` with their gaps.
    pub fn new(frames: &[Vec<u8>], gaps_ns: Vec<u64>) -> Replay {
        let mut data = Vec::with_capacity(frames.iter().map(Vec::len).sum::<usize>() + TAIL);
        let (mut recs, mut layouts) = (Vec::with_capacity(frames.len()), Vec::<Layout>::new());
        for f in frames {
            let lay = match layout_of(f) {
                Some(l) => match layouts.iter().position(|x| *x == l) {
                    Some(i) => i as u16,
                    None if layouts.len() < usize::from(NO_LAYOUT) => {
                        layouts.push(l);
                        (layouts.len() - 1) as u16
                    }
                    None => NO_LAYOUT,
                },
                None => NO_LAYOUT,
            };
            let (sig, l4_csum) = match layouts.get(usize::from(lay)) {
                Some(l) if l.sig != usize::MAX => {
                    let udp = l.l4_kind == L4::Udp;
                    (l.sig as u16, if l.l4_checksum { (l.l4 + if udp { 6 } else { 16 }) as u16 | if udp { 0x8000 } else { 0 } } else { 0 })
                }
                _ => (0, 0),
            };
            let (at, s) = (usize::from(l4_csum & 0x7fff), usize::from(sig));
            let rest = match (f.get(at..at + 2), f.get(s..s + SIG_LEN)) {
                (Some(c), Some(old)) if at != 0 && s != 0 => {
                    let c = u16::from_be_bytes([c[0], c[1]]);
                    csum::fold(u64::from(!c) + u64::from(!csum::fold(csum::sum(old, 0))))
                }
                _ => 0,
            };
            assert!(data.len() + f.len() <= MAX_BYTES, "captures are checked against MAX_BYTES when read");
            recs.push(Rec { off: data.len() as u32, len: f.len() as u16, lay, sig, l4_csum, rest });
            data.extend_from_slice(f);
        }
        data.resize(data.len() + TAIL, 0);
        Replay { data, recs, layouts, gaps_ns }
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Frame `i`'s record.
    #[inline(always)]
    pub fn rec(&self, i: usize) -> Rec {
        self.recs[i]
    }

    /// Frame `i`'s bytes.
    pub fn frame(&self, i: usize) -> &[u8] {
        let r = self.recs[i];
        let off = r.off as usize;
        &self.data[off..off + usize::from(r.len)]
    }

    /// Every frame, in order.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        (0..self.len()).map(|i| self.frame(i).to_vec()).collect()
    }

    /// The bytes from a record's frame on (at least `TAIL` of them past its end).
    #[inline(always)]
    pub fn bytes_at(&self, r: Rec) -> &[u8] {
        &self.data[r.off as usize..]
    }

    /// Asks for record `i + 32` (the record table streams from memory too on a large
    /// capture); nothing past the table.
    #[inline(always)]
    pub fn prefetch_rec(&self, i: usize) {
        if let Some(r) = self.recs.get(i + 32) {
            crate::sys::prefetch(r);
        }
    }

    /// Asks for the bytes `ahead` past a record's start (a later frame's: the frames lie
    /// back to back) to be brought into the cache; nothing past the buffer.
    #[inline(always)]
    pub fn prefetch_ahead(&self, r: Rec, ahead: usize) {
        if let Some(b) = self.data.get(r.off as usize + ahead) {
            crate::sys::prefetch(b);
        }
    }

    /// A record's frame length.
    #[inline(always)]
    pub fn rec_len(r: Rec) -> usize {
        usize::from(r.len)
    }

    /// A record's layout, if its headers are understood.
    #[inline(always)]
    pub fn layout(&self, r: Rec) -> Option<Layout> {
        self.layouts.get(usize::from(r.lay)).copied()
    }

    /// The capture's own length (first to last frame), ns.
    pub fn span_ns(&self) -> u64 {
        self.gaps_ns.iter().sum()
    }
}

/// The layout of a frame read from a capture (Ethernet, up to two tags, IPv4 without
/// options or IPv6, UDP or TCP), where a signature fits after the L4 header.
pub fn layout_of(b: &[u8]) -> Option<Layout> {
    let (ids, l3, et) = frame::tags(b)?;
    let mut lay = Layout { vlan_outer: 0, vlan_inner: 0, l3, v6: false, l4: 0, l4_kind: L4::Udp, sig: 0, l4_checksum: false };
    if !ids.is_empty() {
        lay.vlan_outer = 14;
    }
    if ids.len() == 2 {
        lay.vlan_inner = 18;
    }
    lay.l3 = l3;
    let proto = match et {
        0x0800 => {
            let h = l3::parse_ipv4(b.get(l3..)?).ok()?;
            if h.ihl != 20 || h.fragment {
                return None;
            }
            lay.l4 = l3 + 20;
            h.proto
        }
        0x86dd => {
            let h = l3::parse_ipv6(b.get(l3..)?).ok()?;
            lay.v6 = true;
            lay.l4 = l3 + 40;
            h.next
        }
        _ => return None,
    };
    lay.l4_kind = match proto {
        17 => L4::Udp,
        6 => L4::TcpData,
        _ => return None,
    };
    lay.sig = lay.l4 + if proto == 17 { 8 } else { usize::from(*b.get(lay.l4 + 12)? >> 4) * 4 };
    // Keep a UDP/IPv4 checksum of 0 as it was; recompute the others after rewriting.
    let udp_zero = proto == 17 && !lay.v6 && b.get(lay.l4 + 6..lay.l4 + 8) == Some(&[0, 0][..]);
    lay.l4_checksum = !udp_zero;
    (b.len() >= lay.sig + SIG_LEN).then_some(lay).or(Some(Layout { sig: usize::MAX, ..lay }))
}

/// Loads a pcap or pcapng capture of Ethernet frames. Errors name the file and record:
/// a truncated record or file, another link type, a snap length that cut frames, a frame
/// larger than the generator sends (9014 bytes without FCS) or shorter than Ethernet's.
pub fn load(path: &Path) -> Result<Replay, String> {
    let name = path.display();
    let mut f = File::open(path).map_err(|e| format!("{name}: cannot open: {e}"))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).map_err(|_| format!("{name}: too short to be a capture"))?;
    drop(f);
    let f = BufReader::new(File::open(path).map_err(|e| format!("{name}: {e}"))?);
    let mut frames: Vec<(Duration, Vec<u8>)> = Vec::new();
    let check = |n: usize, data: &[u8], orig: u32| -> Result<(), String> {
        if (data.len() as u32) < orig {
            return Err(format!("{name}: record {n}: {} of {orig} bytes captured (snap length): replay needs whole frames", data.len()));
        }
        if data.len() < 14 {
            return Err(format!("{name}: record {n}: {} bytes is shorter than an Ethernet header", data.len()));
        }
        if data.len() > MAX_FRAME - FCS {
            return Err(format!(
                "{name}: record {n}: a frame of {} bytes is larger than the generator sends ({})",
                data.len(),
                MAX_FRAME - FCS
            ));
        }
        Ok(())
    };
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(f).map_err(|e| format!("{name}: not a pcapng file: {e}"))?;
        let mut n = 0;
        // Link types by interface (in the order the section's interface blocks came).
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(b) = r.next_block() {
            let b = b.map_err(|e| format!("{name}: block after record {n}: {e}"))?;
            match b {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(i) => links.push(i.linktype),
                Block::EnhancedPacket(p) => {
                    n += 1;
                    let link = links.get(p.interface_id as usize).copied();
                    if link != Some(DataLink::ETHERNET) {
                        return Err(format!("{name}: record {n}: link type {link:?}: only Ethernet captures replay"));
                    }
                    check(n, &p.data, p.original_len)?;
                    frames.push((p.timestamp, p.data.into_owned()));
                }
                Block::SimplePacket(p) => {
                    n += 1;
                    check(n, &p.data, p.original_len)?;
                    frames.push((frames.last().map_or(Duration::ZERO, |x| x.0), p.data.into_owned()));
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(f).map_err(|e| format!("{name}: neither pcap nor pcapng: {e}"))?;
        let h = r.header();
        if h.datalink != DataLink::ETHERNET {
            return Err(format!("{name}: link type {:?}: only Ethernet captures replay", h.datalink));
        }
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            n += 1;
            let p = p.map_err(|e| format!("{name}: record {n}: {e}"))?;
            check(n, &p.data, p.orig_len)?;
            frames.push((p.timestamp, p.data.into_owned()));
        }
    }
    if frames.is_empty() {
        return Err(format!("{name}: no frames to replay"));
    }
    let total: usize = frames.iter().map(|f| f.1.len()).sum();
    if total > MAX_BYTES {
        return Err(format!("{name}: {total} bytes of frames; a replay holds at most {MAX_BYTES}: split the capture (editcap -c)"));
    }
    let mut gaps = Vec::with_capacity(frames.len());
    let mut prev = frames[0].0;
    for (t, _) in &frames {
        gaps.push(t.saturating_sub(prev).as_nanos() as u64);
        prev = (*t).max(prev);
    }
    let frames: Vec<Vec<u8>> = frames.into_iter().map(|x| x.1).collect();
    Ok(Replay::new(&frames, gaps))
}

/// Frames a receive loop hands to the capture writer.
pub struct Capture {
    queue: ArrayQueue<(u16, u64, Vec<u8>)>,
    free: ArrayQueue<Vec<u8>>,
    /// Capture one frame in `every`, at most `limit` (0: no limit), from `port` (None: all).
    pub every: u64,
    pub limit: u64,
    pub port: Option<u16>,
    seen: AtomicU64,
    taken: AtomicU64,
    /// Frames selected for the capture the writer could not take (queue or buffers full).
    pub dropped: AtomicU64,
    pub written: AtomicU64,
}

impl Capture {
    /// `depth` buffers in flight between the receive loop and the writer.
    pub fn new(depth: usize, every: u64, limit: u64, port: Option<u16>) -> Capture {
        let free = ArrayQueue::new(depth);
        for _ in 0..depth {
            // Small to start (a 64-byte frame fits; 8 MiB for 65 536 of them): a buffer
            // grows the first time a larger frame lands in it, and keeps its size.
            let _ = free.push(Vec::with_capacity(128));
        }
        Capture {
            queue: ArrayQueue::new(depth),
            free,
            every: every.max(1),
            limit,
            port,
            seen: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// The receive loop offers a frame; cheap when it is not taken.
    #[inline]
    pub fn offer(&self, port: u16, tsc: u64, data: &[u8]) {
        if self.port.is_some_and(|p| p != port) {
            return;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if !n.is_multiple_of(self.every) || (self.limit > 0 && self.taken.load(Ordering::Relaxed) >= self.limit) {
            return;
        }
        self.taken.fetch_add(1, Ordering::Relaxed);
        let Some(mut b) = self.free.pop() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        b.clear();
        b.extend_from_slice(data);
        if let Err((_, _, b)) = self.queue.push((port, tsc, b)) {
            let _ = self.free.push(b);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frames selected so far (written, queued or dropped).
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }
}

/// Writes what `cap` queues to `path` as pcapng (one interface per port name, TSC turned
/// into wall-clock time from `(t0 wall, t0 tsc, tsc_hz)`) until `stop`, then drains.
pub fn write(path: &Path, cap: Arc<Capture>, ports: &[String], clock: (Duration, u64, u64), stop: Arc<AtomicBool>) -> Result<u64, String> {
    let f = File::create(path).map_err(|e| format!("--capture {}: {e}", path.display()))?;
    let mut w = PcapNgWriter::new(BufWriter::new(f)).map_err(|e| format!("--capture {}: {e}", path.display()))?;
    for _ in ports {
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535)).map_err(|e| format!("--capture: {e}"))?;
    }
    let (t0, tsc0, hz) = clock;
    let mut n = 0u64;
    loop {
        let mut idle = true;
        while let Some((port, tsc, b)) = cap.queue.pop() {
            idle = false;
            let ns = (tsc.saturating_sub(tsc0) as u128 * 1_000_000_000 / u128::from(hz.max(1))) as u64;
            let epb = EnhancedPacketBlock {
                interface_id: u32::from(port),
                timestamp: t0 + Duration::from_nanos(ns),
                original_len: b.len() as u32,
                data: std::borrow::Cow::Borrowed(&b[..]),
                options: vec![],
            };
            w.write_pcapng_block(epb).map_err(|e| format!("--capture: {e}"))?;
            n += 1;
            cap.written.store(n, Ordering::Relaxed);
            let _ = cap.free.push(b);
        }
        if idle {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    drop(w);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::frame::{self, Shape};
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pmds-pcap-{}-{}", std::process::id(), rand_id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rand_id() -> u64 {
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn write_pcap(p: &Path, frames: &[(u64, Vec<u8>, u32)], link: DataLink) {
        let h = PcapHeader { datalink: link, ..PcapHeader::default() };
        let mut w = PcapWriter::with_header(File::create(p).unwrap(), h).unwrap();
        for (us, b, orig) in frames {
            w.write_packet(&PcapPacket::new(Duration::from_micros(*us), *orig, b)).unwrap();
        }
    }

    #[test]
    fn a_capture_loads_with_its_gaps_and_layouts() {
        let d = dir();
        let a = frame::build(&Shape::default(), 1, 100);
        let b = frame::build(&Shape { l4: L4::TcpData, ..Shape::default() }, 2, 200);
        write_pcap(&d.join("x.pcap"), &[(1000, a.clone(), a.len() as u32), (1500, b.clone(), b.len() as u32)], DataLink::ETHERNET);
        let r = load(&d.join("x.pcap")).unwrap();
        assert_eq!(r.frames(), vec![a.clone(), b]);
        assert_eq!(r.gaps_ns, vec![0, 500_000]);
        assert_eq!(r.layout(r.rec(0)), Some(Layout::of(&Shape::default())));
        assert_eq!(r.layout(r.rec(1)).map(|l| l.l4_kind), Some(L4::TcpData));
        // Captured and written back as pcapng, then read again: the same frames.
        let cap = Arc::new(Capture::new(8, 1, 0, None));
        cap.offer(0, 100, &a);
        cap.offer(1, 200, r.frame(1));
        let stop = Arc::new(AtomicBool::new(true));
        let n = write(&d.join("y.pcapng"), cap.clone(), &["a".into(), "b".into()], (Duration::ZERO, 0, 1_000_000_000), stop).unwrap();
        assert_eq!(n, 2);
        let back = load(&d.join("y.pcapng")).unwrap();
        assert_eq!(back.frames(), r.frames());
        assert_eq!(back.gaps_ns, vec![0, 100]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_captures_name_the_record() {
        let d = dir();
        let f = frame::build(&Shape::default(), 1, 100);
        write_pcap(&d.join("snap.pcap"), &[(0, f.clone(), f.len() as u32), (1, f[..60].to_vec(), f.len() as u32)], DataLink::ETHERNET);
        assert!(load(&d.join("snap.pcap")).unwrap_err().contains("record 2: 60 of 96 bytes captured"));
        write_pcap(&d.join("raw.pcap"), &[(0, f.clone(), f.len() as u32)], DataLink::RAW);
        assert!(load(&d.join("raw.pcap")).unwrap_err().contains("only Ethernet"));
        write_pcap(&d.join("big.pcap"), &[(0, vec![0; 9100], 9100)], DataLink::ETHERNET);
        assert!(load(&d.join("big.pcap")).unwrap_err().contains("record 1: a frame of 9100 bytes"));
        std::fs::write(d.join("junk.pcap"), b"this is not a capture at all").unwrap();
        assert!(load(&d.join("junk.pcap")).unwrap_err().contains("neither pcap nor pcapng"));
        let mut t = std::fs::read(d.join("snap.pcap")).unwrap();
        t.truncate(24 + 16 + 50);
        std::fs::write(d.join("cut.pcap"), &t).unwrap();
        assert!(load(&d.join("cut.pcap")).unwrap_err().contains("record 1"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_writer_takes_what_it_can_and_counts_the_rest() {
        let cap = Capture::new(2, 2, 3, Some(1));
        for i in 0..10u64 {
            cap.offer(if i == 4 { 0 } else { 1 }, i, &[1, 2, 3]);
        }
        // Port 1 only, one in two, at most three: three taken, one of them dropped (two buffers).
        assert_eq!(cap.taken(), 3);
        assert_eq!(cap.dropped.load(Ordering::Relaxed), 1);
    }
}
