//! [`KernelConfig`]: which kernel configuration an instance imitates on its free paths.

/// Which kernel configuration an allocator instance imitates on its free paths,
/// chosen once at creation, like a static key: the fast paths of one configuration carry no test
/// of another.
///
/// | | `kmem_cache_free(s, x)` | `kfree(x)` | SLUB free pointers |
/// |---|---|---|---|
/// | `Kernel` | trusts `s` and `x` (no ownership, wrong-cache or object-start test) | the cache from `x`'s page, unchecked | plain |
/// | `Hardened` | `cache_from_obj`: compares `virt_to_cache(x)` with `s`; on a mismatch counts a warning and frees into the real cache; not a slab page: warning, nothing freed (`Err`) | as `Kernel` | XOR-encoded |
/// | `Checked` | refuses foreign, wrong-cache and interior pointers with an error | the same tests | as set |
///
/// Debug modes (`slub_debug`, `CONFIG_DEBUG_SLAB`) check in every configuration. `Kernel` and
/// `Hardened` make a bad pointer undefined behaviour, exactly as in the kernel: never the
/// default of the API or of the preload library.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KernelConfig {
    /// A kernel without `CONFIG_SLAB_FREELIST_HARDENED`: frees trust their arguments.
    Kernel,
    /// What distributions ship (6.4 with `CONFIG_SLAB_FREELIST_HARDENED=y`).
    Hardened,
    /// slabworks' own: every provable error refused with an error. The default.
    #[default]
    Checked,
}

impl KernelConfig {
    /// Every configuration, in the order the harness reports them.
    pub const ALL: [KernelConfig; 3] = [
        KernelConfig::Kernel,
        KernelConfig::Hardened,
        KernelConfig::Checked,
    ];

    /// The settings spelling (`config=kernel|hardened|checked`).
    pub fn name(self) -> &'static str {
        match self {
            KernelConfig::Kernel => "kernel",
            KernelConfig::Hardened => "hardened",
            KernelConfig::Checked => "checked",
        }
    }

    /// Parses [`KernelConfig::name`]'s spelling.
    pub fn parse(s: &str) -> Option<KernelConfig> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}
