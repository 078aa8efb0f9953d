//! Where tensors live: one device per process, chosen once (`cpu`, `cuda` or `auto`).
//!
//! Every tensor stage (training, evaluation, MCUE, coalition evaluation) puts its networks and
//! data on [`device`], so a pipeline file never names a device: the same file runs on a laptop
//! and on a GPU node. A GPU's float rounding is not the CPU's, so the numerics tag in the cache
//! key records the device ([`crate::Numerics::cache_tag_here`]): entries computed on a GPU never
//! stand in for CPU ones; nothing else in a key depends on the device.

use std::sync::OnceLock;

use tch::Device;

use crate::NnError;

/// The `device` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    /// The first GPU; an error where libtorch sees none.
    Cuda,
    /// The first GPU when libtorch sees one, else the CPU.
    #[default]
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self, NnError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            "auto" | "" => Ok(DeviceChoice::Auto),
            other => Err(NnError::Device(format!(
                "unknown device `{other}` (expected cpu, cuda or auto)"
            ))),
        }
    }
}

impl DeviceChoice {
    /// The device this choice means on this machine.
    pub fn resolve(self) -> Result<Device, NnError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(NnError::Device(
                "device cuda was asked for, but libtorch sees no GPU (is the CUDA build of torch \
                 installed, and a GPU visible?)"
                    .into(),
            )),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        }
    }

    /// `GTAP_DEVICE`, or `auto` when unset.
    pub fn from_env() -> Result<DeviceChoice, NnError> {
        std::env::var("GTAP_DEVICE").map_or(Ok(DeviceChoice::Auto), |v| v.parse())
    }
}

static DEVICE: OnceLock<Device> = OnceLock::new();

/// Fixes this process's device. Calling it again with a choice that resolves to another device
/// is an error (tensors already live on the first).
pub fn set_device(choice: DeviceChoice) -> Result<Device, NnError> {
    let wanted = choice.resolve()?;
    let chosen = *DEVICE.get_or_init(|| wanted);
    if chosen != wanted {
        return Err(NnError::Device(format!(
            "device {wanted:?} asked for, but this process already computes on {chosen:?}"
        )));
    }
    Ok(chosen)
}

/// This process's device: the one [`set_device`] fixed, else `GTAP_DEVICE` (default `auto`;
/// an unusable value falls back to the CPU with a warning, as the binary reports it first).
pub fn device() -> Device {
    *DEVICE.get_or_init(
        || match DeviceChoice::from_env().and_then(DeviceChoice::resolve) {
            Ok(device) => device,
            Err(err) => {
                tracing::warn!("{err}; computing on the CPU");
                Device::Cpu
            }
        },
    )
}
