//! Verilator testbenches of the Tandem engine, driven from Rust.
//!
//! The build script generates the Verilog from `tandem-hdl`, verilates it at each
//! datapath width and links a generated C shim. [`Model`] is the safe handle: set input
//! ports, read output ports (by name, as `u32` words, least significant first), `eval`
//! to settle, `tick` for one clock cycle, optional VCD trace and line coverage.
//!
//! Environment: `TANDEM_VCD=<dir>` makes every model write `<dir>/<name>.vcd` (open with
//! GTKWave); `TANDEM_COVERAGE=<dir>` makes every model write `<dir>/<link|engine><W>-<name>.dat` when it
//! is dropped (merge and annotate with `verilator_coverage`).

use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;

mod ports_link64 {
    include!(concat!(env!("OUT_DIR"), "/ports_link64.rs"));
}
mod ports_link512 {
    include!(concat!(env!("OUT_DIR"), "/ports_link512.rs"));
}
mod ports_engine64 {
    include!(concat!(env!("OUT_DIR"), "/ports_engine64.rs"));
}
mod ports_engine512 {
    include!(concat!(env!("OUT_DIR"), "/ports_engine512.rs"));
}

/// Path of the generated Verilog at 64 bits (for lint and synthesis scripts).
pub const LINK64_VERILOG: &str = env!("TANDEM_LINK64_V");
/// Path of the generated Verilog at 512 bits.
pub const LINK512_VERILOG: &str = env!("TANDEM_LINK512_V");
/// Path of the generated whole-engine Verilog (`EngineTop`) at 64 bits.
pub const ENGINE64_VERILOG: &str = env!("TANDEM_ENGINE64_V");
/// Path of the generated whole-engine Verilog at 512 bits.
pub const ENGINE512_VERILOG: &str = env!("TANDEM_ENGINE512_V");
/// Core clock the simulated engines report in `CLOCK_KHZ` (their microsecond timers
/// count this many kHz / 1000 cycles).
pub const ENGINE_CLOCK_KHZ: u32 = 250_000;

macro_rules! shim_api {
    ($($prefix:ident),*) => {
        $(
            mod $prefix {
                use super::*;
                extern "C" {
                    #[link_name = concat!(stringify!($prefix), "_new")]
                    pub fn new(vcd: *const c_char) -> *mut c_void;
                    #[link_name = concat!(stringify!($prefix), "_free")]
                    pub fn free(sim: *mut c_void);
                    #[link_name = concat!(stringify!($prefix), "_eval")]
                    pub fn eval(sim: *mut c_void);
                    #[link_name = concat!(stringify!($prefix), "_tick")]
                    pub fn tick(sim: *mut c_void);
                    #[link_name = concat!(stringify!($prefix), "_set")]
                    pub fn set(sim: *mut c_void, port: u32, words: *const u32);
                    #[link_name = concat!(stringify!($prefix), "_get")]
                    pub fn get(sim: *mut c_void, port: u32, words: *mut u32);
                    #[link_name = concat!(stringify!($prefix), "_coverage_write")]
                    pub fn coverage_write(sim: *mut c_void, path: *const c_char) -> i32;
                }
            }
        )*
    };
}
shim_api!(link64, link512, engine64, engine512);

/// The C entry points of one verilated model.
#[derive(Debug, Clone, Copy)]
struct Api {
    new: unsafe extern "C" fn(*const c_char) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void),
    eval: unsafe extern "C" fn(*mut c_void),
    tick: unsafe extern "C" fn(*mut c_void),
    set: unsafe extern "C" fn(*mut c_void, u32, *const u32),
    get: unsafe extern "C" fn(*mut c_void, u32, *mut u32),
    coverage_write: unsafe extern "C" fn(*mut c_void, *const c_char) -> i32,
}

/// A verilated model at one width: the link datapath (`tandem_hdl::link_top::LinkTop`,
/// [`Model::new`]) or the whole engine (`tandem_hdl::engine_top::EngineTop`,
/// [`Model::engine`]).
#[derive(Debug)]
pub struct Model {
    sim: *mut c_void,
    api: Api,
    ports: &'static [(&'static str, usize, bool)],
    width: usize,
    kind: &'static str,
    name: String,
    cycles: u64,
}

impl Model {
    /// A fresh model at `width` bits (64 or 512); `name` names its trace and coverage files.
    ///
    /// # Panics
    /// On another width, or when `TANDEM_VCD` names a directory that cannot be created.
    pub fn new(width: usize, name: &str) -> Self {
        Self::open("link", width, name)
    }

    /// A fresh whole engine (`tandem_hdl::engine_top::EngineTop`) at `width` bits (64 or
    /// 512): ports `s_axil_*`, `m_axi_*`, `m_axis_link_*`, `s_axis_link_*`, `irq`.
    ///
    /// # Panics
    /// As [`Model::new`].
    pub fn engine(width: usize, name: &str) -> Self {
        Self::open("engine", width, name)
    }

    fn open(kind: &'static str, width: usize, name: &str) -> Self {
        macro_rules! api {
            ($m:ident, $p:ident) => {
                (
                    Api {
                        new: $m::new,
                        free: $m::free,
                        eval: $m::eval,
                        tick: $m::tick,
                        set: $m::set,
                        get: $m::get,
                        coverage_write: $m::coverage_write,
                    },
                    $p::PORTS,
                )
            };
        }
        let (api, ports) = match (kind, width) {
            ("link", 64) => api!(link64, ports_link64),
            ("link", 512) => api!(link512, ports_link512),
            ("engine", 64) => api!(engine64, ports_engine64),
            ("engine", 512) => api!(engine512, ports_engine512),
            (_, other) => panic!("Model: no verilated {kind} model at width {other} (64 or 512)"),
        };
        let vcd = std::env::var_os("TANDEM_VCD").map(|dir| {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("TANDEM_VCD={}: {e}", dir.display()));
            CString::new(dir.join(format!("{name}.vcd")).to_string_lossy().into_owned()).expect("path has no NUL")
        });
        let vcd_ptr = vcd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: `vcd_ptr` is null or a NUL-terminated string that outlives the call; the
        // shim copies what it needs and returns an owned model handle.
        let sim = unsafe { (api.new)(vcd_ptr) };
        assert!(!sim.is_null(), "shim returned no model");
        Model { sim, api, ports, width, kind, name: name.to_string(), cycles: 0 }
    }

    /// Datapath width in bits.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Clock cycles run so far.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    fn port(&self, name: &str) -> (u32, usize, bool) {
        let (i, (_, w, input)) =
            self.ports.iter().enumerate().find(|(_, p)| p.0 == name).unwrap_or_else(|| panic!("no port {name} on the model"));
        (i as u32, *w, *input)
    }

    /// Sets an input port from words, least significant first (missing words are 0).
    pub fn set_words(&mut self, name: &str, words: &[u32]) {
        let (i, w, input) = self.port(name);
        assert!(input, "{name} is an output");
        let mut buf = vec![0u32; w.div_ceil(32)];
        for (d, s) in buf.iter_mut().zip(words) {
            *d = *s;
        }
        // SAFETY: `buf` holds exactly the port's word count, which is what the shim reads.
        unsafe { (self.api.set)(self.sim, i, buf.as_ptr()) }
    }

    /// Sets an input port of at most 64 bits.
    pub fn set(&mut self, name: &str, value: u64) {
        self.set_words(name, &[value as u32, (value >> 32) as u32]);
    }

    /// Sets an input port from bytes (byte 0 in bits 7:0).
    pub fn set_bytes(&mut self, name: &str, bytes: &[u8]) {
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(b)
            })
            .collect();
        self.set_words(name, &words);
    }

    /// Reads a port as words, least significant first.
    pub fn get_words(&self, name: &str) -> Vec<u32> {
        let (i, w, _) = self.port(name);
        let mut buf = vec![0u32; w.div_ceil(32)];
        // SAFETY: `buf` holds exactly the port's word count, which is what the shim writes.
        unsafe { (self.api.get)(self.sim, i, buf.as_mut_ptr()) };
        buf
    }

    /// Reads a port of at most 64 bits.
    pub fn get(&self, name: &str) -> u64 {
        let w = self.get_words(name);
        u64::from(w[0]) | w.get(1).map_or(0, |h| u64::from(*h) << 32)
    }

    /// Reads a port as bytes (byte 0 from bits 7:0).
    pub fn get_bytes(&self, name: &str) -> Vec<u8> {
        self.get_words(name).iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Settles combinational logic after inputs changed.
    pub fn eval(&mut self) {
        // SAFETY: `self.sim` is the live handle created in `new` and freed only in `drop`.
        unsafe { (self.api.eval)(self.sim) }
    }

    /// One rising clock edge (inputs as set, outputs settled afterwards).
    pub fn tick(&mut self) {
        // SAFETY: `self.sim` is the live handle created in `new` and freed only in `drop`.
        unsafe { (self.api.tick)(self.sim) }
        self.cycles += 1;
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if let Some(dir) = std::env::var_os("TANDEM_COVERAGE") {
            let dir = PathBuf::from(dir);
            if std::fs::create_dir_all(&dir).is_ok() {
                let path = CString::new(dir.join(format!("{}{}-{}.dat", self.kind, self.width, self.name)).to_string_lossy().into_owned())
                    .expect("no NUL");
                // SAFETY: live handle; `path` is NUL-terminated and outlives the call.
                unsafe { (self.api.coverage_write)(self.sim, path.as_ptr()) };
            }
        }
        // SAFETY: the handle came from `new` and is freed exactly once, here.
        unsafe { (self.api.free)(self.sim) }
    }
}

/// Lanes (bytes) per beat at a width.
pub fn lanes(width: usize) -> usize {
    width / 8
}

/// A contiguous keep mask of `n` lanes, as words.
pub fn keep_words(n: usize, lanes: usize) -> Vec<u32> {
    (0..lanes.div_ceil(32))
        .map(|w| {
            let lo = w * 32;
            let set = n.saturating_sub(lo).min(32);
            if set == 32 {
                u32::MAX
            } else {
                (1u32 << set) - 1
            }
        })
        .collect()
}

/// Number of low lanes set in a keep mask.
pub fn keep_count(words: &[u32], lanes: usize) -> usize {
    (0..lanes).take_while(|i| (words[i / 32] >> (i % 32)) & 1 == 1).count()
}
