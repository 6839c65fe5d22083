//! The Tandem mirroring engine in rust-hdl (not built yet).
