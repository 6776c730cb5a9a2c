//! The rules every test follows (README, Testing): a skip for a capability listed in
//! `SLABWORKS_REQUIRE` is a failure, and a child-process test cannot pass on its own.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::testing::{child_only, run_child, skip, CHILD_ENV, REQUIRE_ENV};

#[test]
#[ignore = "child process: started by a_required_capability_turns_a_skip_into_a_failure"]
fn child_skips_for_a_missing_capability() {
    child_only("child_skips_for_a_missing_capability");
    skip(
        "child_skips_for_a_missing_capability",
        "teleporter",
        "this machine has no teleporter",
    );
}

#[test]
fn a_required_capability_turns_a_skip_into_a_failure() {
    let child = "child_skips_for_a_missing_capability";
    let not_required = run_child(child, &[(REQUIRE_ENV, "rseq,pin")], &[]);
    assert!(not_required.status.success(), "{not_required:?}");
    assert!(String::from_utf8_lossy(&not_required.stderr)
        .contains("SKIPPED child_skips_for_a_missing_capability: this machine has no teleporter"));
    for list in ["rseq,teleporter", "all"] {
        let required = run_child(child, &[(REQUIRE_ENV, list)], &[]);
        assert!(!required.status.success(), "{list}: {required:?}");
        assert!(
            String::from_utf8_lossy(&required.stderr)
                .contains("capability `teleporter` is required by SLABWORKS_REQUIRE"),
            "{required:?}"
        );
    }
}

#[test]
#[ignore = "child process: started by a_child_test_fails_unless_its_parent_starts_it"]
fn child_that_must_not_run_alone() {
    child_only("child_that_must_not_run_alone");
}

#[test]
fn a_child_test_fails_unless_its_parent_starts_it() {
    // Run the way `cargo test -- --ignored` would: no marker, or the marker of another test.
    for marker in [None, Some("some_other_child")] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "child_that_must_not_run_alone",
            "--ignored",
            "--test-threads=1",
        ]);
        match marker {
            Some(m) => cmd.env(CHILD_ENV, m),
            None => cmd.env_remove(CHILD_ENV),
        };
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{marker:?}: {out:?}");
    }
    let started = run_child("child_that_must_not_run_alone", &[], &[]);
    assert!(started.status.success(), "{started:?}");
}
