//! Renders `docs/hsi.md` from the tables in this crate.

use crate::codes::ALL_TABLES;
use crate::layout::Layout;
use crate::regs::{RegBlock, BLOCKS, BLOCK_STRIDE};
use std::fmt::Write;

fn layout_table(out: &mut String, l: &Layout) {
    let _ = writeln!(out, "### {} ({} bytes)\n", l.title, l.size);
    let _ = writeln!(out, "| byte offset | bytes | bits | field | meaning |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for f in l.fields {
        let _ = writeln!(out, "| {:#06x} | {} | {}:{} | `{}` | {} |", f.offset, f.width, f.bit_hi(), f.bit_lo(), f.name, f.doc);
    }
    out.push('\n');
}

fn block_table(out: &mut String, b: &RegBlock) {
    let _ = writeln!(out, "### {} block: base {:#06x}, type {:#010x}, version {}\n", b.name, b.base, b.type_id, b.version);
    let _ = writeln!(out, "{}\n", b.doc);
    let _ = writeln!(out, "| offset | access | register | meaning |");
    let _ = writeln!(out, "|---|---|---|---|");
    let _ = writeln!(out, "| 0x00 | RO | `TYPE` | {:#010x} |", b.type_id);
    let _ = writeln!(out, "| 0x04 | RO | `VERSION` | {} |", b.version);
    let _ = writeln!(out, "| 0x08 | RO | `NEXT` | {:#06x}{} |", b.next(), if b.next() == 0 { " (last block)" } else { "" });
    for r in b.regs {
        let _ = writeln!(out, "| {:#04x} | {} | `{}` | {} |", r.offset, r.access.name(), r.name, r.doc);
    }
    out.push('\n');
    for r in b.regs.iter().filter(|r| !r.bits.is_empty()) {
        let _ = writeln!(out, "`{}` bits:\n", r.name);
        let _ = writeln!(out, "| bit | name | meaning |");
        let _ = writeln!(out, "|---|---|---|");
        for bit in r.bits {
            let _ = writeln!(out, "| {} | `{}` | {} |", bit.bit, bit.name, bit.doc);
        }
        out.push('\n');
    }
}

/// The whole HSI document.
pub fn render() -> String {
    let mut out = String::new();
    out.push_str("<!-- Generated from the tandem-hsi crate by `TANDEM_BLESS=1 cargo test -p tandem-hsi --test generated_files`. Do not edit. -->\n\n");
    out.push_str("# Tandem hardware/software interface\n\n");
    let _ = writeln!(
        out,
        "HSI version {}.{} (`{:#010x}`). All integers are little-endian. Bit 0 is the least significant bit of byte 0. \
         A driver accepts an engine whose ID block reports the same major version and an equal or newer minor version.\n",
        crate::hsi_major(crate::HSI_VERSION),
        crate::hsi_minor(crate::HSI_VERSION),
        crate::HSI_VERSION
    );
    out.push_str("## Wire frames\n\n");
    let _ = writeln!(
        out,
        "A frame is the {}-byte header, `LENGTH` payload bytes (at most {} = MAX_PAYLOAD) and a 4-byte CRC32C (Castagnoli, \
         the iSCSI/ext4 polynomial 0x1EDC6F41, reflected, initial and final XOR 0xFFFFFFFF) over header and payload. \
         A receiver checks the header first (magic, version, type, kind, reserved fields, length bound); a frame whose \
         header fails those checks resets the link, because the stream can no longer be trusted. A frame whose CRC fails \
         is NACKed and never written.\n",
        crate::frame::HEADER_LEN,
        crate::frame::MAX_PAYLOAD
    );
    layout_table(&mut out, &crate::frame::header::LAYOUT);
    out.push_str(
        &"### Link protocol\n\n\
         - Each connection starts unsynced. The sender's first frame is a heartbeat carrying its session id and its oldest \
           unacknowledged sequence. A receiver that has no state for that session takes that sequence as the next it expects; \
           it then ACKs the highest sequence it holds.\n\
         - Data frames carry consecutive sequence numbers from 1. The receiver writes a data frame into its mirror window only \
           when the CRC is good, the sequence is the one it expects and `[WINDOW_OFFSET, WINDOW_OFFSET + LENGTH)` lies inside \
           the window; then it ACKs cumulatively (one ACK may cover many frames).\n\
         - A frame already held (sequence below the expected one) is not written again and is ACKed again: duplicates are harmless.\n\
         - A gap or a CRC error is NACKed with the expected sequence; the sender goes back to it (go-back-N). A sender also \
           goes back after `RETRANSMIT_US` without progress and after a reconnect.\n\
         - A data frame outside the window is neither written nor consumed: the receiver NACKs it with reason Bounds and its \
           own sequence and keeps expecting that sequence. The sender sends a barrier under the same sequence in its place and \
           completes the entry with status RemoteBounds once that barrier is ACKed. So a lost NACK only delays the answer, and \
           no cumulative ACK can ever cover a rejected entry.\n\
         - A link that was Up goes Down when the partner falls silent: the RTL engine after {dead} heartbeat intervals \
           (LINK_DEAD_HEARTBEATS) without a valid frame, the soft engine when its connection closes or its I/O timeout \
           passes. The engine counts a link reset (`LinkResets`) when the link is Up again.\n\
         - A barrier is a data frame without payload; the receiver makes its window durable before it ACKs it.\n\
         - Heartbeats flow every `HEARTBEAT_US` on an idle link and are answered with an ACK.\n\n"
            .replace("{dead}", &crate::frame::LINK_DEAD_HEARTBEATS.to_string()),
    );
    out.push_str("## Codes\n\n");
    for t in ALL_TABLES {
        let _ = writeln!(out, "### {}\n\nCarried in {}.\n", t.title, t.carried_in);
        let _ = writeln!(out, "| value | name | meaning |");
        let _ = writeln!(out, "|---|---|---|");
        for v in t.values {
            let _ = writeln!(out, "| {} | `{}` | {} |", v.value, v.name, v.doc);
        }
        out.push('\n');
    }
    out.push_str(
        "## Rings\n\nThe submission and completion rings are arrays of entries in host memory, sized by powers of two. \
                  The host writes entries, then writes the submission ring `HEAD` (the doorbell). The engine writes one completion per \
                  submission entry, in submission order, and advances the completion ring `HEAD`.\n\n",
    );
    layout_table(&mut out, &crate::entry::submission::LAYOUT);
    layout_table(&mut out, &crate::entry::completion::LAYOUT);
    out.push_str("## Register map\n\n");
    let _ = writeln!(
        out,
        "32-bit registers in BAR0 (AXI4-Lite). Blocks are {:#x} bytes apart and chained by `NEXT` from offset 0; a driver \
         walks the chain, refuses loops and versions it does not know, and finds blocks by `TYPE`.\n",
        BLOCK_STRIDE
    );
    for b in BLOCKS {
        block_table(&mut out, b);
    }
    out.push_str("## Mirror window layout\n\n");
    out.push_str(
        "A node's local region and the partner's mirror window have this one layout: the engine copies each change to the \
         same offset. Offsets are from the start of the window.\n\n",
    );
    let _ = writeln!(
        out,
        "| offset | what |\n|---|---|\n| {:#06x} | window header |\n| {:#06x} | consistency-point marker, slot 0 |\n| {:#06x} | consistency-point marker, slot 1 |\n| {:#06x} | status block (the node's latest HA heartbeat) |\n| {:#06x} | log region (`LOG_SIZE` bytes, records aligned to {} bytes) |\n| `PAGE_TABLE_OFFSET` | page table, one entry per page |\n| `PAGE_OFFSET` | pages ({}-byte aligned) |\n",
        crate::window::HEADER_OFFSET,
        crate::window::MARKER_OFFSETS[0],
        crate::window::MARKER_OFFSETS[1],
        crate::window::STATUS_OFFSET,
        crate::window::LOG_OFFSET,
        crate::window::RECORD_ALIGN,
        crate::window::PAGE_ALIGN
    );
    out.push_str(
        "Replay reads the newest valid marker, then the records from `NEXT_RECORD` on: each must have a valid header and \
         CRC and the LSN one above the last; replay stops at the first record that does not. A record that does not fit before \
         the end of the region is preceded by a wrap record (or, when fewer than a header's bytes remain, by nothing) and \
         starts at the region's beginning.\n\n",
    );
    layout_table(&mut out, &crate::window::header::LAYOUT);
    layout_table(&mut out, &crate::window::marker::LAYOUT);
    layout_table(&mut out, &crate::window::status::LAYOUT);
    layout_table(&mut out, &crate::window::record::LAYOUT);
    layout_table(&mut out, &crate::window::page_entry::LAYOUT);
    out
}
