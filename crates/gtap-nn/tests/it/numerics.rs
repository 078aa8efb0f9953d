//! Portable numerics: pinned bytes of a small training run and of coalition values, so a change
//! of bytes is always deliberate (and a machine that computes other bytes fails here); the
//! portable convolution computes libtorch's.

use gtap_game::{Coalition, Game};
use gtap_nn::numerics::{self, Numerics};
use gtap_nn::{Arch, MaskedEvaluator, Network, Utility};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// If this fails after a deliberate change (a libtorch upgrade, another pin, a change to
/// training), bump `numerics::PORTABLE_VERSION` or the stage versions and update the hashes.
/// If it fails on another machine with no change at all, portable numerics do not hold there:
/// report the CPU (`lscpu`) with the hashes it computed.
///
/// Measured so far: every AMD EPYC (AVX2, no AVX-512) of the earlier sessions computed the
/// first pair; an Intel Xeon (family 6 model 207, AVX-512 and AMX; 2026-12-07) computes the
/// second, for the same binary and libtorch. So training's pins hold per CPU vendor as far as
/// measured, not across vendors (README, "Reproducibility"); the cause is not isolated (not
/// glibc's ifuncs, not MKL's instruction set: MKL reports `CNR:COMPATIBLE` and its results do
/// not move under `MKL_ENABLE_INSTRUCTIONS`; no oneDNN primitive runs). An unknown vendor fails.
const PINNED_TRAINING: &[(&str, [&str; 2])] = &[
    (
        "AuthenticAMD",
        [
            "f9dbaee1c2da7dc141c4ca4e449b23fb1ea7505fda31dd7eb7202c509b34c484",
            "5eae9e143246eaef58db2e6a375e83eaafb05b6f16411f5251ca31e11facbc7b",
        ],
    ),
    (
        "GenuineIntel",
        [
            "f37ce61edbaeaeb937b290c9718bed8353a04910090c6174fe3263b95d5b748a",
            "5c4451748fb6f06895987fa0449dc42c9f292c39881678b2088b93d82e6b8db7",
        ],
    ),
];

/// Coalition values (cross-entropy and accuracy) of a seeded LeNet-300-100: the reference
/// path's bytes (`gtap_nn::certify`: the FMA+AVX2 GEMM and ATen's AVX2 elementwise kernels),
/// one hash for every vendor. Computed on the Intel Xeon above (2026-12-07).
const PINNED_VALUES: &str = "4f2113fc1a07bac87c252fcb5da1fb169b74e7fa5f503eafd18baa2799f6c1e1";

/// This CPU's vendor string (`/proc/cpuinfo`'s `vendor_id`).
fn cpu_vendor() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("vendor_id"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
fn a_small_training_run_has_the_pinned_bytes() {
    assert_eq!(
        numerics::init(Numerics::Portable).unwrap(),
        Numerics::Portable
    );
    let dir = tempfile::tempdir().unwrap();
    let lenet5 = crate::train_once_with_dropout(dir.path(), "lenet5.safetensors", 0.3);
    let lenet300 = crate::train_arch(dir.path(), Arch::Lenet300100, "lenet300.safetensors");
    let got = [sha256_hex(&lenet5), sha256_hex(&lenet300)];
    let vendor = cpu_vendor();
    let expected = PINNED_TRAINING
        .iter()
        .find(|(v, _)| *v == vendor)
        .map(|(_, hashes)| hashes)
        .unwrap_or_else(|| panic!("no pinned bytes for CPU vendor `{vendor}`: {got:?}"));
    assert_eq!(&got, expected, "{vendor}");
}

#[test]
fn coalition_values_have_the_same_pinned_bytes_on_every_vendor() {
    assert_eq!(
        numerics::init(Numerics::Portable).unwrap(),
        Numerics::Portable
    );
    let net = Network::new(Arch::Lenet300100, Device::Cpu, 21);
    let probe = crate::synthetic(200, 12);
    let coalitions: Vec<Coalition> = (0..8)
        .map(|k| {
            Coalition::from_players(400, (0..400).filter(|p| (p * 31 + k * 17) % (k + 4) != 0))
        })
        .collect();
    let mut bytes = Vec::new();
    let mut all = Vec::new();
    for utility in [Utility::NegativeCrossEntropy, Utility::Accuracy] {
        let game = MaskedEvaluator::new(&net, &probe, utility, 4);
        let mut values = vec![0.0; coalitions.len()];
        game.values(&coalitions, &mut values);
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        all.push(values);
    }
    assert_eq!(
        sha256_hex(&bytes),
        PINNED_VALUES,
        "{}: values {all:?}",
        cpu_vendor()
    );
}

#[test]
fn portable_convolution_equals_libtorchs() {
    let _ = numerics::current();
    let (x, w, b) = gtap_nn::with_torch_rng(3, || {
        (
            Tensor::randn([300, 6, 14, 14], (Kind::Float, Device::Cpu)),
            Tensor::randn([16, 6, 5, 5], (Kind::Float, Device::Cpu)),
            Tensor::randn([16], (Kind::Float, Device::Cpu)),
        )
    });
    for (stride, padding) in [(1, 0), (1, 2), (2, 2), (3, 1)] {
        let ours = numerics::conv2d_strided(&x, &w, Some(&b), stride, padding);
        let theirs = x.conv2d(
            &w,
            Some(&b),
            [stride, stride],
            [padding, padding],
            [1, 1],
            1,
        );
        assert_eq!(
            ours.size(),
            theirs.size(),
            "stride {stride}, padding {padding}"
        );
        // 150-term dot products of N(0,1) values: float32 rounding is ~1e-5 here.
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        assert!(
            diff < 1e-4,
            "stride {stride}, padding {padding}: max |diff| {diff}"
        );
    }
}
