//! Verilator testbenches of the Tandem engine (not built yet).
