//! Helpers for the rust-hdl unit tests: settle, clock, and byte/bit conversions.

use rust_hdl::prelude::*;

/// Propagates combinational changes until nothing moves (bounded).
pub fn settle<B: Block>(uut: &mut B) {
    for _ in 0..1000 {
        uut.update_all();
        if !uut.has_changed() {
            return;
        }
    }
    panic!("circuit did not settle in 1000 passes");
}

/// One rising and one falling clock edge.
#[allow(dead_code)] // Kept for clocked unit tests that drive ports by hand.
pub fn tick<B: Block>(uut: &mut B, clock: fn(&mut B) -> &mut Signal<In, Clock>) {
    settle(uut);
    clock(uut).next = Clock { clk: true };
    settle(uut);
    clock(uut).next = Clock { clk: false };
    settle(uut);
}

/// Bytes (byte 0 in bits 7:0) as a `W`-bit value; missing bytes are 0.
pub fn to_bits<const W: usize>(bytes: &[u8]) -> Bits<W> {
    let mut b = Bits::<W>::default();
    for (i, x) in bytes.iter().enumerate().take(W / 8) {
        for k in 0..8 {
            if (x >> k) & 1 == 1 {
                b = b.replace_bit(i * 8 + k, true);
            }
        }
    }
    b
}

/// The first `n` bytes of a `W`-bit value.
pub fn from_bits<const W: usize>(b: Bits<W>, n: usize) -> Vec<u8> {
    (0..n).map(|i| b.get_bits::<8>(i * 8).to_u8()).collect()
}

/// A contiguous `tkeep` with `n` low lanes set.
pub fn keep_of<const K: usize>(n: usize) -> Bits<K> {
    let mut b = Bits::<K>::default();
    for i in 0..n {
        b = b.replace_bit(i, true);
    }
    b
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as u8
        })
        .collect()
}

/// Drives `frames` into `$uut`'s `s_axis_*` sink (random idle beats) and collects the
/// frames leaving its `m_axis_*` source (random back-pressure) within `$cycles` clock
/// cycles. Evaluates to `Vec<(Vec<u8>, bool)>`: each frame's bytes and `$user` sampled
/// on its last beat (pass `None` for streams without a user bit).
macro_rules! run_stream {
    ($uut:expr, $W:expr, $K:expr, $frames:expr, $seed:expr, $cycles:expr, $user:expr) => {{
        let uut = &mut $uut;
        let frames: &[Vec<u8>] = $frames;
        let user: Option<fn(&_) -> bool> = $user;
        let mut rng = $seed as u32 | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        let beats: Vec<(Vec<u8>, bool)> = frames
            .iter()
            .flat_map(|f| {
                let n = f.len().div_ceil($K);
                (0..n).map(move |i| (f[i * $K..((i + 1) * $K).min(f.len())].to_vec(), i + 1 == n))
            })
            .collect();
        let mut sent = 0usize;
        let mut out: Vec<(Vec<u8>, bool)> = vec![];
        let mut cur: Vec<u8> = vec![];
        for _ in 0..$cycles {
            let offer = sent < beats.len() && next() % 4 != 0;
            if offer {
                let (b, last) = &beats[sent];
                uut.s_axis_tdata.next = $crate::test_util::to_bits::<{ $W }>(b);
                uut.s_axis_tkeep.next = $crate::test_util::keep_of::<{ $K }>(b.len());
                uut.s_axis_tlast.next = *last;
            }
            uut.s_axis_tvalid.next = offer;
            uut.m_axis_tready.next = next() % 3 != 0;
            $crate::test_util::settle(uut);
            let took = offer && uut.s_axis_tready.val();
            if uut.m_axis_tvalid.val() && uut.m_axis_tready.val() {
                let keep = uut.m_axis_tkeep.val();
                let n = (0..$K).take_while(|i| keep.get_bit(*i)).count();
                cur.extend($crate::test_util::from_bits::<{ $W }>(uut.m_axis_tdata.val(), n));
                if uut.m_axis_tlast.val() {
                    let u = user.map_or(false, |f| f(&*uut));
                    out.push((std::mem::take(&mut cur), u));
                }
            }
            uut.clock.next = Clock { clk: true };
            $crate::test_util::settle(uut);
            uut.clock.next = Clock { clk: false };
            $crate::test_util::settle(uut);
            if took {
                sent += 1;
            }
            if out.len() == frames.len() && sent == beats.len() {
                break;
            }
        }
        out
    }};
}
pub(crate) use run_stream;
