//! Build script shared by every package that links libtorch: embeds the directory of the
//! libtorch shared libraries as an rpath, so binaries and test executables run without the
//! user exporting `LD_LIBRARY_PATH`. torch-sys publishes that directory through its
//! `links = "tch"` metadata as `DEP_TCH_LIBTORCH_LIB` (visible because the package depends
//! on torch-sys directly).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // libtorch_cuda finds the CUDA libraries of the PyPI wheel through its own rpath,
        // so this one entry is enough on CPU and GPU machines alike.
    }
}
