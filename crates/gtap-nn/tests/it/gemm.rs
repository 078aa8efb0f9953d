//! The portable GEMM (issue 26's groundwork): bytes that depend only on the operands.

use gtap_nn::gemm::{matmul, matmul_slices, supported};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

/// Operands from integer arithmetic, not libtorch's RNG: the same on any machine.
fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..m * k)
        .map(|i| ((i as u64 * 2_654_435_761) % 100_003) as f32 / 100_003.0 * 3.0 - 1.5)
        .collect();
    let b = (0..k * n)
        .map(|i| ((i as u64 * 40_503 + 17) % 99_991) as f32 / 99_991.0 * 0.2 - 0.1)
        .collect();
    (a, b)
}

#[test]
fn rows_do_not_depend_on_the_batch_or_the_thread_split() {
    if !supported() {
        return;
    }
    let (m, k, n) = (257, 784, 300);
    let (a, b) = operands(m, k, n);
    let full = matmul_slices(&a, &b, m, k, n, 1).unwrap();
    for threads in [2, 3, 8] {
        assert!(
            matmul_slices(&a, &b, m, k, n, threads).unwrap() == full,
            "{threads} threads"
        );
    }
    for (start, rows) in [(0, 1), (5, 3), (17, 64), (200, 57), (256, 1)] {
        let part = matmul_slices(&a[start * k..(start + rows) * k], &b, rows, k, n, 2).unwrap();
        assert!(
            part == full[start * n..(start + rows) * n],
            "rows {start}..+{rows}"
        );
    }
}

#[test]
fn it_agrees_with_libtorch_within_the_rounding_bound() {
    if !supported() {
        return;
    }
    let (m, k, n) = (64, 400, 120);
    let (a, b) = operands(m, k, n);
    let ta = Tensor::from_slice(&a).view([m as i64, k as i64]);
    let tb = Tensor::from_slice(&b).view([k as i64, n as i64]);
    let ours = matmul(&ta, &tb, 2).unwrap();
    let theirs = ta.matmul(&tb);
    // Two float32 sums of k products each differ by at most 2·γ_k·Σ|a_i b_i|.
    let gamma = k as f64 * 2f64.powi(-24) / (1.0 - k as f64 * 2f64.powi(-24));
    let bound = ta.abs().matmul(&tb.abs()).to_kind(Kind::Double) * (2.0 * gamma);
    let excess = ((&ours - &theirs).abs().to_kind(Kind::Double) - bound)
        .max()
        .double_value(&[]);
    assert!(excess <= 0.0, "outside the bound by {excess}");
}

/// One hash for every CPU with FMA: no per-vendor table (compare the libtorch pins in
/// numerics.rs, which differ between Intel and AMD).
#[test]
fn its_bytes_are_pinned() {
    if !supported() {
        return;
    }
    let (m, k, n) = (100, 784, 300);
    let (a, b) = operands(m, k, n);
    let c = matmul_slices(&a, &b, m, k, n, 2).unwrap();
    let bytes: Vec<u8> = c.iter().flat_map(|x| x.to_le_bytes()).collect();
    let hash = hex(&Sha256::digest(&bytes));
    assert_eq!(
        hash, "879757b2925e773de621f2f5541ba0c9b000701278d279419c47683006161a32",
        "the portable GEMM's bytes changed"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn shapes_that_do_not_multiply_are_refused() {
    let a = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu));
    let err = matmul(&a, &a, 1).unwrap_err().to_string();
    if supported() {
        assert_eq!(
            err,
            "portable GEMM: shapes [3, 4] and [3, 4] do not multiply"
        );
    }
}
