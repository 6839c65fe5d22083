//! Mirrored log behaviour over the in-process engine pair: acknowledgement means the
//! partner's window holds the record; consistency points move the marker and free space;
//! replay applies exactly the records after the marker; pages are mirrored with their tag.

mod support;

use support::*;
use tandem::log::{Change, LogError};
use tandem::pages::{pages_in_region, PageError, PagePool};
use tandem::scan::{self, Stop};
use tandem_drivers::Engine;

#[test]
fn acknowledged_append_is_in_the_partners_window() {
    let p = pair();
    let lsn = p.log.append(7, Change::Write { offset: 4096 }, b"mirrored").unwrap();
    assert_eq!(lsn, 1);
    let s = scan::scan(p.b.mirror_window()).unwrap();
    assert_eq!(s.records.len(), 1);
    assert_eq!(s.records[0].header.lsn, 1);
    assert_eq!(s.records[0].header.service_tag, 7);
    assert_eq!(s.stop, Stop::End { next_lsn: 2 });
}

#[test]
fn replay_applies_only_records_after_the_marker_in_order() {
    let p = pair();
    let mut store = ModelStore::new(1 << 20);
    p.log.append(1, Change::Write { offset: 0 }, b"one").unwrap();
    p.log.append(1, Change::Write { offset: 0 }, b"two").unwrap();
    let cp = p.log.checkpoint(&mut store).unwrap();
    assert_eq!((cp.applied, cp.cp_lsn), (2, 2));
    p.log.append(1, Change::Write { offset: 0 }, b"3rd").unwrap();
    p.log.append(1, Change::Trim { offset: 100, len: 10 }, b"").unwrap();
    store.data[100..110].fill(9);
    let r = scan::replay(p.b.mirror_window(), &mut store).unwrap();
    assert_eq!((r.marker_lsn, r.applied, r.first_applied, r.last_applied, r.skipped), (2, 2, 3, 4, 0));
    assert_eq!(&store.data[..3], b"3rd");
    assert_eq!(&store.data[100..110], &[0; 10]);
    // A second replay finds the store already has them: nothing applied twice.
    let again = scan::replay(p.b.mirror_window(), &mut store).unwrap();
    assert_eq!((again.applied, again.skipped), (0, 2));
    store.applied_at_most_once().unwrap();
}

#[test]
fn checkpoint_frees_space_so_the_log_wraps_many_times() {
    let p = pair();
    let mut store = ModelStore::new(1 << 20);
    let payload = vec![0xA5u8; 60_000];
    for i in 0..200u64 {
        p.log.append(2, Change::Write { offset: (i % 8) * 65536 }, &payload).unwrap();
        if i % 3 == 2 {
            p.log.checkpoint(&mut store).unwrap();
        }
    }
    let st = p.log.stats();
    assert!(st.next_lsn == 201 && st.used < st.size);
    // More than 200 * 60 kB went through a 512 KiB region: it wrapped ~20 times.
    let r = scan::replay(p.b.mirror_window(), &mut store).unwrap();
    assert_eq!(r.last_applied.max(r.marker_lsn), 200);
    store.applied_at_most_once().unwrap();
}

#[test]
fn full_log_without_checkpoint_is_a_clear_error_not_lost_data() {
    let r = |base| tandem_drivers::MemRegion::anonymous(REGION, base).unwrap();
    let (a, _b) = tandem_drivers::mem::mem_pair(r(0x4000_0000), r(0), r(0x8000_0000), r(0));
    let engine: std::sync::Arc<dyn Engine> = std::sync::Arc::new(a);
    let mirror = std::sync::Arc::new(tandem::mirror::Mirror::new(engine, std::time::Duration::from_millis(50)));
    let log = tandem::log::MirroredLog::format(mirror, LOG_SIZE, PAGE_SIZE, PAGE_COUNT).unwrap();
    let payload = vec![1u8; 100_000];
    let mut ok = 0;
    let err = loop {
        match log.append(1, Change::Write { offset: 0 }, &payload) {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 10, "a 512 KiB log cannot hold 10 records of 100 kB");
    };
    assert!(matches!(err, LogError::Full { .. }), "{err}");
    assert_eq!(ok, 5);
    assert!(matches!(log.append(1, Change::Write { offset: 0 }, &vec![0; 200_000]), Err(LogError::TooLarge { .. })));
    assert!(matches!(log.append(1, Change::Trim { offset: 0, len: 1 }, b"x"), Err(LogError::Invalid(_))));
}

#[test]
fn torn_record_stops_replay_before_it() {
    let p = pair();
    p.log.append(1, Change::Write { offset: 0 }, b"kept").unwrap();
    // The second record's chunks: let only the first of two reach the partner.
    p.a.fail_after(Some(1));
    let big = vec![7u8; 100_000];
    let err = p.log.append(1, Change::Write { offset: 8192 }, &big).unwrap_err();
    assert!(matches!(err, LogError::Mirror(_)));
    let mut store = ModelStore::new(1 << 20);
    let r = scan::replay(p.b.mirror_window(), &mut store).unwrap();
    assert_eq!(r.applied, 1);
    assert!(matches!(r.stop, Stop::Torn { lsn: 2, why: "CRC mismatch", .. }), "{:?}", r.stop);
    assert_eq!(&store.data[..4], b"kept");
    assert_eq!(&store.data[8192..8196], &[0; 4]);
}

#[test]
fn recover_applies_own_unapplied_records_and_continues_the_lsns() {
    let p = pair();
    let mut store = ModelStore::new(1 << 20);
    p.log.append(1, Change::Write { offset: 10 }, b"abc").unwrap();
    p.log.checkpoint(&mut store).unwrap();
    p.log.append(1, Change::Write { offset: 20 }, b"def").unwrap();
    let mirror = p.log.mirror().clone();
    drop(p.log);
    let (log, report) = tandem::log::MirroredLog::recover(mirror, &mut store).unwrap();
    assert_eq!((report.applied, report.first_applied), (1, 2));
    assert_eq!(&store.data[20..23], b"def");
    assert_eq!(log.append(1, Change::Write { offset: 30 }, b"ghi").unwrap(), 3);
    // The partner sees the recovered marker, so its replay starts after LSN 2.
    let r = scan::replay(p.b.mirror_window(), &mut store).unwrap();
    assert_eq!((r.marker_lsn, r.applied, r.first_applied), (2, 1, 3));
    store.applied_at_most_once().unwrap();
}

#[test]
fn tagged_pages_are_mirrored_and_listed_by_service() {
    let p = pair();
    let pool = PagePool::open(p.log.mirror().clone(), *p.log.geometry());
    let a0 = pool.alloc(10, 0).unwrap();
    let a1 = pool.alloc(10, 1).unwrap();
    let b0 = pool.alloc(20, 0).unwrap();
    pool.write(a1, 100, b"service ten").unwrap();
    pool.write(b0, 0, b"service twenty").unwrap();
    assert!(matches!(pool.alloc(10, 1), Err(PageError::Exists { .. })));
    assert!(matches!(pool.write(a0, 4090, b"too long"), Err(PageError::OutOfPage { .. })));
    assert_eq!(pool.pages_of(10), vec![(a0, 0), (a1, 1)]);
    let geo = *p.log.geometry();
    let on_partner = pages_in_region(p.b.mirror_window(), &geo, 10);
    assert_eq!(on_partner.iter().map(|(id, e)| (*id, e.page_index)).collect::<Vec<_>>(), vec![(a0, 0), (a1, 1)]);
    let data = p.b.mirror_window().read_vec(geo.page_data_offset(a1.0) + 100, 11).unwrap();
    assert_eq!(data, b"service ten");
    pool.free(a0).unwrap();
    assert_eq!(pages_in_region(p.b.mirror_window(), &geo, 10).len(), 1);
    for i in 0..PAGE_COUNT - 2 {
        pool.alloc(30, i.into()).unwrap();
    }
    assert!(matches!(pool.alloc(30, 999), Err(PageError::Full(_))));
    // A pool reopened over the same region sees the same pages.
    let again = PagePool::open(p.log.mirror().clone(), geo);
    assert_eq!(again.pages_of(20), vec![(b0, 0)]);
}

#[test]
fn local_only_writes_are_resynced_by_dirty_ranges_not_a_full_copy() {
    let p = pair();
    let mirror = p.log.mirror().clone();
    p.log.append(1, Change::Write { offset: 0 }, &[1u8; 1000]).unwrap();
    // Partner lost: acknowledge locally, track what changed.
    mirror.set_local_only();
    assert_eq!(mirror.mode(), tandem::mirror::MirrorMode::LocalOnly);
    let lsn = p.log.append(1, Change::Write { offset: 8192 }, &[2u8; 3000]).unwrap();
    p.log.append(1, Change::Write { offset: 16384 }, &[3u8; 100]).unwrap();
    let s = scan::scan(p.b.mirror_window()).unwrap();
    assert_eq!(s.records.len(), 1, "the partner did not see the local-only records");
    // Partner back: mirrored again, then copy only what changed.
    let dirty = mirror.set_mirrored();
    assert!(dirty.count() >= 1 && dirty.bytes() < p.a.host_region().len() / 8, "a partial resync: {} bytes", dirty.bytes());
    let mut seen = Vec::new();
    mirror.resync(&dirty, |done, total| seen.push((done, total))).unwrap();
    assert_eq!(seen.last().map(|(d, t)| d == t), Some(true));
    let s = scan::scan(p.b.mirror_window()).unwrap();
    assert_eq!(s.records.iter().map(|r| r.header.lsn).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(lsn, 2);
    let mut store = ModelStore::new(1 << 20);
    let r = scan::replay(p.b.mirror_window(), &mut store).unwrap();
    assert_eq!(r.applied, 3);
    assert_eq!(&store.data[16384..16484], &[3u8; 100]);
}
