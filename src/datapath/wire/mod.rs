//! Wire formats the data path computes over: the Internet checksum (`csum`) and TCP
//! segmentation in software (`tso`). Pure functions over byte slices, unit-tested.

pub mod csum;
pub mod l3;
pub mod tso;
pub mod vxlan;
