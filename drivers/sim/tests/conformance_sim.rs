//! The conformance suite against the sim backend: two RTL engines on an in-process wire
//! (`sim_sim`), and an RTL engine bridged over TCP to a soft engine (`sim_soft`), which
//! checks that the RTL speaks the soft engine's wire format and connection protocol.
//!
//! Every check runs as written, at the suite's own sizes. The link control is a loss of
//! signal held until engine A reports its link Down (the RTL declares the link down after
//! three heartbeat intervals without a frame), so `link_cut_recovery` sees the link
//! resets it counts, as a pulled cable would give them.

mod common;

mod sim_sim {
    tandem_drivers::conformance_tests!(super::common::sim_pair);
}

mod sim_soft {
    tandem_drivers::conformance_tests!(super::common::mixed_pair);
}
