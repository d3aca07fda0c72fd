//! `grenzwacht hw vectors|verify` on the real binary: the generated vectors agree with the
//! reference verifier, and a vector whose expected code is changed is reported as a
//! disagreement (exit 1); unreadable input is exit 2.
use std::process::Command;

fn gw(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_grenzwacht"))
        .args(args)
        .env_remove("GRENZWACHT_CONFIG")
        .output()
        .expect("run grenzwacht");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generated_vectors_verify_and_a_wrong_expectation_is_a_disagreement() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let (code, out, err) = gw(&[
        "hw", "vectors", "--out", dir, "--random", "500", "--seed", "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("500 random"), "{out}");
    let (code, out, err) = gw(&["hw", "verify", "--vectors", dir]);
    assert_eq!(code, 0, "{err}");
    let crafted = std::fs::read_to_string(d.path().join("crafted.vec")).unwrap();
    let n = crafted.lines().filter(|l| !l.starts_with('#')).count() + 500;
    assert_eq!(out.trim(), format!("{n} vectors, 0 disagreements"));
    // Claim that the first crafted vector (valid) is a bad hash.
    let first = crafted.lines().find(|l| !l.starts_with('#')).unwrap();
    let mut f = first.splitn(3, ' ');
    let (id, code0, rest) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    assert_eq!(code0, "0", "the first crafted vector is a valid frame");
    let changed = crafted.replacen(first, &format!("{id} 15 {rest}"), 1);
    std::fs::write(d.path().join("crafted.vec"), changed).unwrap();
    let (code, out, err) = gw(&["hw", "verify", "--vectors", dir]);
    assert_eq!(code, 1);
    assert_eq!(out.trim(), format!("{n} vectors, 1 disagreements"));
    assert!(
        err.contains("expected BAD_HASH, reference verifier says ACCEPT"),
        "{err}"
    );
    // Unreadable input.
    std::fs::write(d.path().join("bad.vec"), "1 0 2 zz\n").unwrap();
    let (code, _, err) = gw(&["hw", "verify", "--vectors", dir]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.vec:1"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        gw(&["hw", "verify", "--vectors", empty.path().to_str().unwrap()]).0,
        2
    );
}
