//! Per-port VLAN policy, as a bridge port's 802.1Q parameters reduced to the two modes
//! virtual switches offer (OVS `vlan_mode=access|trunk`, a VPP bridge domain with tag
//! rewrite):
//!
//! - **access** `VID`: the port is an untagged member of one VLAN (its PVID). Frames
//!   arrive and leave untagged.
//! - **trunk** `LIST`: the port carries the listed VLANs tagged, and optionally one
//!   *native* VLAN untagged.
//!
//! # Syntax (`--vlan PORT=MODE`, or a config file string)
//!
//! ```text
//! MODE  := access:VID                      VID 0-4094
//!        | trunk:ITEM[,ITEM...]            ITEM := VID | VID-VID | all | native=VID
//! ```
//!
//! e.g. `access:10`, `trunk:10,20-30`, `trunk:all,native=1`. Tagged VIDs are 1-4094;
//! `all` is 1-4094; `native` is 0-4094. The separator is a comma, not `;`, so a value
//! needs no shell quoting.
//!
//! # VLAN 0: the default, untagged domain
//!
//! A port with no VLAN configuration is `access:0`. VLAN 0 is not an 802.1Q VID (VID 0
//! is the null VID of a priority tag, §9.6 Table 9-2); here it names the bridge's
//! untagged domain, so a bridge of unconfigured ports behaves as a VLAN-unaware bridge
//! for untagged traffic. Tagged frames (VID ≠ 0) arriving on such a port are dropped
//! (`tagged_on_access`): an unconfigured port cannot inject into, or leak out of, a
//! configured VLAN. (OVS treats an unconfigured port as a trunk of every VLAN instead;
//! `trunk:all,native=0` asks for that here.) VLAN 0 is never sent tagged.
//!
//! # Classification
//!
//! Untagged and priority-tagged (VID 0) frames take the port's PVID (§6.9): the access
//! VLAN, or the trunk's native VLAN. An access port accepts only those, plus frames
//! already tagged with its own VID (802.1Q's "admit only untagged and priority-tagged"
//! would drop those; accepting them cannot leave the VLAN); a trunk without a native
//! VLAN admits only tagged frames. Ingress filtering (§8.6.2) drops a tagged frame whose
//! VLAN the port is not a member of. On egress (§8.6.4) a port sends a VLAN's frames
//! only if it is a member, untagged for the access or native VLAN (the port is in that
//! VLAN's untagged set, §8.8.2), tagged otherwise.
//!
//! Only C-VLAN tags (TPID 0x8100) are recognised. An 802.1ad S-tag (0x88A8) is payload
//! to this bridge: such a frame is classified as untagged and keeps its S-tag.

use std::fmt;

/// Highest VID that may be configured or sent (4095 is reserved, §9.6 Table 9-2).
pub const VID_MAX: u16 = 4094;

/// The C-VLAN tag protocol identifier.
pub const TPID: u16 = 0x8100;

/// Bytes a tag adds to a frame.
pub const TAG_LEN: usize = 4;

/// Destination + source MAC: the bytes before the tag.
const MACS_LEN: usize = 12;

/// A set of VLAN IDs, one bit each (4096 bits, 512 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl Default for VlanSet {
    fn default() -> VlanSet {
        VlanSet::new()
    }
}

impl VlanSet {
    /// The empty set.
    pub const fn new() -> VlanSet {
        VlanSet([0; 64])
    }

    /// VIDs 1-4094.
    pub fn all() -> VlanSet {
        let mut s = VlanSet::new();
        for v in 1..=VID_MAX {
            s.insert(v);
        }
        s
    }

    #[inline]
    pub fn contains(&self, vid: u16) -> bool {
        self.0.get(usize::from(vid) >> 6).is_some_and(|w| w >> (vid & 63) & 1 != 0)
    }

    /// Adds a taggable VID (1-4094); returns false (and adds nothing) for any other.
    pub fn insert(&mut self, vid: u16) -> bool {
        if vid == 0 || vid > VID_MAX {
            return false;
        }
        self.0[usize::from(vid) >> 6] |= 1 << (vid & 63);
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The VIDs in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=4095u16).filter(move |&v| self.contains(v))
    }
}

/// `10,20-30`: ranges collapsed, increasing; empty for the empty set.
impl fmt::Display for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut it = self.iter().peekable();
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&(hi + 1)) {
                hi = it.next().unwrap_or(hi);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VlanSet({self})")
    }
}

fn parse_vid(s: &str, min: u16) -> Result<u16, String> {
    let s = s.trim();
    match s.parse::<u16>() {
        Ok(v) if (min..=VID_MAX).contains(&v) => Ok(v),
        Ok(_) => Err(format!("VLAN {s} out of range {min}-{VID_MAX}")),
        Err(_) if s.is_empty() => Err("empty VLAN ID".to_string()),
        Err(_) => Err(format!("'{s}' is not a VLAN ID")),
    }
}

/// Adds one list item (`VID`, `LO-HI` or `all`) to `set`.
fn add_item(set: &mut VlanSet, item: &str) -> Result<(), String> {
    let item = item.trim();
    if item == "all" {
        *set = VlanSet::all();
        return Ok(());
    }
    let (lo, hi) = match item.split_once('-') {
        Some((a, b)) => (parse_vid(a, 1)?, parse_vid(b, 1)?),
        None => {
            let v = parse_vid(item, 1)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(format!("range {item} runs backwards"));
    }
    for v in lo..=hi {
        set.insert(v);
    }
    Ok(())
}

/// Parses a VLAN list: comma-separated `VID`, `LO-HI` or `all`, VIDs 1-4094
/// (e.g. `10,20,100-199`).
///
/// # Errors
/// One line naming the input and what is wrong with it.
#[cfg(test)]
pub fn parse_vlan_set(s: &str) -> Result<VlanSet, String> {
    let mut set = VlanSet::new();
    if s.trim().is_empty() {
        return Err(format!("bad VLAN list '{s}': empty"));
    }
    for item in s.split(',') {
        add_item(&mut set, item).map_err(|e| format!("bad VLAN list '{s}': {e}"))?;
    }
    Ok(set)
}

/// A port's VLAN mode (module doc).
// The trunk's 512-byte bitmap stays inline: a port's mode is built once and read per
// packet, and a Box would add a pointer chase to every trunk lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged member of one VLAN (0: the untagged domain).
    Access(u16),
    /// Tagged member of `allowed`; untagged member of `native`, if any.
    Trunk { allowed: VlanSet, native: Option<u16> },
}

/// `access:0`: see the module doc.
impl Default for VlanMode {
    fn default() -> VlanMode {
        VlanMode::Access(0)
    }
}

const MODE_FORMS: &str = "expected access:VID or trunk:VIDS[,native=VID], e.g. access:10, trunk:10,20-30,native=1";

impl VlanMode {
    /// Parses `access:VID` or `trunk:ITEM,...` (module doc).
    ///
    /// # Errors
    /// One line naming the input and what is wrong with it.
    pub fn parse(s: &str) -> Result<VlanMode, String> {
        let bad = |why: &str| format!("bad VLAN mode '{s}': {why}");
        let (kind, rest) = s.split_once(':').ok_or_else(|| bad(MODE_FORMS))?;
        match kind.trim() {
            "access" => Ok(VlanMode::Access(parse_vid(rest, 0).map_err(|e| bad(&e))?)),
            "trunk" => {
                let mut allowed = VlanSet::new();
                let mut native = None;
                for item in rest.split(',') {
                    match item.trim().strip_prefix("native=") {
                        Some(v) => {
                            if native.is_some() {
                                return Err(bad("native given twice"));
                            }
                            native = Some(parse_vid(v, 0).map_err(|e| bad(&e))?);
                        }
                        None => add_item(&mut allowed, item).map_err(|e| bad(&e))?,
                    }
                }
                Ok(VlanMode::Trunk { allowed, native })
            }
            _ => Err(bad(MODE_FORMS)),
        }
    }
}

impl std::str::FromStr for VlanMode {
    type Err = String;
    fn from_str(s: &str) -> Result<VlanMode, String> {
        VlanMode::parse(s)
    }
}

/// The syntax [`VlanMode::parse`] reads.
impl fmt::Display for VlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VlanMode::Access(v) => write!(f, "access:{v}"),
            VlanMode::Trunk { allowed, native } => {
                write!(f, "trunk:{allowed}")?;
                match native {
                    Some(n) if allowed.is_empty() => write!(f, "native={n}"),
                    Some(n) => write!(f, ",native={n}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Why ingress classification dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanDrop {
    /// A tagged frame (VID ≠ 0) with another VID on an access port.
    TaggedOnAccess,
    /// A tagged frame whose VLAN the trunk does not carry (ingress filtering, §8.6.2).
    NotAllowed,
    /// An untagged or priority-tagged frame on a trunk without a native VLAN.
    UntaggedOnTrunk,
}

/// The VLAN a frame received on a `mode` port belongs to. `tag` is the VID of the
/// frame's 0x8100 tag ([`vlan_tag`]), `None` if untagged; `Some(0)` (priority-tagged)
/// counts as untagged (§9.6 Table 9-2, §6.9).
#[inline]
pub fn ingress(mode: &VlanMode, tag: Option<u16>) -> Result<u16, VlanDrop> {
    let vid = match tag {
        Some(v) if v & 0x0fff != 0 => Some(v & 0x0fff),
        _ => None,
    };
    match mode {
        VlanMode::Access(pvid) => match vid {
            None => Ok(*pvid),
            Some(v) if v == *pvid => Ok(v),
            Some(_) => Err(VlanDrop::TaggedOnAccess),
        },
        VlanMode::Trunk { allowed, native } => match vid {
            None => native.ok_or(VlanDrop::UntaggedOnTrunk),
            // A trunk also accepts its native VLAN tagged: the port is a member of it.
            Some(v) if allowed.contains(v) || *native == Some(v) => Ok(v),
            Some(_) => Err(VlanDrop::NotAllowed),
        },
    }
}

/// How a frame of `vlan` leaves a `mode` port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    Untagged,
    Tagged(u16),
    /// The port is not a member of the VLAN: do not send (egress filtering, §8.6.4).
    Skip,
}

/// Egress decision for a frame of `vlan` on a `mode` port.
#[inline]
pub fn egress(mode: &VlanMode, vlan: u16) -> Egress {
    match mode {
        VlanMode::Access(pvid) if *pvid == vlan => Egress::Untagged,
        VlanMode::Access(_) => Egress::Skip,
        VlanMode::Trunk { native, .. } if *native == Some(vlan) => Egress::Untagged,
        // VLAN 0 is never in `allowed` (VlanSet refuses it), so it is never sent tagged.
        VlanMode::Trunk { allowed, .. } if allowed.contains(vlan) => Egress::Tagged(vlan),
        VlanMode::Trunk { .. } => Egress::Skip,
    }
}

/// The change a frame needs between ingress and egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagEdit {
    /// Send as received.
    None,
    /// Insert a tag with this VID (PCP 0, DEI 0) after the MAC addresses.
    Push(u16),
    /// Remove the tag.
    Pop,
    /// Replace the tag's VID, keeping PCP and DEI.
    Rewrite(u16),
}

/// The edit for a frame that arrived with tag `ingress_tag` (the VID of its 0x8100 tag,
/// `Some(0)` for a priority tag, `None` if it had none) and leaves as `out`; `None` for
/// [`Egress::Skip`] (do not send).
#[inline]
pub fn tag_edit(ingress_tag: Option<u16>, out: Egress) -> Option<TagEdit> {
    Some(match (ingress_tag, out) {
        (_, Egress::Skip) => return None,
        (None, Egress::Untagged) => TagEdit::None,
        (None, Egress::Tagged(v)) => TagEdit::Push(v),
        (Some(_), Egress::Untagged) => TagEdit::Pop,
        (Some(t), Egress::Tagged(v)) if t & 0x0fff == v => TagEdit::None,
        (Some(_), Egress::Tagged(v)) => TagEdit::Rewrite(v),
    })
}

/// The VID of `frame`'s 802.1Q tag, if its ethertype (bytes 12..14) is 0x8100 and the
/// tag is complete; `Some(0)` for a priority tag.
#[inline]
pub fn vlan_tag(frame: &[u8]) -> Option<u16> {
    match frame.get(MACS_LEN..MACS_LEN + TAG_LEN) {
        Some(&[0x81, 0x00, hi, lo]) => Some(u16::from_be_bytes([hi, lo]) & 0x0fff),
        _ => None,
    }
}

/// Why a tag edit could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the MAC addresses (and tag) the edit needs.
    TooShort,
    /// Pop or rewrite of a frame without a 0x8100 tag.
    NoTag,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::TooShort => "frame too short for a VLAN tag edit",
            FrameError::NoTag => "frame has no 802.1Q tag",
        })
    }
}

/// Push, in place: `buf` is [`TAG_LEN`] bytes of headroom followed by the frame (e.g.
/// what an mbuf prepend exposes). Moves the MAC addresses to the front and writes the
/// tag after them; the tagged frame then starts at `buf[0]`.
///
/// # Errors
/// [`FrameError::TooShort`] if the frame lacks its MAC addresses; `buf` is unchanged.
pub fn push_in_place(buf: &mut [u8], vid: u16) -> Result<(), FrameError> {
    if buf.len() < TAG_LEN + MACS_LEN {
        return Err(FrameError::TooShort);
    }
    buf.copy_within(TAG_LEN..TAG_LEN + MACS_LEN, 0);
    buf[MACS_LEN..MACS_LEN + 2].copy_from_slice(&TPID.to_be_bytes());
    buf[MACS_LEN + 2..MACS_LEN + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    Ok(())
}

/// Pop, in place: moves the MAC addresses over the tag; the untagged frame then starts
/// at `frame[TAG_LEN..]` (e.g. an mbuf adj of [`TAG_LEN`]).
///
/// # Errors
/// [`FrameError::NoTag`] if `frame` has no complete 0x8100 tag; `frame` is unchanged.
pub fn pop_in_place(frame: &mut [u8]) -> Result<(), FrameError> {
    vlan_tag(frame).ok_or(FrameError::NoTag)?;
    frame.copy_within(0..MACS_LEN, TAG_LEN);
    Ok(())
}

/// Rewrite, in place: sets the tag's VID, keeping PCP and DEI.
///
/// # Errors
/// [`FrameError::NoTag`] if `frame` has no complete 0x8100 tag.
pub fn rewrite_in_place(frame: &mut [u8], vid: u16) -> Result<(), FrameError> {
    vlan_tag(frame).ok_or(FrameError::NoTag)?;
    let tci = u16::from_be_bytes([frame[MACS_LEN + 2], frame[MACS_LEN + 3]]);
    let tci = (tci & 0xf000) | (vid & 0x0fff);
    frame[MACS_LEN + 2..MACS_LEN + 4].copy_from_slice(&tci.to_be_bytes());
    Ok(())
}

/// The front of a frame after `edit`, for a copy that applies it on the way (the own
/// vhost path): the new first bytes (`head[..n]`) and how many of the old frame's first
/// bytes they replace (`cut`), from the frame's first 16 bytes `first` (a frame of `len`
/// bytes). None when the edit does not apply (pop or rewrite of an untagged frame, a
/// frame shorter than its addresses).
#[inline(always)]
pub fn edited_head(first: &[u8; 16], len: usize, edit: TagEdit) -> Option<([u8; 16], usize, u32)> {
    let mut head = [0u8; 16];
    head[..MACS_LEN].copy_from_slice(&first[..MACS_LEN]);
    let tagged = len >= MACS_LEN + TAG_LEN && first[MACS_LEN..MACS_LEN + 2] == TPID.to_be_bytes();
    match edit {
        TagEdit::None => Some((head, 0, 0)),
        _ if len < MACS_LEN => None,
        TagEdit::Push(vid) => {
            head[MACS_LEN..MACS_LEN + 2].copy_from_slice(&TPID.to_be_bytes());
            head[MACS_LEN + 2..].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            Some((head, 16, MACS_LEN as u32))
        }
        TagEdit::Pop if tagged => Some((head, MACS_LEN, (MACS_LEN + TAG_LEN) as u32)),
        TagEdit::Rewrite(vid) if tagged => {
            let tci = u16::from_be_bytes([first[MACS_LEN + 2], first[MACS_LEN + 3]]);
            head[MACS_LEN..MACS_LEN + 2].copy_from_slice(&TPID.to_be_bytes());
            head[MACS_LEN + 2..].copy_from_slice(&((tci & 0xf000) | (vid & 0x0fff)).to_be_bytes());
            Some((head, 16, 16))
        }
        TagEdit::Pop | TagEdit::Rewrite(_) => None,
    }
}

/// Applies `edit` to an owned frame (tests and fixtures; the data plane edits mbufs with
/// the in-place functions). Allocates.
///
/// # Errors
/// As the in-place functions; `frame` is unchanged on error.
#[cfg(test)]
pub fn apply_edit_vec(frame: &mut Vec<u8>, edit: TagEdit) -> Result<(), FrameError> {
    match edit {
        TagEdit::None => Ok(()),
        TagEdit::Push(vid) => {
            if frame.len() < MACS_LEN {
                return Err(FrameError::TooShort);
            }
            frame.splice(0..0, [0u8; TAG_LEN]);
            push_in_place(frame, vid)
        }
        TagEdit::Pop => {
            pop_in_place(frame)?;
            frame.drain(..TAG_LEN);
            Ok(())
        }
        TagEdit::Rewrite(vid) => rewrite_in_place(frame, vid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Egress::{Skip, Tagged, Untagged};
    use VlanDrop::{NotAllowed, TaggedOnAccess, UntaggedOnTrunk};

    fn trunk(s: &str) -> VlanMode {
        VlanMode::parse(s).unwrap()
    }

    #[test]
    fn vlan_set_parse_and_display() {
        let s = parse_vlan_set("10,20,100-199").unwrap();
        assert_eq!(s.len(), 102);
        assert!(s.contains(10) && s.contains(100) && s.contains(199));
        assert!(!s.contains(11) && !s.contains(200) && !s.contains(0) && !s.contains(60_000));
        assert_eq!(s.to_string(), "10,20,100-199");
        assert_eq!(parse_vlan_set(" 5 , 3-4,4094").unwrap().to_string(), "3-5,4094");
        let all = parse_vlan_set("all").unwrap();
        assert_eq!((all.len(), all.contains(0), all.contains(4095)), (4094, false, false));
        assert_eq!(all.to_string(), "1-4094");
    }

    #[test]
    fn parse_errors_are_one_clear_line() {
        for (input, want) in [
            ("", "empty"),
            ("0", "out of range 1-4094"),
            ("4095", "out of range 1-4094"),
            ("10,", "empty VLAN ID"),
            ("x", "'x' is not a VLAN ID"),
            ("30-20", "runs backwards"),
            ("1-2-3", "'2-3' is not a VLAN ID"),
        ] {
            let e = parse_vlan_set(input).unwrap_err();
            assert!(e.starts_with(&format!("bad VLAN list '{input}': ")) && e.contains(want) && !e.contains('\n'), "{input}: {e}");
        }
        for (input, want) in [
            ("10", "expected access:VID or trunk:"),
            ("acess:10", "expected access:VID or trunk:"),
            ("access:", "empty VLAN ID"),
            ("access:4095", "out of range 0-4094"),
            ("access:10,20", "'10,20' is not a VLAN ID"),
            ("trunk:", "empty VLAN ID"),
            ("trunk:0", "out of range 1-4094"),
            ("trunk:10,native=1,native=2", "native given twice"),
            ("trunk:10,native=4095", "out of range 0-4094"),
        ] {
            let e = VlanMode::parse(input).unwrap_err();
            assert!(e.starts_with(&format!("bad VLAN mode '{input}': ")) && e.contains(want) && !e.contains('\n'), "{input}: {e}");
        }
    }

    #[test]
    fn mode_parse_and_round_trip() {
        assert_eq!(VlanMode::parse("access:10"), Ok(VlanMode::Access(10)));
        assert_eq!(VlanMode::parse("access:0"), Ok(VlanMode::default()));
        assert_eq!(
            VlanMode::parse("trunk:10,20-30,native=1"),
            Ok(VlanMode::Trunk { allowed: parse_vlan_set("10,20-30").unwrap(), native: Some(1) })
        );
        assert_eq!("trunk:native=0".parse(), Ok(VlanMode::Trunk { allowed: VlanSet::new(), native: Some(0) }));
        for s in ["access:0", "access:4094", "trunk:10,20-30", "trunk:1-4094,native=0", "trunk:native=5", "trunk:7,native=7"] {
            assert_eq!(VlanMode::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(trunk("trunk:all,native=1").to_string(), "trunk:1-4094,native=1");
    }

    #[test]
    fn ingress_truth_table() {
        let access10 = VlanMode::Access(10);
        let default = VlanMode::default();
        let t = trunk("trunk:10,20");
        let tn = trunk("trunk:10,20,native=5");
        let t0 = trunk("trunk:all,native=0");
        // (mode, tag) → result. Some(0) is a priority tag: untagged for classification.
        let cases: [(&VlanMode, Option<u16>, Result<u16, VlanDrop>); 20] = [
            (&access10, None, Ok(10)),
            (&access10, Some(0), Ok(10)),
            (&access10, Some(10), Ok(10)),
            (&access10, Some(11), Err(TaggedOnAccess)),
            (&access10, Some(4095), Err(TaggedOnAccess)),
            (&default, None, Ok(0)),
            (&default, Some(0), Ok(0)),
            (&default, Some(10), Err(TaggedOnAccess)),
            (&t, Some(10), Ok(10)),
            (&t, Some(20), Ok(20)),
            (&t, Some(30), Err(NotAllowed)),
            (&t, Some(4095), Err(NotAllowed)),
            (&t, None, Err(UntaggedOnTrunk)),
            (&t, Some(0), Err(UntaggedOnTrunk)),
            (&tn, None, Ok(5)),
            (&tn, Some(0), Ok(5)),
            (&tn, Some(5), Ok(5)),
            (&tn, Some(30), Err(NotAllowed)),
            (&t0, None, Ok(0)),
            (&t0, Some(4094), Ok(4094)),
        ];
        for (mode, tag, want) in cases {
            assert_eq!(ingress(mode, tag), want, "{mode} {tag:?}");
        }
    }

    #[test]
    fn egress_truth_table() {
        let access10 = VlanMode::Access(10);
        let t = trunk("trunk:10,20");
        let tn = trunk("trunk:10,20,native=5");
        let tn10 = trunk("trunk:10,20,native=10");
        let t0 = trunk("trunk:all,native=0");
        let cases: [(&VlanMode, u16, Egress); 14] = [
            (&access10, 10, Untagged),
            (&access10, 11, Skip),
            (&access10, 0, Skip),
            (&VlanMode::default(), 0, Untagged),
            (&VlanMode::default(), 10, Skip),
            (&t, 10, Tagged(10)),
            (&t, 30, Skip),
            (&t, 0, Skip),
            (&tn, 5, Untagged),
            (&tn, 20, Tagged(20)),
            (&tn10, 10, Untagged),
            (&t0, 0, Untagged),
            (&t0, 7, Tagged(7)),
            (&t0, 4095, Skip),
        ];
        for (mode, vlan, want) in cases {
            assert_eq!(egress(mode, vlan), want, "{mode} vlan {vlan}");
        }
    }

    #[test]
    fn tag_edits() {
        assert_eq!(tag_edit(None, Untagged), Some(TagEdit::None));
        assert_eq!(tag_edit(None, Tagged(10)), Some(TagEdit::Push(10)));
        assert_eq!(tag_edit(Some(10), Untagged), Some(TagEdit::Pop));
        assert_eq!(tag_edit(Some(0), Untagged), Some(TagEdit::Pop), "a priority tag is not sent on an untagged egress");
        assert_eq!(tag_edit(Some(10), Tagged(10)), Some(TagEdit::None));
        assert_eq!(tag_edit(Some(0), Tagged(10)), Some(TagEdit::Rewrite(10)));
        assert_eq!(tag_edit(Some(5), Tagged(10)), Some(TagEdit::Rewrite(10)));
        assert_eq!(tag_edit(None, Skip), None);
        assert_eq!(tag_edit(Some(10), Skip), None);
    }

    /// dst ff:..:ff, src 02:00:00:00:00:01, then `rest` (ethertype onwards).
    fn frame(rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn frame_edits_construct_and_deconstruct() {
        let untagged = frame(&[0x08, 0x00, 0x45, 0x00]);
        let tagged10 = frame(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00, 0x45, 0x00]);
        // PCP 5, DEI 1, VID 10 → rewrite keeps 0xb000.
        let pcp_tagged10 = frame(&[0x81, 0x00, 0xb0, 0x0a, 0x08, 0x00]);
        let pcp_tagged20 = frame(&[0x81, 0x00, 0xb0, 0x14, 0x08, 0x00]);
        assert_eq!(vlan_tag(&untagged), None);
        assert_eq!(vlan_tag(&tagged10), Some(10));
        assert_eq!(vlan_tag(&pcp_tagged10), Some(10));
        assert_eq!(vlan_tag(&frame(&[0x81, 0x00, 0xe0, 0x00])), Some(0), "priority tag");
        assert_eq!(vlan_tag(&frame(&[0x81, 0x00, 0x00])), None, "truncated tag");
        assert_eq!(vlan_tag(&frame(&[0x88, 0xa8, 0x00, 0x0a])), None, "S-tag is not a C-tag");

        let mut f = untagged.clone();
        apply_edit_vec(&mut f, TagEdit::Push(10)).unwrap();
        assert_eq!(f, tagged10);
        apply_edit_vec(&mut f, TagEdit::Pop).unwrap();
        assert_eq!(f, untagged);
        let mut f = pcp_tagged10.clone();
        apply_edit_vec(&mut f, TagEdit::Rewrite(20)).unwrap();
        assert_eq!(f, pcp_tagged20);
        apply_edit_vec(&mut f, TagEdit::None).unwrap();
        assert_eq!(f, pcp_tagged20);

        let mut f = untagged.clone();
        assert_eq!(apply_edit_vec(&mut f, TagEdit::Pop), Err(FrameError::NoTag));
        assert_eq!(apply_edit_vec(&mut f, TagEdit::Rewrite(3)), Err(FrameError::NoTag));
        assert_eq!(f, untagged);
        let mut short = vec![0u8; 11];
        assert_eq!(apply_edit_vec(&mut short, TagEdit::Push(3)), Err(FrameError::TooShort));
        assert_eq!(short.len(), 11);

        // In place, as the DPDK layer will use them: headroom + frame, then adj.
        let mut buf = vec![0u8; TAG_LEN];
        buf.extend_from_slice(&untagged);
        push_in_place(&mut buf, 10).unwrap();
        assert_eq!(buf, tagged10);
        pop_in_place(&mut buf).unwrap();
        assert_eq!(&buf[TAG_LEN..], &untagged[..]);
        assert_eq!(push_in_place(&mut [0u8; 15], 1), Err(FrameError::TooShort));
    }

    #[test]
    fn classify_then_edit_end_to_end() {
        // A frame tagged 20 enters a trunk and leaves an access port of VLAN 20 untagged,
        // another trunk tagged, and is not sent to an access port of VLAN 10.
        let tagged20 = frame(&[0x81, 0x00, 0x00, 0x14, 0x08, 0x00]);
        let untagged = frame(&[0x08, 0x00]);
        let vlan = ingress(&trunk("trunk:10-20"), vlan_tag(&tagged20)).unwrap();
        assert_eq!(vlan, 20);
        let out = |mode: &VlanMode| {
            tag_edit(vlan_tag(&tagged20), egress(mode, vlan)).map(|e| {
                let mut f = tagged20.clone();
                apply_edit_vec(&mut f, e).unwrap();
                f
            })
        };
        assert_eq!(out(&VlanMode::Access(20)), Some(untagged));
        assert_eq!(out(&trunk("trunk:20")), Some(tagged20.clone()));
        assert_eq!(out(&trunk("trunk:30,native=20")).map(|f| vlan_tag(&f)), Some(None));
        assert_eq!(out(&VlanMode::Access(10)), None);
    }

    /// The edit a copy applies on the way gives the same bytes as the in-place edit, for
    /// every edit and tagged or untagged frames.
    #[test]
    fn edited_head_matches_the_in_place_edits() {
        let untagged: Vec<u8> = (0..64u8)
            .map(|i| {
                if i == 12 {
                    0x08
                } else if i == 13 {
                    0
                } else {
                    i.wrapping_mul(7)
                }
            })
            .collect();
        let mut tagged = untagged.clone();
        // VID 10 with PCP 5 (a rewrite keeps it).
        tagged.splice(12..12, [0x81, 0x00, 0xa0, 0x0a]);
        for frame in [&untagged, &tagged] {
            for edit in [TagEdit::None, TagEdit::Push(20), TagEdit::Pop, TagEdit::Rewrite(30)] {
                let first: [u8; 16] = frame[..16].try_into().unwrap();
                let mut want = frame.clone();
                let ok = apply_edit_vec(&mut want, edit).is_ok();
                match edited_head(&first, frame.len(), edit) {
                    Some((head, n, cut)) => {
                        assert!(ok, "{edit:?}");
                        let got = [&head[..n], &frame[cut as usize..]].concat();
                        assert_eq!(got, want, "{edit:?} on {} frame", if frame[12] == 0x81 { "tagged" } else { "untagged" });
                    }
                    None => assert!(!ok, "{edit:?}: the in-place edit applies but the copy's does not"),
                }
            }
        }
    }
}
