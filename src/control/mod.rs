//! The switch's control plane: the port table and the plans it hands the workers
//! (`plane`), opening ports (`ports`), the changes `ctl` asks for (`changes`), the
//! control protocol (`protocol`: one typed table of commands), the control socket
//! (`server`) and its client (`client`).

pub mod changes;
pub mod client;
pub mod linux;
pub mod plane;
pub mod ports;
pub mod protocol;
pub mod router;
pub mod server;
