//! A GEMM whose bytes depend on nothing but its operands: not on the CPU's vendor, not on the
//! thread count, not on how many rows are computed at once: every dense product of the
//! reference path ([`linear`], [`linear_rows`]; issue 26, `crate::certify`).
//!
//! It is `matrixmultiply`'s f32 kernel. That crate dispatches at run time (AVX-512, FMA+AVX2,
//! AVX, SSE2 kernels), which would make bytes depend on the CPU, so [`matmul`] refuses a CPU
//! without FMA and AVX2, and the crate's `avx512` feature stays off (its default features are
//! not enabled anywhere in the build: `cargo tree -i matrixmultiply -e features`; the pinned
//! hash test fails on an AVX-512 machine if it ever is): on every CPU it accepts, the same
//! FMA+AVX2 kernel runs. Each output element is the
//! kernel's fixed-order sum over `k` in blocks of a fixed size, whatever `m` is and however the
//! rows are split, so rows computed in any batch, on any thread, are bit-identical; FMA rounds
//! once per step by IEEE 754, so Intel and AMD agree. MKL's portable branch
//! (`MKL_CBWR=COMPATIBLE`, SSE2) gives none of these guarantees across vendors and runs at a
//! fraction of the speed (`gtap bench coalitions` reports both).

use tch::{Device, Kind, Tensor};

use crate::NnError;

/// Whether this CPU runs the kernel [`matmul`] promises (FMA and AVX2).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a · b` for row-major `a` (`m × k`) and `b` (`k × n`), rows split over `threads` scoped
/// threads (the split does not change a byte). Buffers of other lengths are an error (the
/// kernel reads through raw pointers sized by `m`, `k`, `n`).
pub fn matmul_slices(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) -> Result<Vec<f32>, NnError> {
    if a.len() != m * k || b.len() != k * n {
        return Err(NnError::Gemm(format!(
            "buffers of {} and {} values are not {m}×{k} and {k}×{n}",
            a.len(),
            b.len()
        )));
    }
    Ok(product(a, b, m, k, n, Layout::RowMajor, threads))
}

/// How the right operand is stored.
#[derive(Clone, Copy)]
enum Layout {
    /// `k × n`, row-major.
    RowMajor,
    /// `n × k`, row-major: a weight `[out, in]` used as its transpose.
    Transposed,
}

/// The product of `a` (`m × k`) and `b` (`layout`), rows over `threads` threads. Lengths are
/// checked by the callers.
fn product(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    layout: Layout,
    threads: usize,
) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    product_into(a, b, &mut c, (m, k, n), layout, threads);
    c
}

/// [`product`] into `c` (`m × n`, row-major). One thread runs on the caller's (a dense layer
/// of the reference path runs this for every step of every walk: a thread start each time
/// cost more than the product at small `m`).
#[allow(unsafe_code)]
fn product_into(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    layout: Layout,
    threads: usize,
) {
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "checked by the callers"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (rsb, csb) = match layout {
        Layout::RowMajor => (n as isize, 1),
        Layout::Transposed => (1, k as isize),
    };
    let rows_of = |a_part: &[f32], c_part: &mut [f32]| {
        let rows = c_part.len() / n;
        // The one unsafe call in gtap-nn's products: matrixmultiply has no safe entry point.
        // SAFETY: the pointers and strides describe a `rows × k` row-major buffer, a `k × n`
        // operand of `k·n` values (row-major, or the transpose of a row-major `n × k`) and a
        // `rows × n` row-major output, of exactly those lengths (asserted above and by the
        // split below), and `c_part` is borrowed mutably here alone.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                1.0,
                a_part.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                rsb,
                csb,
                0.0,
                c_part.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    };
    let rows_per = m.div_ceil(threads.max(1));
    if rows_per >= m {
        rows_of(a, c);
        return;
    }
    std::thread::scope(|scope| {
        for (i, c_part) in c.chunks_mut(rows_per * n).enumerate() {
            let rows = c_part.len() / n;
            let a_part = &a[i * rows_per * k..(i * rows_per + rows) * k];
            scope.spawn(move || rows_of(a_part, c_part));
        }
    });
}

fn values(t: &Tensor) -> Result<Vec<f32>, NnError> {
    let t = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    Ok(Vec::<f32>::try_from(t.f_view([-1])?)?)
}

/// `c = x W` on slices (`x`: `rows × inputs`, `weight_t`: the weight transposed, `[in, out]`
/// row-major, `c`: `rows × out`), on the calling thread: [`linear`]'s bytes, row for row.
pub(crate) fn linear_rows(x: &[f32], weight_t: &[f32], c: &mut [f32], rows: usize, inputs: usize) {
    let out = weight_t.len() / inputs.max(1);
    product_into(x, weight_t, c, (rows, inputs, out), Layout::RowMajor, 1);
}

/// [`matmul_slices`] on two 2-D float CPU tensors, using `threads` threads.
pub fn matmul(a: &Tensor, b: &Tensor, threads: usize) -> Result<Tensor, NnError> {
    if !supported() {
        return Err(NnError::Gemm("this CPU lacks FMA or AVX2".into()));
    }
    let (sa, sb) = (a.size(), b.size());
    if sa.len() != 2 || sb.len() != 2 || sa[1] != sb[0] {
        return Err(NnError::Gemm(format!(
            "shapes {sa:?} and {sb:?} do not multiply"
        )));
    }
    let (m, k, n) = (sa[0] as usize, sa[1] as usize, sb[1] as usize);
    let c = matmul_slices(&values(a)?, &values(b)?, m, k, n, threads)?;
    Ok(Tensor::f_from_slice(&c)?.f_view([sa[0], sb[1]])?)
}

/// `x Wᵀ` for `x` (`[…, in]`) and a weight `[out, in]`: a dense layer's product, `[…, out]`,
/// on the calling thread. Every output value is the kernel's fixed-order sum over `in` of
/// its row of `x` and its row of the weight, whatever the other rows are: the reference
/// value of a dense layer on one example (and, masks being exact zeros and ones, on one
/// coalition, whether the mask multiplies the input or is folded into the weight).
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor, NnError> {
    if !supported() {
        return Err(NnError::Gemm("this CPU lacks FMA or AVX2".into()));
    }
    let (sx, sw) = (x.size(), weight.size());
    let inputs = *sx.last().unwrap_or(&-1);
    if sx.is_empty() || sw.len() != 2 || sw[1] != inputs {
        return Err(NnError::Gemm(format!(
            "input {sx:?} does not fit a weight {sw:?}"
        )));
    }
    let (k, n) = (inputs as usize, sw[0] as usize);
    let m = sx[..sx.len() - 1].iter().product::<i64>() as usize;
    let mut shape = sx.clone();
    *shape.last_mut().expect("not empty") = sw[0];
    if x.device() == Device::Cpu && x.kind() == Kind::Float && weight.kind() == Kind::Float {
        // Straight from and into the tensors' buffers: no copies on the hot path.
        let (x, weight_t) = (x.f_contiguous()?, weight.f_tr()?.f_contiguous()?);
        let mut c = Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu))?;
        product_into(
            crate::certify::values(&x),
            crate::certify::values(&weight_t),
            crate::certify::values_mut(&mut c),
            (m, k, n),
            Layout::RowMajor,
            1,
        );
        return Ok(c);
    }
    let c = product(
        &values(x)?,
        &values(weight)?,
        m,
        k,
        n,
        Layout::Transposed,
        1,
    );
    Ok(Tensor::f_from_slice(&c)?
        .f_view(shape.as_slice())?
        .f_to_device(x.device())?)
}
