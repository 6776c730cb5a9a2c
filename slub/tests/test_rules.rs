//! The rules every test follows (README, Testing): a skip for a capability listed in
//! `SLABWORKS_REQUIRE` is a failure, and a test that needs a process of its own is one ordinary
//! test with two roles, which plays its child role only when its own parent started it.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::testing::{is_child, run_child, skip, CHILD_ENV, REQUIRE_ENV};

#[test]
fn a_required_capability_turns_a_skip_into_a_failure() {
    const TEST: &str = "a_required_capability_turns_a_skip_into_a_failure";
    if is_child(TEST) {
        skip(TEST, "teleporter", "this machine has no teleporter");
        return;
    }
    let not_required = run_child(TEST, &[(REQUIRE_ENV, "rseq,pin")], &[]);
    assert!(not_required.status.success(), "{not_required:?}");
    assert!(
        String::from_utf8_lossy(&not_required.stderr)
            .contains(&format!("SKIPPED {TEST}: this machine has no teleporter")),
        "{not_required:?}"
    );
    for list in ["rseq,teleporter", "all"] {
        let required = run_child(TEST, &[(REQUIRE_ENV, list)], &[]);
        assert!(!required.status.success(), "{list}: {required:?}");
        assert!(
            String::from_utf8_lossy(&required.stderr)
                .contains("capability `teleporter` is required by SLABWORKS_REQUIRE"),
            "{required:?}"
        );
    }
}

/// Started by `another_tests_marker_leaves_a_test_in_its_parent_role` as well as by the suite.
const PROBE: &str = "a_two_role_test_plays_its_child_role_only_under_its_own_marker";

#[test]
fn a_two_role_test_plays_its_child_role_only_under_its_own_marker() {
    if is_child(PROBE) {
        assert!(!is_child(
            "another_tests_marker_leaves_a_test_in_its_parent_role"
        ));
        println!("ROLE child of {PROBE}");
        return;
    }
    println!("ROLE parent of {PROBE}");
    let out = run_child(PROBE, &[], &[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ROLE child of"), "{stdout}");
    assert!(!stdout.contains("ROLE parent of"), "{stdout}");
}

#[test]
fn another_tests_marker_leaves_a_test_in_its_parent_role() {
    // No marker (the test run alone) or another test's marker: the probe is the parent, so it
    // starts (and checks) its own child instead of passing as a child on its own.
    for marker in [
        None,
        Some("another_tests_marker_leaves_a_test_in_its_parent_role"),
    ] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", PROBE, "--nocapture", "--test-threads=1"]);
        match marker {
            Some(m) => cmd.env(CHILD_ENV, m),
            None => cmd.env_remove(CHILD_ENV),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{marker:?}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("running 1 test"), "{marker:?}: {stdout}");
        assert!(stdout.contains("ROLE parent of"), "{marker:?}: {stdout}");
        assert!(!stdout.contains("ROLE child of"), "{marker:?}: {stdout}");
    }
}
