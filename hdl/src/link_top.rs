//! The link datapath as a top level: framer (transmit) and deframer (receive).

use crate::deframer::Deframer;
use crate::framer::Framer;
use crate::hsi_consts::*;
use rust_hdl::prelude::*;

/// Transmit and receive halves of the mirror link, side by side, with the ports a MAC
/// (AXI4-Stream `m_axis_link_*`/`s_axis_link_*`) and the engine core (header requests,
/// payload streams, frame status) connect to. This is the unit the Verilator testbench
/// drives today; the full engine adds rings, DMA and registers around it.
#[derive(LogicBlock)]
pub struct LinkTop<const W: usize, const K: usize> {
    /// Core clock.
    pub clock: Signal<In, Clock>,
    /// Transmit header request valid.
    pub tx_hdr_valid: Signal<In, Bit>,
    /// Transmit header request taken.
    pub tx_hdr_ready: Signal<Out, Bit>,
    /// Transmit `FRAME_TYPE`.
    pub tx_hdr_frame_type: Signal<In, Bits<FRAME_TYPE_BITS>>,
    /// Transmit `KIND`.
    pub tx_hdr_kind: Signal<In, Bits<KIND_BITS>>,
    /// Transmit `SERVICE_TAG`.
    pub tx_hdr_service_tag: Signal<In, Bits<TAG_BITS>>,
    /// Transmit `LENGTH` (payload bytes that follow on `s_axis_tx_*`).
    pub tx_hdr_length: Signal<In, Bits<LENGTH_BITS>>,
    /// Transmit `SEQUENCE`.
    pub tx_hdr_sequence: Signal<In, Bits<SEQUENCE_BITS>>,
    /// Transmit `WINDOW_OFFSET`.
    pub tx_hdr_window_offset: Signal<In, Bits<OFFSET_BITS>>,
    /// Transmit payload data (sink).
    pub s_axis_tx_tdata: Signal<In, Bits<W>>,
    /// Transmit payload byte enables.
    pub s_axis_tx_tkeep: Signal<In, Bits<K>>,
    /// Transmit payload last beat.
    pub s_axis_tx_tlast: Signal<In, Bit>,
    /// Transmit payload valid.
    pub s_axis_tx_tvalid: Signal<In, Bit>,
    /// Transmit payload ready.
    pub s_axis_tx_tready: Signal<Out, Bit>,
    /// Link to the MAC, data (source).
    pub m_axis_link_tdata: Signal<Out, Bits<W>>,
    /// Link to the MAC, byte enables.
    pub m_axis_link_tkeep: Signal<Out, Bits<K>>,
    /// Link to the MAC, last beat of a frame.
    pub m_axis_link_tlast: Signal<Out, Bit>,
    /// Link to the MAC, valid.
    pub m_axis_link_tvalid: Signal<Out, Bit>,
    /// Link to the MAC, ready.
    pub m_axis_link_tready: Signal<In, Bit>,
    /// Link from the MAC, data (sink).
    pub s_axis_link_tdata: Signal<In, Bits<W>>,
    /// Link from the MAC, byte enables.
    pub s_axis_link_tkeep: Signal<In, Bits<K>>,
    /// Link from the MAC, last beat of a frame.
    pub s_axis_link_tlast: Signal<In, Bit>,
    /// Link from the MAC, valid.
    pub s_axis_link_tvalid: Signal<In, Bit>,
    /// Link from the MAC, ready.
    pub s_axis_link_tready: Signal<Out, Bit>,
    /// Received payload data (source).
    pub m_axis_rx_tdata: Signal<Out, Bits<W>>,
    /// Received payload byte enables.
    pub m_axis_rx_tkeep: Signal<Out, Bits<K>>,
    /// Received payload last beat.
    pub m_axis_rx_tlast: Signal<Out, Bit>,
    /// Received payload valid.
    pub m_axis_rx_tvalid: Signal<Out, Bit>,
    /// Received payload ready.
    pub m_axis_rx_tready: Signal<In, Bit>,
    /// Received frame status valid.
    pub rx_status_valid: Signal<Out, Bit>,
    /// Received frame status taken.
    pub rx_status_ready: Signal<In, Bit>,
    /// Received frame: header checks passed.
    pub rx_status_header_ok: Signal<Out, Bit>,
    /// Received frame: byte count matched `LENGTH`.
    pub rx_status_length_ok: Signal<Out, Bit>,
    /// Received frame: CRC32C matched.
    pub rx_status_crc_ok: Signal<Out, Bit>,
    /// Received `FRAME_TYPE`.
    pub rx_status_frame_type: Signal<Out, Bits<FRAME_TYPE_BITS>>,
    /// Received `KIND`.
    pub rx_status_kind: Signal<Out, Bits<KIND_BITS>>,
    /// Received `SERVICE_TAG`.
    pub rx_status_service_tag: Signal<Out, Bits<TAG_BITS>>,
    /// Received `LENGTH`.
    pub rx_status_length: Signal<Out, Bits<LENGTH_BITS>>,
    /// Received `SEQUENCE`.
    pub rx_status_sequence: Signal<Out, Bits<SEQUENCE_BITS>>,
    /// Received `WINDOW_OFFSET`.
    pub rx_status_window_offset: Signal<Out, Bits<OFFSET_BITS>>,
    framer: Framer<W, K>,
    deframer: Deframer<W, K>,
}

impl<const W: usize, const K: usize> Default for LinkTop<W, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const K: usize> LinkTop<W, K> {
    /// The link datapath at `W` bits (`K = W / 8`).
    pub fn new() -> Self {
        assert_eq!(W, 8 * K, "LinkTop: K = {K} keep lanes must be W / 8 for W = {W}");
        Self {
            clock: Default::default(),
            tx_hdr_valid: Default::default(),
            tx_hdr_ready: Default::default(),
            tx_hdr_frame_type: Default::default(),
            tx_hdr_kind: Default::default(),
            tx_hdr_service_tag: Default::default(),
            tx_hdr_length: Default::default(),
            tx_hdr_sequence: Default::default(),
            tx_hdr_window_offset: Default::default(),
            s_axis_tx_tdata: Default::default(),
            s_axis_tx_tkeep: Default::default(),
            s_axis_tx_tlast: Default::default(),
            s_axis_tx_tvalid: Default::default(),
            s_axis_tx_tready: Default::default(),
            m_axis_link_tdata: Default::default(),
            m_axis_link_tkeep: Default::default(),
            m_axis_link_tlast: Default::default(),
            m_axis_link_tvalid: Default::default(),
            m_axis_link_tready: Default::default(),
            s_axis_link_tdata: Default::default(),
            s_axis_link_tkeep: Default::default(),
            s_axis_link_tlast: Default::default(),
            s_axis_link_tvalid: Default::default(),
            s_axis_link_tready: Default::default(),
            m_axis_rx_tdata: Default::default(),
            m_axis_rx_tkeep: Default::default(),
            m_axis_rx_tlast: Default::default(),
            m_axis_rx_tvalid: Default::default(),
            m_axis_rx_tready: Default::default(),
            rx_status_valid: Default::default(),
            rx_status_ready: Default::default(),
            rx_status_header_ok: Default::default(),
            rx_status_length_ok: Default::default(),
            rx_status_crc_ok: Default::default(),
            rx_status_frame_type: Default::default(),
            rx_status_kind: Default::default(),
            rx_status_service_tag: Default::default(),
            rx_status_length: Default::default(),
            rx_status_sequence: Default::default(),
            rx_status_window_offset: Default::default(),
            framer: Framer::new(),
            deframer: Deframer::new(),
        }
    }
}

impl<const W: usize, const K: usize> Logic for LinkTop<W, K> {
    #[hdl_gen]
    fn update(&mut self) {
        clock!(self, clock, framer, deframer);
        self.framer.s_hdr_valid.next = self.tx_hdr_valid.val();
        self.tx_hdr_ready.next = self.framer.s_hdr_ready.val();
        self.framer.s_hdr_frame_type.next = self.tx_hdr_frame_type.val();
        self.framer.s_hdr_kind.next = self.tx_hdr_kind.val();
        self.framer.s_hdr_service_tag.next = self.tx_hdr_service_tag.val();
        self.framer.s_hdr_length.next = self.tx_hdr_length.val();
        self.framer.s_hdr_sequence.next = self.tx_hdr_sequence.val();
        self.framer.s_hdr_window_offset.next = self.tx_hdr_window_offset.val();
        self.framer.s_axis_tdata.next = self.s_axis_tx_tdata.val();
        self.framer.s_axis_tkeep.next = self.s_axis_tx_tkeep.val();
        self.framer.s_axis_tlast.next = self.s_axis_tx_tlast.val();
        self.framer.s_axis_tvalid.next = self.s_axis_tx_tvalid.val();
        self.s_axis_tx_tready.next = self.framer.s_axis_tready.val();
        self.m_axis_link_tdata.next = self.framer.m_axis_tdata.val();
        self.m_axis_link_tkeep.next = self.framer.m_axis_tkeep.val();
        self.m_axis_link_tlast.next = self.framer.m_axis_tlast.val();
        self.m_axis_link_tvalid.next = self.framer.m_axis_tvalid.val();
        self.framer.m_axis_tready.next = self.m_axis_link_tready.val();
        self.deframer.s_axis_tdata.next = self.s_axis_link_tdata.val();
        self.deframer.s_axis_tkeep.next = self.s_axis_link_tkeep.val();
        self.deframer.s_axis_tlast.next = self.s_axis_link_tlast.val();
        self.deframer.s_axis_tvalid.next = self.s_axis_link_tvalid.val();
        self.s_axis_link_tready.next = self.deframer.s_axis_tready.val();
        self.m_axis_rx_tdata.next = self.deframer.m_axis_tdata.val();
        self.m_axis_rx_tkeep.next = self.deframer.m_axis_tkeep.val();
        self.m_axis_rx_tlast.next = self.deframer.m_axis_tlast.val();
        self.m_axis_rx_tvalid.next = self.deframer.m_axis_tvalid.val();
        self.deframer.m_axis_tready.next = self.m_axis_rx_tready.val();
        self.rx_status_valid.next = self.deframer.m_status_valid.val();
        self.deframer.m_status_ready.next = self.rx_status_ready.val();
        self.rx_status_header_ok.next = self.deframer.m_status_header_ok.val();
        self.rx_status_length_ok.next = self.deframer.m_status_length_ok.val();
        self.rx_status_crc_ok.next = self.deframer.m_status_crc_ok.val();
        self.rx_status_frame_type.next = self.deframer.m_status_frame_type.val();
        self.rx_status_kind.next = self.deframer.m_status_kind.val();
        self.rx_status_service_tag.next = self.deframer.m_status_service_tag.val();
        self.rx_status_length.next = self.deframer.m_status_length.val();
        self.rx_status_sequence.next = self.deframer.m_status_sequence.val();
        self.rx_status_window_offset.next = self.deframer.m_status_window_offset.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthesizes_at_64_bits() {
        yosys_validate("tandem_link_top64", &crate::link_verilog(64)).unwrap();
    }
}
