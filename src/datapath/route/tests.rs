//! The fast path's stages on crafted frames (see also `lpm` and `nexthop`).
