//! Property test: random sequences of cache allocations, kmallocs (small and
//! `kmalloc_large`) and frees against a model (the set of live objects), with and without
//! `slub_debug=FZPU`: no two live objects overlap, alignment is kept, `ksize` is at least the
//! request, contents survive, and after a shrink each cache's `objects` attribute equals the
//! model's count; `validate()` is clean and no debug error is reported.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::testing::{run_model, ModelOp};
use proptest::prelude::*;
use slub::{SlubDebug, SlubSettings};

fn op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (0usize..4).prop_map(ModelOp::Alloc),
        3 => prop_oneof![9 => 1usize..9000, 1 => 9000usize..40_000].prop_map(ModelOp::Kmalloc),
        4 => any::<usize>().prop_map(ModelOp::Free),
    ]
}

fn run(ops: &[ModelOp], debug: bool) -> Result<(), TestCaseError> {
    let p = util::provider(2, 32);
    let settings = SlubSettings {
        // Unmerged, so each cache's `objects` is its own.
        slab_nomerge: true,
        slub_debug: Some(if debug {
            SlubDebug::new(b"FZPU").unwrap()
        } else {
            SlubDebug::OFF
        }),
        ..SlubSettings::default()
    };
    let s = util::slub_with(&p, settings);
    run_model(&s, ops, |s, c, _| s.cache_attrs(c).unwrap().objects).map_err(TestCaseError::fail)?;
    prop_assert_eq!(s.slab_errors(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..300), debug in any::<bool>()) {
        run(&ops, debug)?;
    }
}
