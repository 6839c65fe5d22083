//! Link fault shim (in progress).
