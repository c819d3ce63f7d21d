//! `#[task]` misuse gives readable, spanned errors; correct uses compile.

#[test]
fn task_attribute_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
