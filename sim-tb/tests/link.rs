//! Testbenches of the verilated link datapath (framer + deframer) at 64 and 512 bits.

mod bench;

use bench::*;
use rand::Rng;
use tandem_hsi::codes::Opcode;
use tandem_hsi::frame::{encode_frame, FrameHeader, HEADER_LEN};
use tandem_hsi::vectors::{committed, from_hex};
use tandem_sim_tb::Model;

/// Bounded run: steps the model through drivers until `done` or the cycle budget ends.
fn header_bytes(h: &FrameHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    h.encode(&mut b);
    b
}

/// RTL-encoded frames equal tandem_hsi::frame::encode_frame (the soft engine's encoder)
/// byte for byte, for every valid shared vector, under random stalls.
fn encode_vectors(width: usize) {
    let mut m = Model::new(width, &format!("encode_vectors_{width}"));
    let mut r = rng(1);
    let mut tx = TxDriver::with_idle(25);
    let mut link = StreamMonitor::new("m_axis_link");
    link.stall_pct = 30;
    let valid: Vec<_> = committed().vectors.into_iter().filter(|v| v.header.is_some()).collect();
    for v in &valid {
        let bytes = from_hex(&v.hex).unwrap();
        tx.push(bytes[..HEADER_LEN].try_into().unwrap(), from_hex(v.payload_hex.as_ref().unwrap()).unwrap());
    }
    for _ in 0..50_000 {
        if link.frames.len() == valid.len() {
            break;
        }
        tx.drive(&mut m, &mut r);
        link.drive(&mut m, &mut r);
        m.set("s_axis_link_tvalid", 0);
        m.set("m_axis_rx_tready", 1);
        m.set("rx_status_ready", 1);
        m.eval();
        tx.sample(&m);
        link.sample(&m);
        m.tick();
    }
    assert_eq!(link.frames.len(), valid.len(), "{width} bits: every vector leaves the framer");
    for (v, (f, _)) in valid.iter().zip(&link.frames) {
        assert_eq!(f, &from_hex(&v.hex).unwrap(), "{width} bits: vector {:?}", v.name);
    }
}

#[test]
fn encodes_shared_vectors_byte_for_byte_at_64_bits() {
    encode_vectors(64);
}

#[test]
fn encodes_shared_vectors_byte_for_byte_at_512_bits() {
    encode_vectors(512);
}

/// The RTL accepts every valid frame from encode_frame and rejects each invalid vector
/// for the reason the vector names.
fn decode_vectors(width: usize) {
    let mut m = Model::new(width, &format!("decode_vectors_{width}"));
    let mut r = rng(2);
    let mut inp = StreamDriver::new("s_axis_link");
    inp.idle_pct = 20;
    let mut pay = StreamMonitor::new("m_axis_rx");
    pay.stall_pct = 20;
    let mut st = StatusMonitor::with_stall(40);
    let vectors = committed().vectors;
    for v in &vectors {
        inp.push(from_hex(&v.hex).unwrap());
    }
    for _ in 0..50_000 {
        if st.seen.len() == vectors.len() {
            break;
        }
        inp.drive(&mut m, &mut r);
        pay.drive(&mut m, &mut r);
        st.drive(&mut m, &mut r);
        m.set("tx_hdr_valid", 0);
        m.set("s_axis_tx_tvalid", 0);
        m.set("m_axis_link_tready", 1);
        m.eval();
        inp.sample(&m);
        pay.sample(&m);
        st.sample(&m);
        m.tick();
    }
    assert_eq!(st.seen.len(), vectors.len(), "{width} bits: one status per frame");
    let mut payloads = pay.frames.iter();
    for (v, s) in vectors.iter().zip(&st.seen) {
        let ctx = format!("{width} bits, vector {:?}: {s:?}", v.name);
        match (&v.header, v.error.as_deref()) {
            (Some(h), None) => {
                assert!(s.header_ok && s.length_ok && s.crc_ok, "{ctx}");
                assert_eq!((s.sequence, s.length), (h.sequence, u64::from(h.length)), "{ctx}");
                if h.length > 0 {
                    let want = from_hex(v.payload_hex.as_ref().unwrap()).unwrap();
                    assert_eq!(payloads.next().map(|p| &p.0), Some(&want), "{ctx}");
                }
            }
            (_, Some("bad_crc")) => {
                assert!(s.header_ok && s.length_ok && !s.crc_ok, "{ctx}");
                payloads.next();
            }
            (_, Some("truncated")) => {
                assert!(!s.length_ok, "{ctx}");
                payloads.next();
            }
            (_, Some(_)) => assert!(!s.header_ok, "{ctx}"),
            (None, None) => panic!("{ctx}: vector without header or error"),
        }
    }
}

#[test]
fn judges_shared_vectors_at_64_bits() {
    decode_vectors(64);
}

#[test]
fn judges_shared_vectors_at_512_bits() {
    decode_vectors(512);
}

/// What the link model did to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Intact,
    Corrupted,
}

/// Two instances: A frames seeded random data frames, a link model drops, corrupts,
/// duplicates and delays them, B deframes under back-pressure. Scoreboard: every frame B
/// reports good is one A sent, intact, with its payload, in order; every corrupted copy
/// is rejected; dropped frames never appear; duplicates appear once per copy.
fn faulty_link(width: usize, test: &str) {
    let seed = seed(test);
    let mut r = rng(seed);
    let mut a = Model::new(width, &format!("{test}_a"));
    let mut b = Model::new(width, &format!("{test}_b"));
    let count = 40;
    let mut sent = vec![];
    let mut tx = TxDriver::with_idle(10);
    for seq in 1..=count {
        let len = match r.gen_range(0..4) {
            0 => 0,
            1 => r.gen_range(1..64),
            2 => r.gen_range(64..600),
            _ => 4096,
        };
        let payload: Vec<u8> = (0..len).map(|_| r.gen()).collect();
        let op = if len == 0 { Opcode::Barrier } else { Opcode::Page };
        let h = FrameHeader::data(op, r.gen(), seq, r.gen::<u32>().into(), len as u32);
        let mut wire = vec![];
        encode_frame(&h, &payload, &mut wire);
        tx.push(header_bytes(&h), payload.clone());
        sent.push((h, payload, wire));
    }
    let mut a_link = StreamMonitor::new("m_axis_link");
    a_link.stall_pct = 10;
    let mut b_in = StreamDriver::new("s_axis_link");
    b_in.idle_pct = 15;
    let mut b_pay = StreamMonitor::new("m_axis_rx");
    b_pay.stall_pct = 20;
    let mut b_st = StatusMonitor::with_stall(20);
    let mut delivered: Vec<(usize, Fate)> = vec![];
    let mut in_flight: Vec<(u64, Vec<u8>, usize, Fate)> = vec![];
    let mut taken = 0;
    for _ in 0..400_000 {
        // Link model: frames leaving A become deliveries to B after a random delay.
        while taken < a_link.frames.len() {
            let idx = taken;
            let f = a_link.frames[idx].0.clone();
            assert_eq!(f, sent[idx].2, "seed {seed}: A's frame {idx} differs from encode_frame");
            taken += 1;
            let due = a.cycles() + r.gen_range(0..200);
            match r.gen_range(0..100) {
                0..=9 => {}
                10..=19 => {
                    let mut c = f.clone();
                    let at = r.gen_range(0..c.len());
                    c[at] ^= 1 << r.gen_range(0..8);
                    in_flight.push((due, c, idx, Fate::Corrupted));
                }
                20..=24 => {
                    in_flight.push((due, f.clone(), idx, Fate::Intact));
                    in_flight.push((due + 1, f, idx, Fate::Intact));
                }
                _ => in_flight.push((due, f, idx, Fate::Intact)),
            }
        }
        in_flight.sort_by_key(|x| x.0);
        while in_flight.first().is_some_and(|x| x.0 <= a.cycles()) {
            let (_, f, idx, fate) = in_flight.remove(0);
            b_in.push(f);
            delivered.push((idx, fate));
        }
        if tx.pending() == 0 && taken == count as usize && in_flight.is_empty() && b_in.pending() == 0 && b_st.seen.len() == delivered.len()
        {
            break;
        }
        tx.drive(&mut a, &mut r);
        a_link.drive(&mut a, &mut r);
        a.set("s_axis_link_tvalid", 0);
        a.set("m_axis_rx_tready", 1);
        a.set("rx_status_ready", 1);
        b_in.drive(&mut b, &mut r);
        b_pay.drive(&mut b, &mut r);
        b_st.drive(&mut b, &mut r);
        b.set("tx_hdr_valid", 0);
        b.set("s_axis_tx_tvalid", 0);
        b.set("m_axis_link_tready", 1);
        a.eval();
        b.eval();
        tx.sample(&a);
        a_link.sample(&a);
        b_in.sample(&b);
        b_pay.sample(&b);
        b_st.sample(&b);
        a.tick();
        b.tick();
    }
    assert_eq!(b_st.seen.len(), delivered.len(), "seed {seed}: B reports every delivered frame");
    // Payload frames come in status order; corrupted frames may or may not carry one.
    let mut good = 0;
    let mut payload_cursor = 0;
    for ((idx, fate), s) in delivered.iter().zip(&b_st.seen) {
        let (h, payload, _) = &sent[*idx];
        let all_ok = s.header_ok && s.length_ok && s.crc_ok;
        match fate {
            Fate::Intact => {
                assert!(all_ok, "seed {seed}: intact frame {idx} rejected: {s:?}");
                assert_eq!((s.sequence, s.length), (h.sequence, u64::from(h.length)), "seed {seed}: frame {idx}");
                if !payload.is_empty() {
                    let got = b_pay.frames.iter().skip(payload_cursor).position(|(p, _)| p == payload);
                    assert!(got.is_some(), "seed {seed}: payload of frame {idx} not delivered");
                    payload_cursor += got.unwrap() + 1;
                }
                good += 1;
            }
            Fate::Corrupted => assert!(!all_ok, "seed {seed}: corrupted copy of frame {idx} accepted: {s:?}"),
        }
    }
    assert!(good > count / 2, "seed {seed}: most frames get through ({good})");
}

#[test]
fn two_instances_over_a_faulty_link_at_64_bits() {
    faulty_link(64, "two_instances_over_a_faulty_link_at_64_bits");
}

#[test]
fn two_instances_over_a_faulty_link_at_512_bits() {
    faulty_link(512, "two_instances_over_a_faulty_link_at_512_bits");
}

/// Cycle-level performance: 4 KiB data frames back to back from A's framer straight into
/// B's deframer (no loss, no stalls). Prints payload bytes per cycle and the latency from
/// header request to B's status for a lone frame.
fn throughput(width: usize) -> (f64, u64) {
    let mut a = Model::new(width, &format!("throughput_{width}_a"));
    let mut b = Model::new(width, &format!("throughput_{width}_b"));
    let mut r = rng(3);
    let frames = 32u64;
    let mut tx = TxDriver::default();
    for seq in 1..=frames {
        let h = FrameHeader::data(Opcode::Page, 1, seq, seq * 4096, 4096);
        tx.push(header_bytes(&h), vec![seq as u8; 4096]);
    }
    let mut pay = StreamMonitor::new("m_axis_rx");
    let mut st = StatusMonitor::default();
    let mut lone_latency = 0;
    for _ in 0..200_000 {
        if st.seen.len() as u64 == frames {
            break;
        }
        tx.drive(&mut a, &mut r);
        a.set("s_axis_link_tvalid", 0);
        a.set("m_axis_rx_tready", 1);
        a.set("rx_status_ready", 1);
        b.set("tx_hdr_valid", 0);
        b.set("s_axis_tx_tvalid", 0);
        b.set("m_axis_link_tready", 1);
        pay.drive(&mut b, &mut r);
        st.drive(&mut b, &mut r);
        a.eval();
        b.set_words("s_axis_link_tdata", &a.get_words("m_axis_link_tdata"));
        b.set_words("s_axis_link_tkeep", &a.get_words("m_axis_link_tkeep"));
        b.set("s_axis_link_tlast", a.get("m_axis_link_tlast"));
        b.set("s_axis_link_tvalid", a.get("m_axis_link_tvalid"));
        b.eval();
        a.set("m_axis_link_tready", b.get("s_axis_link_tready"));
        a.eval();
        tx.sample(&a);
        pay.sample(&b);
        st.sample(&b);
        if st.seen.len() == 1 && lone_latency == 0 {
            lone_latency = st.seen[0].cycle + 1;
        }
        a.tick();
        b.tick();
    }
    assert_eq!(st.seen.len() as u64, frames, "{width} bits: every frame arrives");
    assert!(st.seen.iter().all(|s| s.header_ok && s.length_ok && s.crc_ok), "{width} bits: all frames good");
    for (i, (p, _)) in pay.frames.iter().enumerate() {
        assert_eq!(p, &vec![(i + 1) as u8; 4096], "{width} bits: payload {i}");
    }
    let first = pay.starts[0];
    let last = pay.frames.last().unwrap().1;
    let bytes_per_cycle = (frames * 4096) as f64 / (last - first + 1) as f64;
    (bytes_per_cycle, lone_latency)
}

#[test]
fn performance_4k_pages_at_64_and_512_bits() {
    for width in [64usize, 512] {
        let (bpc, latency) = throughput(width);
        let pct = 100.0 * bpc / (width / 8) as f64;
        println!(
            "RTL link datapath, {width} bits: {bpc:.2} payload bytes/cycle for 4 KiB pages ({pct:.1}% of the datapath); \
             first frame header-request-to-receive-status latency {latency} cycles"
        );
        assert!(pct >= 90.0, "{width} bits: 4 KiB page throughput {pct:.1}% is below 90% of the datapath");
    }
}
