//! Unit tests of the vfio engine over the fake card: the open sequence and its errors,
//! the version check, phase-bit wrap of the completion ring, back-pressure, the MSI-X
//! path and teardown order.

use super::fake::{FakeAnswers, FakeLink, FakeVfio};
use super::*;
use crate::soft::{SoftConfig, SoftEngine};
use tandem_hsi::{CompletionStatus, Counter, Opcode};

const LEN: u64 = 1 << 20;

fn soft_partner() -> (crate::soft::SoftListener, crate::soft::SoftListener) {
    let l = || SoftEngine::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (l(), l())
}

fn config(depth: u32, irq: IrqMode) -> VfioConfig {
    let mut c = VfioConfig::new("0000:3b:00.0", LEN, LEN);
    c.ring_depth = depth;
    c.irq = irq;
    c.retransmit_timeout = Duration::from_millis(30);
    c.heartbeat_interval = Duration::from_millis(50);
    c
}

/// A vfio engine over a fake card, linked to a soft engine.
fn setup(depth: u32, irq: IrqMode) -> (VfioEngine, Arc<FakeVfio>, SoftEngine) {
    let (la, lb) = soft_partner();
    let (addr_a, addr_b) = (la.local_addr(), lb.local_addr());
    let fake = FakeVfio::new(FakeLink::new(la, addr_b));
    let e = VfioEngine::open_with(fake.clone(), config(depth, irq)).expect("open");
    let region = || MemRegion::anonymous(LEN, 0x1000_0000).unwrap();
    let mut sc = SoftConfig::new(addr_b, addr_a, region(), region());
    sc.retransmit_timeout = Duration::from_millis(30);
    sc.heartbeat_interval = Duration::from_millis(50);
    sc.io_timeout = Duration::from_secs(1);
    let soft = SoftEngine::start(lb, sc).unwrap();
    (e, fake, soft)
}

fn entry(e: &VfioEngine, k: u32) -> SubmissionEntry {
    let data = [k as u8; 64];
    let off = u64::from(k % 1000) * 64;
    e.host_region().write(off, &data).unwrap();
    SubmissionEntry {
        opcode: Opcode::Log,
        service_tag: k,
        host_addr: e.host_region().dma_base() + off,
        window_offset: off,
        length: 64,
        cookie: k,
    }
}

fn collect(e: &VfioEngine, n: usize) -> Vec<CompletionEntry> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} completions", got.len());
        let _ = e.wait_completions(Duration::from_millis(100));
        let want = n - got.len();
        e.poll_completions(&mut got, want).unwrap();
    }
    got
}

fn open_err(answers: FakeAnswers, poke: &[(u32, u32)]) -> EngineError {
    let (la, lb) = soft_partner();
    let fake = FakeVfio::with_answers(FakeLink::new(la, lb.local_addr()), answers);
    for &(off, v) in poke {
        fake.device().poke(off, v);
    }
    VfioEngine::open_with(fake, config(8, IrqMode::Poll)).expect_err("open must fail")
}

#[test]
fn a_missing_device_names_its_sysfs_path() {
    let e = open_err(FakeAnswers { sysfs: None, ..FakeAnswers::default() }, &[]);
    let msg = e.to_string();
    assert!(matches!(e, EngineError::Config { field: "pci_addr", .. }), "{e:?}");
    assert!(msg.contains("/sys/bus/pci/devices/0000:3b:00.0"), "{msg}");
}

#[test]
fn no_iommu_group_or_wrong_driver_says_how_to_bind_to_vfio_pci() {
    let no_group = FakeAnswers { sysfs: Some(sys::SysfsDevice { iommu_group: None, driver: None }), ..FakeAnswers::default() };
    let msg = open_err(no_group, &[]).to_string();
    for want in ["no IOMMU group", "intel_iommu=on iommu=pt", "driver_override", "vfio-pci", "drivers_probe"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    let wrong =
        FakeAnswers { sysfs: Some(sys::SysfsDevice { iommu_group: Some(3), driver: Some("xdma".into()) }), ..FakeAnswers::default() };
    let msg = open_err(wrong, &[]).to_string();
    assert!(msg.contains("bound to driver xdma, not vfio-pci") && msg.contains("driver_override"), "{msg}");
}

#[test]
fn a_group_that_is_not_viable_is_refused() {
    let msg = open_err(FakeAnswers { group_flags: 0, ..FakeAnswers::default() }, &[]).to_string();
    assert!(msg.contains("IOMMU group 42 is not viable") && msg.contains("/sys/kernel/iommu_groups/42/devices"), "{msg}");
    let msg = open_err(FakeAnswers { type1_iommu: false, ..FakeAnswers::default() }, &[]).to_string();
    assert!(msg.contains("Type1"), "{msg}");
}

#[test]
fn the_hsi_version_is_checked() {
    let id = hr::id::BASE + hr::id::HSI_VERSION;
    match open_err(FakeAnswers::default(), &[(id, 0x0002_0000)]) {
        EngineError::HsiVersion { found, needed_major, needed_minor } => {
            assert_eq!((found, needed_major, needed_minor), (0x0002_0000, 1, 0));
        }
        e => panic!("expected HsiVersion, got {e:?}"),
    }
    // A newer minor version of the same major is accepted and reported.
    let (la, lb) = soft_partner();
    let fake = FakeVfio::new(FakeLink::new(la, lb.local_addr()));
    fake.device().poke(id, 0x0001_0007);
    let e = VfioEngine::open_with(fake, config(8, IrqMode::Poll)).expect("minor 7 is compatible");
    assert_eq!(e.info().hsi_version, 0x0001_0007);
    assert_eq!(e.info().backend, "vfio");
}

#[test]
fn a_broken_register_chain_is_refused_at_open() {
    let msg = open_err(FakeAnswers::default(), &[(hr::link::BASE + hr::NEXT, hr::sq::BASE)]).to_string();
    assert!(msg.contains("register chain loops"), "{msg}");
    let msg = open_err(FakeAnswers::default(), &[(hr::memory::BASE + hr::VERSION, 2)]).to_string();
    assert!(msg.contains("Memory block at 0x400 has version 2"), "{msg}");
    let msg = open_err(FakeAnswers::default(), &[(hr::id::BASE + hr::NEXT, 0x2000)]).to_string();
    assert!(msg.contains("outside BAR0"), "{msg}");
}

#[test]
fn open_programs_the_card_and_teardown_unmaps_dma_before_closing() {
    let (e, fake, _soft) = setup(8, IrqMode::Msix);
    let dev = fake.device();
    let bufs = e.dma_buffers();
    let rd64 = |blk: &hr::RegBlock, lo: u32| u64::from(dev.peek(blk.base + lo)) | u64::from(dev.peek(blk.base + lo + 4)) << 32;
    assert_eq!(rd64(&hr::memory::BLOCK, hr::memory::HOST_BASE_LO), bufs[0].iova());
    assert_eq!(rd64(&hr::memory::BLOCK, hr::memory::HOST_SIZE_LO), LEN);
    assert_eq!(rd64(&hr::memory::BLOCK, hr::memory::WINDOW_BASE_LO), bufs[1].iova());
    assert_eq!(rd64(&hr::sq::BLOCK, hr::sq::BASE_LO), bufs[2].iova());
    assert_eq!(rd64(&hr::cq::BLOCK, hr::cq::BASE_LO), bufs[3].iova());
    assert_eq!(dev.peek(hr::sq::BASE + hr::sq::SIZE_LOG2), 4, "depth 8 needs 16 slots");
    assert_eq!(dev.peek(hr::control::BASE + hr::control::RETRANSMIT_US), 30_000);
    assert_eq!(dev.peek(hr::control::BASE + hr::control::HEARTBEAT_US), 50_000);
    assert_eq!(dev.peek(hr::control::BASE + hr::control::IRQ_ENABLE), Irq::COMPLETION.bits());
    assert_eq!(e.host_region().dma_base(), bufs[0].iova(), "entries carry IOVAs");
    assert_eq!(dev.iommu_mappings(), 4);
    assert!(dev.is_running());
    drop(e);
    assert!(!dev.is_running());
    assert_eq!(dev.iommu_mappings(), 0, "every DMA buffer unmapped");
    let status = Status::from_bits_truncate(dev.peek(hr::control::BASE + hr::control::STATUS));
    assert!(!status.contains(Status::ERROR), "the card had stopped before its memory was unmapped");
    let calls = fake.calls();
    let pos = |name: &str| calls.iter().position(|c| c == name).unwrap_or_else(|| panic!("{name} not called: {calls:?}"));
    let order = [
        "sysfs_device",
        "open_container",
        "api_version",
        "check_extension",
        "open_group",
        "group_status",
        "group_set_container",
        "set_iommu",
        "group_device_fd",
        "device_info",
        "region_info",
        "map_region",
        "map_dma",
        "set_irq_eventfds",
    ];
    for w in order.windows(2) {
        assert!(pos(w[0]) < pos(w[1]), "{} before {}: {calls:?}", w[0], w[1]);
    }
    let last_unmap = calls.iter().rposition(|c| c == "unmap_dma").unwrap();
    let first_close = calls.iter().position(|c| c == "close").unwrap();
    assert!(last_unmap < first_close, "DMA unmapped before the descriptors close: {calls:?}");
    assert_eq!(calls.iter().filter(|c| *c == "close").count(), 3, "device, group and container closed");
}

#[test]
fn completion_ring_phase_bit_wraps() {
    // Depth 3: four slots, so 41 completions go round the ring ten times and a bit.
    let (e, fake, soft) = setup(3, IrqMode::Poll);
    assert_eq!(e.info().ring_depth, 3);
    let mut k = 0;
    let mut all = Vec::new();
    for round in 0..14 {
        let n = 1 + round % 3;
        let batch: Vec<_> = (0..n).map(|i| entry(&e, k + i)).collect();
        k += n;
        assert_eq!(e.post(&batch).unwrap(), batch.len());
        e.ring_doorbell().unwrap();
        let done = collect(&e, batch.len());
        for (s, c) in batch.iter().zip(&done) {
            assert_eq!((c.cookie, c.status), (s.cookie, CompletionStatus::Ok));
        }
        all.extend(done);
    }
    assert_eq!(k, 27);
    let more: Vec<_> = (27..41).map(|i| entry(&e, i)).collect();
    let mut got = Vec::new();
    e.post_all(&more, &mut got, Duration::from_secs(20)).unwrap();
    all.extend(collect_rest(&e, got, more.len()));
    let cookies: Vec<u32> = all.iter().map(|c| c.cookie).collect();
    assert_eq!(cookies, (0..41).collect::<Vec<_>>(), "in order, once each");
    assert!(all.windows(2).all(|w| w[1].sequence > w[0].sequence), "sequences increase");
    // 41 = 10 laps of 4 + 1: slot 0 holds lap 11 (phase 1), slots 1-3 lap 10 (phase 0).
    // SAFETY: the card is idle (every entry completed); this only reads the ring.
    let cq = unsafe { e.dma_buffers()[3].region() };
    let phases: Vec<u8> = (0..4).map(|s| cq.read_vec(s * 16 + completion::PHASE.offset as u64, 1).unwrap()[0]).collect();
    assert_eq!(phases, [1, 0, 0, 0]);
    assert_eq!(fake.device().peek(hr::cq::BASE + hr::cq::TAIL), 1, "the host returned every slot");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.device().peek(hr::cq::BASE + hr::cq::HEAD) != 1 {
        assert!(Instant::now() < deadline, "the card's completion HEAD reaches slot 1");
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..41u32 {
        let off = u64::from(i % 1000) * 64;
        assert_eq!(soft.mirror_window().read_vec(off, 64).unwrap(), vec![i as u8; 64]);
    }
}

fn collect_rest(e: &VfioEngine, got: Vec<CompletionEntry>, n: usize) -> Vec<CompletionEntry> {
    let have = got.len();
    let mut got = got;
    got.extend(collect(e, n - have));
    got
}

#[test]
fn ring_full_back_pressure_counts_until_completions_are_consumed() {
    let (e, _fake, _soft) = setup(3, IrqMode::Poll);
    let list: Vec<_> = (0..6).map(|k| entry(&e, k)).collect();
    assert_eq!(e.post(&list).unwrap(), 3, "the ring takes its depth");
    assert_eq!(e.post(&list[3..]).unwrap(), 0, "and no more");
    e.ring_doorbell().unwrap();
    // The completions arrive on the ring, but until the host consumes them the entries
    // are still outstanding.
    assert!(e.wait_completions(Duration::from_secs(10)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.registers().read(Block::Cq, hr::cq::HEAD).unwrap() != 3 {
        assert!(Instant::now() < deadline, "the card wrote three completions");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(e.post(&list[3..]).unwrap(), 0, "completions on the ring but not consumed still hold their slots");
    let mut got = Vec::new();
    assert_eq!(e.poll_completions(&mut got, 1).unwrap(), 1);
    assert_eq!(e.post(&list[3..]).unwrap(), 1, "one consumed, one slot free");
    e.poll_completions(&mut got, 10).unwrap();
    assert_eq!(e.post(&list[4..]).unwrap(), 2);
    e.ring_doorbell().unwrap();
    let got = collect_rest(&e, got, 6);
    assert_eq!(got.iter().map(|c| c.cookie).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn msix_eventfd_wakes_the_waiter_and_the_cause_is_acknowledged() {
    let (e, fake, _soft) = setup(16, IrqMode::Msix);
    let e = Arc::new(e);
    // Nothing outstanding: the wait times out.
    let t = Instant::now();
    assert!(!e.wait_completions(Duration::from_millis(60)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(55));
    // An entry posted while the waiter sleeps in poll(2) on the eventfd: only the MSI-X
    // signal can wake it before its 20 s timeout.
    let e2 = e.clone();
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let x = entry(&e2, 1);
        e2.post(&[x]).unwrap();
        e2.ring_doorbell().unwrap();
    });
    let t = Instant::now();
    assert!(e.wait_completions(Duration::from_secs(20)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(10), "woken by the interrupt, not the timeout");
    poster.join().unwrap();
    let mut got = Vec::new();
    assert_eq!(e.poll_completions(&mut got, 8).unwrap(), 1);
    assert_eq!(got[0].status, CompletionStatus::Ok);
    // Another completion, taken by polling alone: the card raises COMPLETION and nobody
    // clears it, until a waiter does (RW1C) before it sleeps again.
    e.post(&[entry(&e, 2)]).unwrap();
    e.ring_doorbell().unwrap();
    let irq_status = || Irq::from_bits_truncate(fake.device().peek(hr::control::BASE + hr::control::IRQ_STATUS));
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 2 || !irq_status().contains(Irq::COMPLETION) {
        assert!(Instant::now() < deadline, "the card completed the entry and raised COMPLETION");
        e.poll_completions(&mut got, 8).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!e.wait_completions(Duration::from_millis(20)).unwrap());
    assert!(!irq_status().contains(Irq::COMPLETION), "the waiter acknowledged the completion cause");
    assert!(fake.calls().iter().any(|c| c == "set_irq_eventfds"));
}

#[test]
fn polling_mode_registers_no_interrupt() {
    let (e, fake, _soft) = setup(16, IrqMode::Poll);
    assert_eq!(fake.device().peek(hr::control::BASE + hr::control::IRQ_ENABLE), 0);
    assert!(!fake.calls().iter().any(|c| c == "set_irq_eventfds"));
    e.post(&[entry(&e, 9)]).unwrap();
    e.ring_doorbell().unwrap();
    assert_eq!(collect(&e, 1)[0].status, CompletionStatus::Ok);
}

#[test]
fn shutdown_wakes_a_waiter_blocked_on_the_eventfd() {
    let (e, _fake, _soft) = setup(16, IrqMode::Msix);
    let e = Arc::new(e);
    let e2 = e.clone();
    let t = Instant::now();
    let waiter = std::thread::spawn(move || e2.wait_completions(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(50));
    e.shutdown();
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(EngineError::Shutdown)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(e.link_state(), LinkState::Down);
}

#[test]
fn counters_extend_the_32_bit_registers() {
    let (e, fake, _soft) = setup(16, IrqMode::Poll);
    e.post(&[entry(&e, 1), entry(&e, 2)]).unwrap();
    e.ring_doorbell().unwrap();
    collect(&e, 2);
    let c = e.counters();
    assert_eq!(c.get(Counter::DataTx), 2);
    assert_eq!(u64::from(fake.device().peek(hr::counters::BASE + Counter::DataTx.offset())), 2);
}

#[test]
fn dma_memory_falls_back_to_normal_pages_without_hugepages() {
    let (e, _fake, _soft) = setup(16, IrqMode::Poll);
    let reserved: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let host = &e.dma_buffers()[0];
    if reserved == 0 {
        assert!(!host.is_huge(), "no huge pages are reserved here, so the buffer must be on normal pages");
    }
    assert!(!e.dma_buffers()[2].is_huge(), "rings use normal pages");
    // Either way the buffer works: a payload written by the host reaches the partner.
    e.post(&[entry(&e, 5)]).unwrap();
    e.ring_doorbell().unwrap();
    assert_eq!(collect(&e, 1)[0].status, CompletionStatus::Ok);
}

#[test]
fn config_validation_names_the_field() {
    let mut c = config(8, IrqMode::Poll);
    c.pci_addr = "3b:00.0".into();
    assert!(matches!(c.validate(), Err(EngineError::Config { field: "pci_addr", .. })));
    let mut c = config(0, IrqMode::Poll);
    assert!(matches!(c.validate(), Err(EngineError::Config { field: "ring_depth", .. })));
    c.ring_depth = 65535;
    assert!(c.validate().is_ok());
    assert_eq!(c.ring_slots(), 65536);
    c.heartbeat_interval = Duration::ZERO;
    assert!(matches!(c.validate(), Err(EngineError::Config { field: "heartbeat_interval", .. })));
}

#[test]
fn iommu_unmap_of_memory_in_use_stops_the_device() {
    let (e, fake, _soft) = setup(16, IrqMode::Poll);
    let dev = fake.device().clone();
    let host = e.dma_buffers()[0].clone();
    assert!(dev.is_running());
    // Unmapping memory the card uses stops the card first (as an IOMMU fault would).
    fake.unmap_dma(0, host.iova(), host.mapped_len()).expect("unmap");
    assert!(!dev.is_running());
    assert!(Status::from_bits_truncate(dev.peek(hr::control::BASE + hr::control::STATUS)).contains(Status::ERROR));
    assert_eq!(dev.iommu_mappings(), 3);
    // The engine's own unmap of that buffer now fails; it leaks the pages rather than
    // free memory a device might still reach, and tears the rest down.
    drop(host);
    drop(e);
    assert_eq!(dev.iommu_mappings(), 0);
}
