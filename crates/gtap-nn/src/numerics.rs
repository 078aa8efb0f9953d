//! Which floating-point code paths libtorch may take, so that a result does not depend on the
//! CPU that computed it.
//!
//! libtorch picks kernels by CPU: MKL's GEMM dispatches per vendor and instruction set and splits
//! work by thread count, ATen's own kernels are compiled per vector width (AVX2, AVX-512), and
//! oneDNN's convolutions are JIT-compiled for the machine. Measured on one machine (BENCHMARKS.md,
//! "Portable numerics"): a LeNet checkpoint changes with the thread count, with `MKL_CBWR` and
//! with `ATEN_CPU_CAPABILITY`; MKL honours only its `COMPATIBLE` branch on non-Intel CPUs (every
//! other branch silently falls back to `AUTO`), and `COMPATIBLE` is not thread-count invariant.
//!
//! [`Numerics::Portable`] (the default) therefore pins:
//! - MKL to its `COMPATIBLE` branch (SSE2 without approximate reciprocals: the same code on Intel
//!   and AMD) and to one thread;
//! - ATen's kernels to the AVX2 build (`ATEN_CPU_CAPABILITY=avx2`), one intra-op thread;
//! - convolutions to im2col + one MKL GEMM ([`conv2d`]) instead of oneDNN;
//! - on CUDA, cuBLAS to a fixed workspace (`CUBLAS_WORKSPACE_CONFIG`), and convolutions to the
//!   same im2col + GEMM path (no cuDNN autotuning).
//!
//! gtap recovers the cores by running independent work side by side ([`map_in_parallel`] over
//! chunks cut by data size; stage instances in the engine), never by splitting one reduction
//! across threads. [`Numerics::Fast`] leaves libtorch's defaults: every
//! core, the best kernels, bytes that depend on the machine.
//!
//! The settings are environment variables that MKL and ATen read once, at their first use, so
//! [`init`] must run before the first tensor operation of the process: the `gtap` binary calls it
//! first thing, and the constructors of networks and data (and `with_torch_rng`) call
//! [`current`], which initialises the default when nothing else did.

use std::sync::OnceLock;

use crate::NnError;

/// How libtorch computes on this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numerics {
    /// The same bytes on any x86-64 CPU with AVX2 and FMA, whatever the thread count.
    Portable,
    /// libtorch's defaults: faster, but bytes depend on the CPU and the thread count.
    Fast,
}

/// Bump when the pinned code paths change (a libtorch upgrade, another MKL branch): results
/// computed under the old pins are not the bytes the new ones give.
pub const PORTABLE_VERSION: u32 = 1;

/// Environment variables set in portable mode, in the order they are applied.
pub const PORTABLE_ENV: &[(&str, &str)] = &[
    // The only MKL code branch that Intel and non-Intel CPUs both run.
    ("MKL_CBWR", "COMPATIBLE"),
    // COMPATIBLE is not thread-count invariant: one MKL thread, here and in threads started later.
    ("MKL_NUM_THREADS", "1"),
    ("MKL_DYNAMIC", "FALSE"),
    ("OMP_NUM_THREADS", "1"),
    // ATen's AVX-512 kernels (wider vectors, other Sleef variants) round differently.
    ("ATEN_CPU_CAPABILITY", "avx2"),
    // Deterministic cuBLAS (a fixed workspace per stream).
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
];

static MODE: OnceLock<Numerics> = OnceLock::new();

impl Numerics {
    /// `fast` when `GTAP_FAST_MATH` is set and not falsey (empty, `0`, `false`, `no`, `off`, as
    /// the binary's `--fast-math` reads it), else portable.
    pub fn from_env() -> Numerics {
        match std::env::var("GTAP_FAST_MATH") {
            Ok(v)
                if !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "" | "0" | "false" | "no" | "off"
                ) =>
            {
                Numerics::Fast
            }
            _ => Numerics::Portable,
        }
    }

    /// What a cache key records: `portable-<PORTABLE_VERSION>` or `fast`, so entries computed
    /// under one never stand in for the other's.
    pub fn cache_tag(self) -> String {
        match self {
            Numerics::Portable => format!("portable-{PORTABLE_VERSION}"),
            Numerics::Fast => "fast".to_owned(),
        }
    }

    /// [`Numerics::cache_tag`] of this process: with `+cuda` appended when stages compute on a
    /// GPU ([`crate::device`]; a GPU's float rounding is not the CPU's), so entries built on a
    /// GPU never stand in for CPU ones in a shared cache.
    pub fn cache_tag_here(self) -> String {
        let tag = self.cache_tag();
        if crate::device().is_cuda() {
            tag + "+cuda"
        } else {
            tag
        }
    }
}

impl std::fmt::Display for Numerics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Numerics::Portable => write!(f, "portable (v{PORTABLE_VERSION})"),
            Numerics::Fast => f.write_str("fast"),
        }
    }
}

/// Applies `mode` to this process. Must run before the first tensor operation; calling it again
/// with the same mode does nothing, with another mode is an error (libtorch has read the first).
pub fn init(mode: Numerics) -> Result<Numerics, NnError> {
    let chosen = *MODE.get_or_init(|| {
        apply(mode);
        mode
    });
    if chosen != mode {
        return Err(NnError::Numerics {
            requested: mode.to_string(),
            active: chosen.to_string(),
        });
    }
    Ok(current())
}

/// The mode of this process; initialises [`Numerics::from_env`] when [`init`] was not called.
/// Under portable numerics it also pins the calling thread to one libtorch thread: OpenMP gives
/// every new thread (a test's, an engine job's) the process default, read before `init` ran.
pub fn current() -> Numerics {
    let mode = *MODE.get_or_init(|| {
        let mode = Numerics::from_env();
        apply(mode);
        mode
    });
    if mode == Numerics::Portable {
        pin_thread();
    }
    mode
}

fn pin_thread() {
    thread_local! {
        static PINNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    PINNED.with(|pinned| {
        if !pinned.replace(true) {
            tch::set_num_threads(1);
        }
    });
}

/// Whether this CPU runs the portable code paths: x86-64 with AVX2 and FMA.
pub fn cpu_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn apply(mode: Numerics) {
    match mode {
        Numerics::Portable => {
            for (key, value) in PORTABLE_ENV {
                if std::env::var(key).is_ok_and(|v| v != *value) {
                    tracing::debug!("portable numerics: overriding {key} with {value}");
                }
                // Runs before libtorch reads its environment (see the module docs).
                std::env::set_var(key, value);
            }
            if !cpu_supported() {
                tracing::warn!(
                    "this CPU lacks AVX2/FMA: results are deterministic here but may differ from \
                     other machines' (see README, Reproducibility)"
                );
            }
        }
        Numerics::Fast => {}
    }
}

/// A 2-d convolution (stride 1, square padding); see [`conv2d_strided`].
pub fn conv2d(
    x: &tch::Tensor,
    weight: &tch::Tensor,
    bias: Option<&tch::Tensor>,
    padding: i64,
) -> tch::Tensor {
    conv2d_strided(x, weight, bias, 1, padding)
}

/// A 2-d convolution (square stride and padding) that follows the process's numerics:
/// libtorch's `conv2d` in fast mode, im2col + one GEMM in portable mode (no oneDNN or cuDNN
/// kernel, whose choice and blocking depend on the machine). `x`: `[N, C, H, W]`, `weight`:
/// `[O, C, kh, kw]`.
pub fn conv2d_strided(
    x: &tch::Tensor,
    weight: &tch::Tensor,
    bias: Option<&tch::Tensor>,
    stride: i64,
    padding: i64,
) -> tch::Tensor {
    if current() == Numerics::Fast {
        return x.conv2d(
            weight,
            bias,
            [stride, stride],
            [padding, padding],
            [1, 1],
            1,
        );
    }
    let n = x.size()[0];
    if n > CONV_CHUNK {
        // Bounded im2col buffers; chunk boundaries depend on the example count only.
        let parts: Vec<tch::Tensor> = (0..n)
            .step_by(CONV_CHUNK as usize)
            .map(|start| {
                let len = CONV_CHUNK.min(n - start);
                conv2d_im2col(&x.narrow(0, start, len), weight, bias, stride, padding)
            })
            .collect();
        return tch::Tensor::cat(&parts, 0);
    }
    conv2d_im2col(x, weight, bias, stride, padding)
}

/// Examples per im2col GEMM (LeNet5's conv1: 256 × 784 × 25 floats, 20 MB).
const CONV_CHUNK: i64 = 256;

fn conv2d_im2col(
    x: &tch::Tensor,
    weight: &tch::Tensor,
    bias: Option<&tch::Tensor>,
    stride: i64,
    padding: i64,
) -> tch::Tensor {
    let (n, _, h, w) = x.size4().expect("conv2d input is [N, C, H, W]");
    let (o, c, kh, kw) = weight.size4().expect("conv2d weight is [O, C, kh, kw]");
    let oh = (h + 2 * padding - kh) / stride + 1;
    let ow = (w + 2 * padding - kw) / stride + 1;
    // [C·kh·kw, N·L]: the whole batch is one GEMM, so no per-example split.
    let cols = if x.requires_grad() && !STRIDED_GRADIENTS.with(std::cell::Cell::get) {
        im2col_columns(x, [kh, kw], stride, padding)
    } else {
        strided_columns(x, [kh, kw], stride, padding)
    };
    let mut out = weight.view([o, c * kh * kw]).mm(&cols);
    if let Some(b) = bias {
        out = out + b.view([o, 1]);
    }
    out.view([o, n, oh, ow]).permute([1, 0, 2, 3]).contiguous()
}

/// The im2col matrix `[C·kh·kw, N·OH·OW]` by libtorch's `im2col` and a transposing copy (two
/// passes, the first scalar): the original columns, whose gradient `col2im` sums.
fn im2col_columns(x: &tch::Tensor, [kh, kw]: [i64; 2], stride: i64, padding: i64) -> tch::Tensor {
    let (n, c, h, w) = x.size4().expect("conv2d input is [N, C, H, W]");
    let (oh, ow) = (
        (h + 2 * padding - kh) / stride + 1,
        (w + 2 * padding - kw) / stride + 1,
    );
    x.im2col([kh, kw], [1, 1], [padding, padding], [stride, stride])
        .permute([1, 0, 2])
        .reshape([c * kh * kw, n * oh * ow])
}

/// [`im2col_columns`]' matrix by one strided copy of the padded input: the same values in the
/// same layout (copies, no arithmetic), so the convolution's bytes do not change, about twice
/// as fast. Its gradient flows through `as_strided`'s backward, which sums a position's
/// windows in another order than `col2im`: hence only where no input gradient is needed, or
/// where the recipe asks for it ([`with_strided_gradients`]).
fn strided_columns(x: &tch::Tensor, [kh, kw]: [i64; 2], stride: i64, padding: i64) -> tch::Tensor {
    let (n, c, h, w) = x.size4().expect("conv2d input is [N, C, H, W]");
    let (oh, ow) = (
        (h + 2 * padding - kh) / stride + 1,
        (w + 2 * padding - kw) / stride + 1,
    );
    let padded = if padding > 0 {
        x.constant_pad_nd([padding, padding, padding, padding])
    } else {
        x.contiguous()
    };
    let s = padded.stride();
    padded
        .as_strided(
            [c, kh, kw, n, oh, ow],
            [s[1], s[2], s[3], s[0], s[2] * stride, s[3] * stride],
            None,
        )
        .reshape([c * kh * kw, n * oh * ow])
}

thread_local! {
    static STRIDED_GRADIENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's convolutions building their columns by [`strided_columns`]
/// also when the input needs a gradient: the micro-batched training recipe's convolutions
/// (`TrainConfig::micro_batches` ≥ 2), whose bytes are new anyway. Elsewhere the original
/// `col2im` gradient keeps trained checkpoints' bytes.
pub(crate) fn with_strided_gradients<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the thread's setting however `f` ends (the pool's threads outlive a panic).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STRIDED_GRADIENTS.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STRIDED_GRADIENTS.with(|s| s.replace(true)));
    f()
}

/// Max-pooling over `k`×`k` windows at stride `k` (no padding; a partial window at the edge
/// dropped, as libtorch's floor mode does), following the process's numerics like
/// [`conv2d_strided`]: libtorch's kernel in fast mode and wherever the input needs a gradient
/// (its backward routes a window's gradient to the first maximum: the bytes of every trained
/// checkpoint); elsewhere the elementwise maximum of the k² strided slices, the same values
/// (a maximum is exact, and both keep a NaN) by a vector kernel instead of a scalar loop,
/// about ten times faster. Under [`with_strided_gradients`] (the micro-batched recipe) inputs
/// with a gradient take two `amax` reductions, whose backward shares a tie between the tied
/// positions (after a ReLU only exact positive ties, all but absent).
pub fn max_pool2d(x: &tch::Tensor, k: i64) -> tch::Tensor {
    if current() == Numerics::Fast || k < 2 || x.dim() != 4 {
        return x.max_pool2d_default(k);
    }
    let strided_gradients = STRIDED_GRADIENTS.with(std::cell::Cell::get);
    if x.requires_grad() && !strided_gradients {
        return x.max_pool2d_default(k);
    }
    let (n, c, h, w) = x.size4().expect("a 4-d tensor");
    let (oh, ow) = (h / k, w / k);
    let x = x.narrow(2, 0, oh * k).narrow(3, 0, ow * k);
    if x.requires_grad() {
        return x
            .contiguous()
            .view([n, c, oh, k, ow * k])
            .amax([3], false)
            .view([n, c, oh, ow, k])
            .amax([4], false);
    }
    let mut pooled: Option<tch::Tensor> = None;
    for i in 0..k {
        for j in 0..k {
            let slice = x.slice(2, i, oh * k, k).slice(3, j, ow * k, k);
            pooled = Some(match pooled {
                None => slice,
                Some(m) => m.maximum(&slice),
            });
        }
    }
    pooled.expect("k >= 2 slices")
}

/// Threads for side-by-side work: `GTAP_THREADS` when set, else the available parallelism.
pub fn workers() -> usize {
    std::env::var("GTAP_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Maps `f` over `items` on up to [`workers`] threads and returns the results in item order.
/// Under portable numerics each worker computes on one libtorch thread, so the results do not
/// depend on how many workers there are: this is how gtap uses the cores. Under fast numerics
/// the items run one after another (libtorch parallelises inside each).
///
/// The workers are one pool for the process ([`pool`]), started once: a training step maps
/// every few milliseconds, and new threads each time cost it a fifth of its speed (thread
/// start, OpenMP's per-thread set-up, cold allocator arenas).
pub fn map_in_parallel<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    use rayon::prelude::*;
    if current() == Numerics::Fast || items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    match pool() {
        Some(pool) => pool.install(|| items.into_par_iter().with_max_len(1).map(&f).collect()),
        None => items.into_iter().map(f).collect(),
    }
}

/// The process's [`workers`] threads, each pinned to one libtorch thread when it starts; none
/// with one worker (or where threads cannot start: then items run on the caller's thread).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let workers = workers();
        if workers < 2 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("gtap-worker-{i}"))
            // A new thread starts with OpenMP's process default: pin it like the first.
            .start_handler(|_| pin_thread())
            .build()
            .map_err(|e| tracing::warn!("no worker threads ({e}); computing on one"))
            .ok()
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::*;

    #[test]
    fn strided_columns_are_im2cols_columns() {
        current();
        // (N, C, side, kernel, stride, padding): LeNet5's and AlexNet's shapes, odd sides.
        for (i, (n, c, side, k, stride, padding)) in [
            (3, 1, 28, 5, 1, 2),
            (2, 6, 14, 5, 1, 0),
            (2, 3, 17, 11, 4, 2),
            (1, 4, 9, 3, 2, 1),
            (4, 2, 7, 3, 1, 1),
        ]
        .into_iter()
        .enumerate()
        {
            let x = crate::with_torch_rng(i as u64, || {
                Tensor::randn([n + 1, c, side, side], (Kind::Float, tch::Device::Cpu))
            });
            // A view into a larger tensor (an evaluation chunk), not at offset 0.
            let x = x.narrow(0, 1, n);
            let a = im2col_columns(&x, [k, k], stride, padding);
            let b = strided_columns(&x, [k, k], stride, padding);
            assert_eq!(a.size(), b.size(), "case {i}");
            assert!(a.equal(&b), "case {i}: the strided copy moved a value");
        }
    }

    #[test]
    fn pooling_by_slices_is_libtorchs_pooling() {
        current();
        for (i, (shape, k)) in [
            ([3, 6, 28, 28], 2),
            ([2, 16, 10, 10], 2),
            ([2, 4, 9, 7], 2),
            ([1, 3, 10, 11], 3),
        ]
        .into_iter()
        .enumerate()
        {
            // ReLU outputs: many exact zeros, so many tied windows.
            let x = crate::with_torch_rng(20 + i as u64, || {
                Tensor::randn(shape, (Kind::Float, tch::Device::Cpu))
            })
            .relu();
            let ours = max_pool2d(&x, k);
            let theirs = x.max_pool2d_default(k);
            assert_eq!(ours.size(), theirs.size(), "case {i}");
            let bits = |t: &Tensor| {
                Vec::<f32>::try_from(t.contiguous().view([-1]))
                    .unwrap()
                    .into_iter()
                    .map(f32::to_bits)
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&ours), bits(&theirs), "case {i}: other bytes");
            // With a gradient: libtorch's kernel, and under the micro-batched recipe the
            // same values by reductions.
            let xg = x.copy().set_requires_grad(true);
            assert!(max_pool2d(&xg, k).detach().equal(&theirs));
            let strided = with_strided_gradients(|| max_pool2d(&xg, k));
            assert!(strided.detach().equal(&theirs), "case {i}");
        }
    }

    #[test]
    fn a_convolution_is_the_same_with_and_without_an_input_gradient() {
        current();
        let x = crate::with_torch_rng(7, || {
            Tensor::randn([5, 6, 14, 14], (Kind::Float, tch::Device::Cpu))
        });
        let w = crate::with_torch_rng(8, || {
            Tensor::randn([16, 6, 5, 5], (Kind::Float, tch::Device::Cpu))
        });
        let plain = conv2d(&x, &w, None, 0);
        let x_grad = x.copy().set_requires_grad(true);
        let original = conv2d(&x_grad, &w, None, 0);
        let strided = with_strided_gradients(|| conv2d(&x_grad, &w, None, 0));
        assert!(plain.equal(&original.detach()));
        assert!(plain.equal(&strided.detach()));
        // Both carry a gradient to the input; the summation orders may differ, the values
        // agree to rounding.
        let g1 = Tensor::run_backward(&[original.sum(Kind::Float)], &[&x_grad], false, false);
        let g2 = Tensor::run_backward(&[strided.sum(Kind::Float)], &[&x_grad], false, false);
        assert!(g1[0].allclose(&g2[0], 1e-5, 1e-5, false));
    }
}
