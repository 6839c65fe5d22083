//! The conformance suite against two soft engines on plain loopback.

mod common;

tandem_drivers::conformance_tests!(common::loopback_pair);
