//! `CONFIG_DEBUG_SLAB` — 2.6.32 `mm/slab.c` `obj_offset`, `dbg_redzone1`, `dbg_redzone2`,
//! `dbg_userword`, `poison_obj`, `check_poison_obj`, `print_objinfo`, `cache_init_objs` (DEBUG
//! half), `cache_alloc_debugcheck_after`, `verify_redzone_free`, `cache_free_debugcheck`,
//! `kfree_debugcheck`, `slab_destroy_debugcheck`, `check_slabp`'s report, plus the 6.4
//! `init_on_alloc` / `init_on_free` rules, an error counter and a report callback.
//!
//! Object layout of a debug cache (`buffer_size` bytes per object, 8-byte aligned):
//! ```text
//! raw ─► [red zone 1: u64][object: obj_size bytes][pad][red zone 2: u64][last caller: usize]
//!        ▲ raw            ▲ raw + obj_offset (what the caller gets)   ▲ raw + buffer_size - 8
//! ```
//! Without `STORE_USER`, red zone 2 is the last word; without `RED_ZONE`, `obj_offset` is 0.
//! The per-CPU arrays, shared and alien arrays and the bufctl chain all hold `raw` pointers;
//! only the public entry points add and remove `obj_offset`.
//!
//! States: a free object has both red zones [`RED_INACTIVE`] and (with `POISON`) bytes
//! [`POISON_FREE`]… ending in [`POISON_END`]; an allocated one has both red zones
//! [`RED_ACTIVE`] and (with `POISON`) starts as [`POISON_INUSE`] bytes.
//!
//! Every detection is one [`DebugReport`]: counted per cache and per instance, handed to the
//! settings' callback (or printed in the kernel's words on stderr), then either the allocator
//! repairs what it can and continues, or the process aborts ([`DebugAction`]). Reports can be
//! made with a node `list_lock` held (`check_slabp`, the bufctl double-free check,
//! `slab_destroy_debugcheck`): the callback must not allocate from this instance.
//!
//! Turning it on: per cache with the `kmem_cache_create` flags `RED_ZONE`, `POISON`,
//! `STORE_USER`, `CONSISTENCY_CHECKS` (2.6.32 `SLAB_DEBUG_FREE`: `check_slabp` before and after
//! every slab a slow path touches), or for every cache, kmalloc caches included, with
//! `SlabSettings::debug` / `forced_debug` (2.6.32 `FORCED_DEBUG`) or `SLAB_CLASSIC_DEBUG`
//! (`SlabSettings::parse_debug` gives the syntax). As in `kmem_cache_create`, red zone and user
//! word are dropped silently above 8-byte alignment and poison on `TYPESAFE_BY_RCU` caches.
//!
//! Checks: on alloc `check_poison_obj` and inactive red zones; on free active red zones (both
//! inactive: "double free detected", refused with `DoubleFree`; otherwise overwritten: repaired
//! and freed); bad pointers refused and reported (`kfree_debugcheck`); slabs given back
//! checked (`slab_destroy_debugcheck`); `kmem_cache_destroy` with live objects reports "Can't
//! free all objects" and then each live object. `validate()` checks, reports and repairs every
//! free object.
//!
//! Cost when off: whether a cache takes the debug path is decided at creation. A debug cache
//! gets its own `magic` (`CACHE_MAGIC_DEBUG`), so `kmem_cache_alloc`/`kmem_cache_free` leave for
//! the debug path at the handle check they always make; `kmalloc`, `kfree`, the `_node`
//! variants and internal allocations test `CFLGS_DEBUG_PATH` in `kmem_cache.flags` once per
//! call.

use crate::cache::{
    KmemCache, CFLGS_INIT_ON_ALLOC, CFLGS_INIT_ON_FREE, DEBUG_FLAGS, REDZONE_ALIGN,
};
use crate::instance::SlabGlobals;
use crate::node::List;
use crate::slabmgmt::{SlabDesc, SlabRef};
use common::api::{CacheName, SlabError, SlabFlags};
use common::Gfp;
use core::fmt;
use core::panic::Location;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// `RED_INACTIVE` (include/linux/poison.h, 64-bit): red zone of a free object.
pub const RED_INACTIVE: u64 = 0x09F9_1102_9D74_E35B;
/// `RED_ACTIVE`: red zone of an allocated object.
pub const RED_ACTIVE: u64 = 0xD841_56C5_6356_88C0;
/// `POISON_INUSE`: fill of a freshly allocated object.
pub const POISON_INUSE: u8 = 0x5a;
/// `POISON_FREE`: fill of a free object.
pub const POISON_FREE: u8 = 0x6b;
/// `POISON_END`: last byte of a poisoned object.
pub const POISON_END: u8 = 0xa5;

/// What to do after a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DebugAction {
    /// Count, report, repair what can be repaired, go on (a refused free returns `Err`).
    #[default]
    Continue,
    /// Report, then `std::process::abort()` (the kernel's `BUG()`).
    Abort,
}

/// The kind of a detection, with the kernel's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugErrorKind {
    /// `check_poison_obj`: a free object's poison changed (use after free).
    SlabCorruption,
    /// `verify_redzone_free`: both red zones already `RED_INACTIVE`.
    DoubleFree,
    /// `verify_redzone_free`: a red zone of a live object is neither value.
    RedZoneOverwritten,
    /// `cache_alloc_debugcheck_after`: a red zone of a free object was not `RED_INACTIVE`.
    RedZoneOnAlloc,
    /// `slab_destroy_debugcheck`: red zone 1 of a free object changed.
    FreedStartOverwritten,
    /// `slab_destroy_debugcheck`: red zone 2 of a free object changed.
    FreedEndOverwritten,
    /// `cache_init_objs`: the constructor wrote over a red zone.
    CtorOverwrote,
    /// `slab_put_obj`: the bufctl shows the object already on its slab's free chain, or it is
    /// already on top of the CPU array.
    BufctlDoubleFree,
    /// `check_slabp`: the bufctl chain is corrupt.
    ListCorruption,
    /// `kfree_debugcheck`: the pointer is not memory of this allocator.
    OutOfRange,
    /// `cache_free_debugcheck`'s `virt_to_cache(objp) != cachep`: another cache's object.
    WrongCache,
    /// `cache_free_debugcheck`'s `objp != index_to_obj(...)`: an interior pointer.
    NotObjectStart,
    /// `kmem_cache_destroy`: "Can't free all objects".
    CantFreeAll,
    /// `kmem_cache_destroy` in debug mode: one report per object still in use.
    LeakedObject,
}

impl DebugErrorKind {
    /// The kernel's words (and the function that says them).
    pub fn message(self) -> (&'static str, &'static str) {
        match self {
            Self::SlabCorruption => ("check_poison_obj", "Slab corruption"),
            Self::DoubleFree => ("cache_free_debugcheck", "double free detected"),
            Self::RedZoneOverwritten => (
                "cache_free_debugcheck",
                "memory outside object was overwritten",
            ),
            Self::RedZoneOnAlloc => (
                "cache_alloc_debugcheck_after",
                "double free, or memory outside object was overwritten",
            ),
            Self::FreedStartOverwritten => (
                "slab_destroy_debugcheck",
                "start of a freed object was overwritten",
            ),
            Self::FreedEndOverwritten => (
                "slab_destroy_debugcheck",
                "end of a freed object was overwritten",
            ),
            Self::CtorOverwrote => (
                "cache_init_objs",
                "constructor overwrote the start or end of an object",
            ),
            Self::BufctlDoubleFree => ("slab_put_obj", "double free detected"),
            Self::ListCorruption => ("check_slabp", "Internal list corruption detected"),
            Self::OutOfRange => ("kfree_debugcheck", "out of range ptr"),
            Self::WrongCache => ("cache_free_debugcheck", "object of another cache"),
            Self::NotObjectStart => ("cache_free_debugcheck", "not the start of an object"),
            Self::CantFreeAll => ("kmem_cache_destroy", "Can't free all objects"),
            Self::LeakedObject => ("kmem_cache_destroy", "object still in use"),
        }
    }
}

/// One detection (a fixed struct: made without the heap, possibly under a lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugReport {
    /// What was found.
    pub kind: DebugErrorKind,
    /// The cache (`None` for a pointer that belongs to no cache).
    pub cache: Option<CacheName>,
    /// The object as the caller sees it (`realobj`), or the pointer freed, or the slab
    /// descriptor for [`DebugErrorKind::ListCorruption`].
    pub object: usize,
    /// Offset of the first bad byte from `object` (red zone 1 is at −8; for a bad pointer, its
    /// offset into the object it points into).
    pub offset: isize,
    /// `obj_size` (the length `check_poison_obj` prints).
    pub len: usize,
    /// Expected value (a poison byte, a red-zone word, or a count).
    pub expected: u64,
    /// Value found.
    pub found: u64,
    /// Bytes that differ (poison checks), else 0.
    pub bad_bytes: usize,
    /// Red zone words at the time of the report (0 without red zones).
    pub redzone1: u64,
    /// Second red zone word.
    pub redzone2: u64,
    /// The last-user word (`STORE_USER`): the address of the `core::panic::Location` of the
    /// last `kmem_cache_alloc`/`kmalloc`/free call on the object (0 if none / no user word).
    pub last_caller: usize,
}

impl DebugReport {
    fn new(kind: DebugErrorKind, cache: Option<CacheName>, object: usize) -> Self {
        Self {
            kind,
            cache,
            object,
            offset: 0,
            len: 0,
            expected: 0,
            found: 0,
            bad_bytes: 0,
            redzone1: 0,
            redzone2: 0,
            last_caller: 0,
        }
    }

    /// The cache name, or `"?"`.
    pub fn cache_name(&self) -> &str {
        self.cache.as_ref().map_or("?", |c| c.as_str())
    }
}

impl fmt::Display for DebugReport {
    /// The report as 2.6.32 prints it (`slab_error`, `check_poison_obj` + `print_objinfo`,
    /// `verify_redzone_free`, `check_slabp`), with the offset spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (func, msg) = self.kind.message();
        let name = self.cache_name();
        match self.kind {
            DebugErrorKind::SlabCorruption => {
                writeln!(
                    f,
                    "Slab corruption: {name} start={:#x}, len={}",
                    self.object, self.len
                )?;
                write!(
                    f,
                    "{:03x}: first bad byte {:02x} (expected {:02x}), {} bad bytes",
                    self.offset, self.found, self.expected, self.bad_bytes
                )?;
            }
            DebugErrorKind::BufctlDoubleFree => write!(
                f,
                "slab: double free detected in cache '{name}', objp {:#x}",
                self.object
            )?,
            DebugErrorKind::ListCorruption => write!(
                f,
                "slab: Internal list corruption detected in cache '{name}'({}), slabp {:#x}({})",
                self.expected, self.object, self.found
            )?,
            DebugErrorKind::OutOfRange => {
                write!(f, "kfree_debugcheck: out of range ptr {:x}h.", self.object)?;
            }
            _ => {
                write!(f, "slab error in {func}(): cache `{name}': {msg}")?;
                if matches!(
                    self.kind,
                    DebugErrorKind::WrongCache | DebugErrorKind::NotObjectStart
                ) {
                    write!(f, " ({:#x}, offset {})", self.object, self.offset)?;
                }
                if self.kind == DebugErrorKind::LeakedObject {
                    write!(f, " ({:#x})", self.object)?;
                }
                if self.redzone1 != 0 || self.redzone2 != 0 {
                    write!(
                        f,
                        "\n{:#x}: redzone 1:{:#x}, redzone 2:{:#x}.",
                        self.object.wrapping_sub(8),
                        self.redzone1,
                        self.redzone2
                    )?;
                    if self.offset != 0 {
                        write!(f, " (first bad word at offset {})", self.offset)?;
                    }
                }
            }
        }
        if self.last_caller != 0 {
            write!(f, "\nLast user: [<{:#x}>]", self.last_caller)?;
        }
        Ok(())
    }
}

impl SlabGlobals {
    /// The flags `kmem_cache_create` starts from: the caller's, plus the settings' `debug`
    /// (red zone and user word only where `FORCED_DEBUG` would add them: below 4096 bytes or
    /// when the 24 bytes do not cross a power of two — so `size-4194304` stays possible), plus
    /// `FORCED_DEBUG` when asked; no poison on `SLAB_DESTROY_BY_RCU` caches (the kernel BUG()s
    /// on that combination).
    pub(crate) fn debug_create_flags(
        &self,
        size: usize,
        flags: SlabFlags,
        _ctor: bool,
    ) -> SlabFlags {
        let mut all = self.settings.debug;
        let rz_su = SlabFlags::RED_ZONE | SlabFlags::STORE_USER;
        if all.intersects(rz_su)
            && !crate::cache::forced_debug_flags(size, SlabFlags::TYPESAFE_BY_RCU).intersects(rz_su)
        {
            all = all.without(rz_su);
        }
        let mut f = flags.with(all);
        if self.settings.forced_debug {
            f = crate::cache::forced_debug_flags(size, f);
        }
        if f.contains(SlabFlags::TYPESAFE_BY_RCU) {
            f = f.without(SlabFlags::POISON);
        }
        f
    }

    /// The internal `init_on_alloc`/`init_on_free` bits of a cache (6.4 `slab_want_init_on_*`:
    /// not with a constructor, `TYPESAFE_BY_RCU` or poisoning).
    pub(crate) fn init_flags(&self, flags: SlabFlags, ctor: bool) -> u32 {
        if ctor || flags.intersects(SlabFlags::TYPESAFE_BY_RCU | SlabFlags::POISON) {
            return 0;
        }
        let mut f = 0;
        if self.settings.init_on_alloc {
            f |= CFLGS_INIT_ON_ALLOC;
        }
        if self.settings.init_on_free {
            f |= CFLGS_INIT_ON_FREE;
        }
        f
    }

    /// Counts and delivers one report, then aborts if the settings say so.
    pub(crate) fn slab_report(&self, cachep: &KmemCache, r: &DebugReport) {
        self.slab_report_any(Some(cachep), r);
    }

    /// [`Self::slab_report`] of a report that may name no cache (a bad `kfree`).
    pub(crate) fn slab_report_any(&self, cachep: Option<&KmemCache>, r: &DebugReport) {
        if let Some(c) = cachep {
            c.debug_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.slab_errors.fetch_add(1, Ordering::Relaxed);
        match self.settings.report {
            Some(cb) => cb(r),
            None => eprintln!("{r}"),
        }
        if self.settings.on_error == DebugAction::Abort {
            if self.settings.report.is_some() {
                eprintln!("{r}");
            }
            std::process::abort();
        }
    }

    /// A report about `cachep` with its name filled in.
    fn report_of(cachep: &KmemCache, kind: DebugErrorKind, object: usize) -> DebugReport {
        DebugReport::new(kind, Some(cachep.name), object)
    }
}

/// A raw object start of a debug cache, with the words its layout reserves (see the module
/// documentation), that the holder may read and write: a fresh slab's object, an object just
/// handed out or being freed, or a free object whose lock is held.
#[derive(Clone, Copy)]
struct DebugObj<'c> {
    cachep: &'c KmemCache,
    raw: *mut u8,
}

impl<'c> DebugObj<'c> {
    /// # Safety
    /// `raw` is a raw object start of `cachep` (`buffer_size` bytes), the caller's to read and
    /// write as described above for as long as the value is used.
    unsafe fn new(cachep: &'c KmemCache, raw: *mut u8) -> Self {
        DebugObj { cachep, raw }
    }

    fn has(self, f: SlabFlags) -> bool {
        has(self.cachep, f)
    }

    /// The object as the caller sees it (`raw + obj_offset`).
    fn realobj(self) -> *mut u8 {
        self.raw.wrapping_add(self.cachep.obj_offset as usize)
    }

    /// `dbg_redzone1` / `dbg_redzone2` offsets from `raw` (the cache has `RED_ZONE`).
    fn redzone_offsets(self) -> (usize, usize) {
        debug_assert!(self.has(SlabFlags::RED_ZONE));
        let rz2 = (redzone2_offset(self.cachep) + self.cachep.obj_offset as isize) as usize;
        (self.cachep.obj_offset as usize - 8, rz2)
    }

    /// Both red-zone words.
    fn redzones(self) -> (u64, u64) {
        let (a, b) = self.redzone_offsets();
        // SAFETY: both words lie inside the buffer (the layout reserved them); ours (new).
        unsafe {
            (
                self.raw.add(a).cast::<u64>().read_unaligned(),
                self.raw.add(b).cast::<u64>().read_unaligned(),
            )
        }
    }

    /// Sets both red-zone words.
    fn set_redzones(self, v: u64) {
        let (a, b) = self.redzone_offsets();
        // SAFETY: as `redzones`.
        unsafe {
            self.raw.add(a).cast::<u64>().write_unaligned(v);
            self.raw.add(b).cast::<u64>().write_unaligned(v);
        }
    }

    /// `dbg_userword` (the cache has `STORE_USER`): the last word of the buffer.
    fn userword(self) -> usize {
        debug_assert!(self.has(SlabFlags::STORE_USER));
        // SAFETY: the last word of the buffer, inside it; ours (new).
        unsafe {
            self.raw
                .add(self.cachep.buffer_size - 8)
                .cast::<usize>()
                .read_unaligned()
        }
    }

    /// Sets the last-user word.
    fn set_userword(self, v: usize) {
        debug_assert!(self.has(SlabFlags::STORE_USER));
        // SAFETY: as `userword`.
        unsafe {
            self.raw
                .add(self.cachep.buffer_size - 8)
                .cast::<usize>()
                .write_unaligned(v);
        }
    }

    /// The `obj_size` bytes the caller sees.
    fn object(self) -> &'c mut [u8] {
        // SAFETY: obj_size bytes from realobj lie inside the buffer; ours (new), and no other
        // reference to them is alive while the slice is (each use is a short statement).
        unsafe { core::slice::from_raw_parts_mut(self.realobj(), self.cachep.obj_size) }
    }

    /// `poison_obj`: `obj_size` bytes of `val`, the last one `POISON_END`.
    fn poison(self, val: u8) {
        let o = self.object();
        o.fill(val);
        if let Some(last) = o.last_mut() {
            *last = POISON_END;
        }
    }

    /// The first byte that breaks the free poison (offset, expected, found) and how many do.
    fn poison_damage(self) -> Option<((usize, u8, u8), usize)> {
        let o = self.object();
        let n = o.len();
        let expected = |i: usize| if i == n - 1 { POISON_END } else { POISON_FREE };
        let mut bad = o.iter().enumerate().filter(|&(i, &b)| b != expected(i));
        let (i, &b) = bad.next()?;
        Some(((i, expected(i), b), 1 + bad.count()))
    }

    /// Fills a report's red-zone and last-user fields from the object (`print_objinfo`).
    fn objinfo(self, r: &mut DebugReport) {
        if self.has(SlabFlags::RED_ZONE) {
            (r.redzone1, r.redzone2) = self.redzones();
        }
        if self.has(SlabFlags::STORE_USER) {
            r.last_caller = self.userword();
        }
        r.len = self.cachep.obj_size;
    }
}

fn has(cachep: &KmemCache, f: SlabFlags) -> bool {
    cachep.flags & f.0 != 0
}

/// Where in the object (relative to `realobj`) red zone 2 sits.
fn redzone2_offset(cachep: &KmemCache) -> isize {
    let mut off = cachep.buffer_size - 8;
    if cachep.flags & SlabFlags::STORE_USER.0 != 0 {
        off -= REDZONE_ALIGN;
    }
    off as isize - cachep.obj_offset as isize
}

impl SlabGlobals {
    /// A report about `o` with its red zones and last user filled in.
    fn report_obj(o: DebugObj<'_>, kind: DebugErrorKind, object: usize) -> DebugReport {
        let mut r = Self::report_of(o.cachep, kind, object);
        o.objinfo(&mut r);
        r
    }

    /// `check_poison_obj`: one report (first bad byte, its offset, how many differ) if the
    /// free object's poison changed. Does not repair (the callers re-poison or free the page).
    fn check_poison_obj(&self, o: DebugObj<'_>) -> bool {
        let Some(((i, exp, b), bad)) = o.poison_damage() else {
            return true;
        };
        let mut r = Self::report_obj(o, DebugErrorKind::SlabCorruption, o.realobj() as usize);
        r.offset = i as isize;
        r.expected = exp as u64;
        r.found = b as u64;
        r.bad_bytes = bad;
        self.slab_report(o.cachep, &r);
        false
    }

    /// The `DEBUG` half of `cache_init_objs` for one object: poison, clear the user word, set
    /// both red zones inactive, run the constructor unless poisoning (then it runs at
    /// allocation), and check it stayed inside the object. `init_on_free` caches start zeroed.
    ///
    /// # Safety
    /// `objp` a raw object start of a fresh slab of `cachep`.
    pub(crate) unsafe fn cache_init_obj_debug(&self, cachep: &KmemCache, objp: *mut u8) {
        // SAFETY: the slab is private to the caller (contract).
        let o = unsafe { DebugObj::new(cachep, objp) };
        let flags = cachep.flags;
        if flags & CFLGS_INIT_ON_FREE != 0 {
            o.object().fill(0);
        }
        if o.has(SlabFlags::POISON) {
            o.poison(POISON_FREE);
        }
        if o.has(SlabFlags::STORE_USER) {
            o.set_userword(0);
        }
        let rz = o.has(SlabFlags::RED_ZONE);
        if rz {
            o.set_redzones(RED_INACTIVE);
        }
        if let Some(ctor) = cachep.ctor {
            if !o.has(SlabFlags::POISON) {
                // SAFETY: the constructor's contract: an object of this cache, ours.
                unsafe { ctor(o.realobj()) };
            }
        }
        if rz && o.redzones() != (RED_INACTIVE, RED_INACTIVE) {
            let r = Self::report_obj(o, DebugErrorKind::CtorOverwrote, o.realobj() as usize);
            self.slab_report(cachep, &r);
            o.set_redzones(RED_INACTIVE);
        }
    }

    /// `cache_init_objs` of a debug (or `init_on_free`) cache: [`Self::cache_init_obj_debug`]
    /// on every object, then the bufctl chain in address order.
    ///
    /// # Safety
    /// `slabp` freshly made by `alloc_slabmgmt` for `cachep`.
    pub(crate) unsafe fn cache_init_objs_debug(&self, cachep: &KmemCache, slabp: *mut SlabDesc) {
        // SAFETY: the slab is private to the caller (contract).
        let s = unsafe { SlabRef::new(slabp) };
        for i in 0..cachep.num {
            // SAFETY: an object of the private slab.
            unsafe { self.cache_init_obj_debug(cachep, s.index_to_obj(cachep, i)) };
        }
        // SAFETY: the private slab's descriptor (the chain in address order, as
        // cache_init_objs builds it).
        unsafe { crate::slabmgmt::chain_bufctls(cachep, slabp) };
    }

    /// `cache_alloc_debugcheck_after`: poison check then `POISON_INUSE`, the caller in the user
    /// word, red zones checked inactive and set active, the constructor of poisoned caches.
    /// Returns the object as the caller sees it.
    fn cache_alloc_debugcheck_after(&self, o: DebugObj<'_>, caller: usize) -> *mut u8 {
        if o.has(SlabFlags::POISON) {
            self.check_poison_obj(o);
            o.poison(POISON_INUSE);
        }
        if o.has(SlabFlags::STORE_USER) {
            o.set_userword(caller);
        }
        if o.has(SlabFlags::RED_ZONE) {
            let (rz1, rz2) = o.redzones();
            if rz1 != RED_INACTIVE || rz2 != RED_INACTIVE {
                let mut r =
                    Self::report_obj(o, DebugErrorKind::RedZoneOnAlloc, o.realobj() as usize);
                r.expected = RED_INACTIVE;
                (r.offset, r.found) = if rz1 != RED_INACTIVE {
                    (-8, rz1)
                } else {
                    (redzone2_offset(o.cachep), rz2)
                };
                self.slab_report(o.cachep, &r);
            }
            o.set_redzones(RED_ACTIVE);
        }
        if let Some(ctor) = o.cachep.ctor {
            if o.has(SlabFlags::POISON) {
                // SAFETY: the constructor's contract: an object of this cache, ours.
                unsafe { ctor(o.realobj()) };
            }
        }
        o.realobj()
    }

    /// `cache_free_debugcheck` with `verify_redzone_free`: the red zones must be active (both
    /// inactive = double free: reported, and the free is refused; anything else = overwritten:
    /// reported, repaired, freed), the caller goes in the user word, the object is poisoned.
    /// Returns `false` for a refused double free.
    fn cache_free_debugcheck(&self, o: DebugObj<'_>, caller: usize) -> bool {
        if o.has(SlabFlags::RED_ZONE) {
            let (rz1, rz2) = o.redzones();
            if rz1 != RED_ACTIVE || rz2 != RED_ACTIVE {
                let double = rz1 == RED_INACTIVE && rz2 == RED_INACTIVE;
                let kind = if double {
                    DebugErrorKind::DoubleFree
                } else {
                    DebugErrorKind::RedZoneOverwritten
                };
                let mut r = Self::report_obj(o, kind, o.realobj() as usize);
                r.expected = RED_ACTIVE;
                (r.offset, r.found) = if rz1 != RED_ACTIVE {
                    (-8, rz1)
                } else {
                    (redzone2_offset(o.cachep), rz2)
                };
                self.slab_report(o.cachep, &r);
                if double {
                    return false;
                }
            }
            o.set_redzones(RED_INACTIVE);
        }
        if o.has(SlabFlags::STORE_USER) {
            o.set_userword(caller);
        }
        if o.cachep.flags & CFLGS_INIT_ON_FREE != 0 {
            o.object().fill(0);
        }
        if o.has(SlabFlags::POISON) {
            o.poison(POISON_FREE);
        }
        true
    }

    /// The debug tail of `__cache_alloc` / `__cache_alloc_node` (the raw allocation is the
    /// common one): `cache_alloc_debugcheck_after`, then `__GFP_ZERO` / `init_on_alloc` over
    /// `obj_size`.
    #[cold]
    #[inline(never)]
    pub(crate) fn cache_alloc_debug_after(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        raw: *mut u8,
        caller: &'static Location<'static>,
    ) -> Option<NonNull<u8>> {
        // SAFETY: a raw object just handed out by this cache: ours.
        let o = unsafe { DebugObj::new(cachep, raw) };
        let p = self.cache_alloc_debugcheck_after(o, core::ptr::from_ref(caller) as usize);
        if gfp.contains(Gfp::ZERO) || cachep.flags & CFLGS_INIT_ON_ALLOC != 0 {
            o.object().fill(0);
        }
        NonNull::new(p)
    }

    /// `__cache_free` of a debug cache: `cache_free_debugcheck`, then the array push. `false`
    /// for a double free (nothing freed).
    ///
    /// # Safety
    /// `objp` a checked object start of `cachep` as the caller sees it.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn cache_free_debug(
        &self,
        cachep: &KmemCache,
        objp: *mut u8,
        caller: &'static Location<'static>,
    ) -> bool {
        let raw = objp.wrapping_sub(cachep.obj_offset as usize);
        // SAFETY: a checked object start of cachep, the caller's until freed below.
        let o = unsafe { DebugObj::new(cachep, raw) };
        if !self.cache_free_debugcheck(o, core::ptr::from_ref(caller) as usize) {
            return false;
        }
        // SAFETY: forwarded contract (the raw start of the same object).
        if unsafe { self.cpu_cache_free(cachep, raw) } {
            return true;
        }
        let r = Self::report_obj(o, DebugErrorKind::BufctlDoubleFree, objp as usize);
        self.slab_report(cachep, &r);
        false
    }

    /// A bad pointer handed to a free of a debug cache (or to `kfree` with debugging on for
    /// the instance): `kfree_debugcheck` / `cache_free_debugcheck`'s BUG_ONs as a report.
    pub(crate) fn report_bad_free(
        &self,
        cachep: Option<&KmemCache>,
        kind: DebugErrorKind,
        objp: usize,
        offset: isize,
    ) {
        let mut r = match cachep {
            None => DebugReport::new(kind, None, objp),
            Some(c) => Self::report_of(c, kind, objp),
        };
        r.offset = offset;
        self.slab_report_any(cachep, &r);
    }

    /// `slab_put_obj`'s "double free detected" (the bufctl marker) for a raw object.
    ///
    /// # Safety
    /// `objp` a raw object start of `cachep`, its node's lock held.
    pub(crate) unsafe fn report_bufctl_double_free(&self, cachep: &KmemCache, objp: *mut u8) {
        // SAFETY: forwarded contract.
        let o = unsafe { DebugObj::new(cachep, objp) };
        let r = Self::report_obj(o, DebugErrorKind::BufctlDoubleFree, o.realobj() as usize);
        self.slab_report(cachep, &r);
    }
    /// A refused free, reported when the named cache is a debug cache (`cachep` given) or,
    /// for `kfree` (`cachep` `None`), when the instance has debugging on: the pointer is not
    /// ours (`kfree_debugcheck`), of another cache, or inside an object.
    #[cold]
    #[inline(never)]
    pub(crate) fn debug_bad_free(&self, cachep: Option<&KmemCache>, objp: *mut u8, e: SlabError) {
        let (kind, offset, named) = match e {
            SlabError::NotOurs(_) => (DebugErrorKind::OutOfRange, 0, cachep),
            SlabError::WrongCache(_) => (DebugErrorKind::WrongCache, 0, cachep),
            SlabError::NotObjectStart(_) => {
                let (c, off) = match self.interior_offset(objp) {
                    Some((c, off)) => (Some(c), off),
                    None => (cachep, 0),
                };
                (DebugErrorKind::NotObjectStart, off, cachep.or(c))
            }
            _ => return,
        };
        let enabled = match cachep {
            None => {
                self.settings.debug.intersects(SlabFlags(DEBUG_FLAGS))
                    || self.settings.forced_debug
                    || named.is_some_and(KmemCache::is_debug)
            }
            Some(c) => c.is_debug(),
        };
        if enabled {
            self.report_bad_free(named, kind, objp as usize, offset);
        }
    }

    /// `check_slabp` on a slow path of a debug cache: reported, never fatal (unless the
    /// settings abort).
    ///
    pub(crate) fn debug_check_slabp(&self, cachep: &KmemCache, slabp: SlabRef<'_>) {
        if slabp.check(cachep).is_err() {
            let mut r = Self::report_of(
                cachep,
                DebugErrorKind::ListCorruption,
                slabp.as_ptr() as usize,
            );
            r.expected = cachep.num as u64;
            r.found = slabp.inuse() as u64;
            self.slab_report(cachep, &r);
        }
    }

    /// A free object (on a free chain or in an array) checked the way
    /// `slab_destroy_debugcheck` checks it — poison intact, red zones inactive — each finding
    /// reported and then repaired (re-poisoned, red zones reset), as SLUB's `validate` does.
    /// `true` if it was clean.
    ///
    /// # Safety
    /// `objp` a raw object start of `cachep` that is free; the lock protecting it held.
    pub(crate) unsafe fn check_free_obj(&self, cachep: &KmemCache, objp: *mut u8) -> bool {
        // SAFETY: forwarded contract.
        let o = unsafe { DebugObj::new(cachep, objp) };
        let mut clean = true;
        if o.has(SlabFlags::POISON) && !self.check_poison_obj(o) {
            o.poison(POISON_FREE);
            clean = false;
        }
        if o.has(SlabFlags::RED_ZONE) {
            clean &= self.check_free_redzones(o);
            o.set_redzones(RED_INACTIVE);
        }
        clean
    }

    /// The red-zone half of checking a free, red-zoned object: reports each of the two red
    /// zones that is not `RED_INACTIVE` (start overwritten, end overwritten); returns whether
    /// both were.
    fn check_free_redzones(&self, o: DebugObj<'_>) -> bool {
        let mut clean = true;
        let (rz1, rz2) = o.redzones();
        for (kind, off, v) in [
            (DebugErrorKind::FreedStartOverwritten, -8, rz1),
            (
                DebugErrorKind::FreedEndOverwritten,
                redzone2_offset(o.cachep),
                rz2,
            ),
        ] {
            if v != RED_INACTIVE {
                let mut r = Self::report_obj(o, kind, o.realobj() as usize);
                r.offset = off;
                r.expected = RED_INACTIVE;
                r.found = v;
                self.slab_report(o.cachep, &r);
                clean = false;
            }
        }
        clean
    }

    /// `slab_destroy_debugcheck`: every object of a slab about to be given back (off every
    /// list, every object free) must still be poisoned and have inactive red zones.
    pub(crate) fn slab_destroy_debugcheck(&self, cachep: &KmemCache, slabp: SlabRef<'_>) {
        for i in 0..cachep.num {
            // SAFETY: a free object of a slab nobody else sees any more.
            let o = unsafe { DebugObj::new(cachep, slabp.index_to_obj(cachep, i)) };
            if o.has(SlabFlags::POISON) {
                self.check_poison_obj(o);
            }
            if o.has(SlabFlags::RED_ZONE) {
                self.check_free_redzones(o);
            }
        }
    }

    /// `kmem_cache_destroy` of a debug cache that still has objects: "Can't free all objects",
    /// then one report per object in use (its bufctl holds the handed-out marker). Returns how
    /// many objects were reported.
    /// The arrays are drained and the chain mutex is held.
    pub(crate) fn report_leaks(&self, cachep: &KmemCache) -> usize {
        let mut r = Self::report_of(cachep, DebugErrorKind::CantFreeAll, 0);
        r.len = cachep.obj_size;
        self.slab_report(cachep, &r);
        let mut n = 0;
        for node in 0..self.nr_nodes {
            let l3 = self.lock_list(cachep, node);
            for list in [List::Full, List::Partial] {
                for s in l3.slabs(list) {
                    n += self.report_leaks_of(cachep, s);
                }
            }
        }
        n
    }

    /// The objects in use of one slab (their bufctl holds the handed-out marker), one report
    /// each.
    fn report_leaks_of(&self, cachep: &KmemCache, s: SlabRef<'_>) -> usize {
        let mut n = 0;
        for i in 0..cachep.num {
            if s.bufctl(cachep, i) != crate::slabmgmt::BUFCTL_FREE {
                continue;
            }
            let objp = s.index_to_obj(cachep, i);
            let realobj = objp.wrapping_add(cachep.obj_offset as usize) as usize;
            // SAFETY: an object start of this slab, its node's lock held (its words are only
            // read).
            let o = unsafe { DebugObj::new(cachep, objp) };
            let r = Self::report_obj(o, DebugErrorKind::LeakedObject, realobj);
            self.slab_report(cachep, &r);
            n += 1;
        }
        n
    }
}

/// Name of the environment variable [`crate::SlabSettings::with_debug_env`] reads.
pub const DEBUG_ENV: &str = "SLAB_CLASSIC_DEBUG";

impl crate::SlabSettings {
    /// Applies a debug specification (the syntax of [`DEBUG_ENV`]): comma-separated tokens,
    /// each either a group of `slub_debug`-style letters — `F` consistency checks
    /// (`check_slabp` on every slow path), `Z` red zone, `P` poison, `U` last-user word, `-`
    /// none — for every cache, or one of the words `forced` (2.6.32 `FORCED_DEBUG` rules),
    /// `init_on_alloc`, `init_on_free`, `abort` (abort after a report), `continue`. Example:
    /// `ZPU,init_on_free`. Parsed without the heap; `Err` names the first bad token.
    pub fn parse_debug(mut self, spec: &[u8]) -> Result<Self, &'static str> {
        for tok in spec.split(|&b| b == b',') {
            let tok = tok.trim_ascii();
            match tok {
                b"" => {}
                b"forced" => self.forced_debug = true,
                b"init_on_alloc" => self.init_on_alloc = true,
                b"init_on_free" => self.init_on_free = true,
                b"abort" => self.on_error = DebugAction::Abort,
                b"continue" => self.on_error = DebugAction::Continue,
                _ => {
                    for &c in tok {
                        let f = match c.to_ascii_uppercase() {
                            b'F' => SlabFlags::CONSISTENCY_CHECKS,
                            b'Z' => SlabFlags::RED_ZONE,
                            b'P' => SlabFlags::POISON,
                            b'U' => SlabFlags::STORE_USER,
                            b'-' => {
                                self.debug = SlabFlags::NONE;
                                continue;
                            }
                            _ => return Err("unknown debug token (want FZPU-, forced, init_on_alloc, init_on_free, abort, continue)"),
                        };
                        self.debug = self.debug.with(f);
                    }
                }
            }
        }
        Ok(self)
    }

    /// [`Self::parse_debug`] of the environment variable [`DEBUG_ENV`] if it is set (read with
    /// libc `getenv`, no heap, so it can run inside a `#[global_allocator]`'s init). Not
    /// thread-safe against a concurrent `setenv`, like `getenv` itself.
    pub fn with_debug_env(self) -> Result<Self, &'static str> {
        match common::sys::getenv(c"SLAB_CLASSIC_DEBUG") {
            Some(text) => self.parse_debug(text),
            None => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slabmgmt::slab_bufctl;
    use crate::{Slab, SlabSettings};
    use common::check::FixedLog;
    use common::{PageProvider, ProviderConfig, SlabAllocator, Topology};
    use std::cell::RefCell;

    // Reports, kept without the heap: the callback runs under allocator locks.
    thread_local! {
        static SEEN: RefCell<FixedLog<DebugReport, 64>> = const { RefCell::new(FixedLog::new()) };
    }

    fn capture(r: &DebugReport) {
        SEEN.with(|v| v.borrow_mut().push(*r));
    }

    fn take_reports() -> Vec<DebugReport> {
        SEEN.with(|v| v.borrow_mut().take())
    }

    #[test]
    fn check_slabp_reports_a_corrupt_bufctl_chain_on_the_slow_paths() {
        let p = PageProvider::new(&ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 16))
            .unwrap();
        let s = Slab::new(
            &p,
            SlabSettings {
                report: Some(capture),
                ..SlabSettings::default()
            },
        )
        .unwrap();
        let h = s
            .kmem_cache_create("chk", 100, 0, SlabFlags::CONSISTENCY_CHECKS, None)
            .unwrap();
        s.kmem_cache_tune(h, 1, 1, 0).unwrap();
        let a = s.kmem_cache_alloc(h, Gfp::KERNEL).unwrap();
        let b = s.kmem_cache_alloc(h, Gfp::KERNEL).unwrap();
        let g = s.g();
        // SAFETY: single-threaded test; the chain is restored before anything else runs.
        unsafe {
            let slabp = g.virt_to_slab(a.as_ptr());
            let bufctl = slab_bufctl(slabp);
            let f0 = (*slabp).free as usize;
            let saved = *bufctl.add(f0);
            *bufctl.add(f0) = f0 as u32; // a cycle on the free chain
            s.kmem_cache_free(h, a).unwrap(); // into the CPU array
            s.kmem_cache_free(h, b).unwrap(); // flushes a: free_block → check_slabp ×2
            let seen = take_reports();
            assert_eq!(seen.len(), 2, "{seen:?}");
            assert!(seen
                .iter()
                .all(|r| r.kind == DebugErrorKind::ListCorruption && r.cache_name() == "chk"));
            assert!(seen[0]
                .to_string()
                .starts_with("slab: Internal list corruption detected in cache 'chk'"));
            assert!(s.validate().is_err(), "validate sees it too");
            *bufctl.add(f0) = saved;
        }
        s.validate().unwrap();
        assert_eq!(s.cache_errors(h), Ok(2));
    }
}
