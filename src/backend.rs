//! Compute device selection: the one place in nucseg that names a concrete Burn backend.
//!
//! Burn 0.22 tensors carry no backend type; a runtime [`Device`] picks it. nucseg's Cargo
//! features decide which backends are compiled in: `flex` (pure-Rust CPU, the default),
//! `wgpu` (Vulkan / Metal / DX12 GPUs, or lavapipe on CPU) and `cuda` (NVIDIA GPUs).
//! Everything else in the crate takes a `&Device` and runs wherever it points.

use std::{fmt, str::FromStr};

pub use burn::tensor::Device;

/// A user's choice of compute backend, e.g. from a `--device cpu|wgpu|cuda` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    /// The pure-Rust Flex CPU backend (Cargo feature `flex`, on by default).
    #[default]
    Cpu,
    /// The wgpu backend on the best adapter found (Cargo feature `wgpu`).
    Wgpu,
    /// CUDA device 0 (Cargo feature `cuda`).
    Cuda,
}

/// Why a compute device could not be selected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The name is not one of `cpu`, `wgpu`, `cuda`.
    #[error("unknown device `{0}`: expected one of cpu, wgpu, cuda")]
    Unknown(String),
    /// The backend exists but this build of nucseg was compiled without it.
    #[error(
        "device `{kind}` is not compiled into this build of nucseg: enable its Cargo feature `{feature}`"
    )]
    NotCompiled {
        /// The requested backend.
        kind: BackendKind,
        /// The Cargo feature that enables it.
        feature: &'static str,
    },
}

impl BackendKind {
    /// All backends, in the order `--device` lists them.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// The name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The Cargo feature of nucseg that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            BackendKind::Cpu => "flex",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build of nucseg can create a device of this kind.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "flex"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The inference device for this backend (no gradients). Call
    /// [`Device::autodiff`] on it to train.
    pub fn device(self) -> Result<Device, BackendError> {
        let not_compiled = BackendError::NotCompiled {
            kind: self,
            feature: self.feature(),
        };
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            _ => Err(not_compiled),
        }
    }

    /// The fastest compiled-in backend: CUDA, then wgpu, then the CPU.
    pub fn best_compiled() -> BackendKind {
        [BackendKind::Cuda, BackendKind::Wgpu, BackendKind::Cpu]
            .into_iter()
            .find(|k| k.is_compiled())
            .unwrap_or(BackendKind::Cpu)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(BackendKind::Cpu),
            "wgpu" | "gpu" | "vulkan" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }
}

/// The device for a `--device` string: `cpu`, `wgpu` or `cuda`.
pub fn device_from_name(name: &str) -> Result<Device, BackendError> {
    name.parse::<BackendKind>()?.device()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_others() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.name().parse::<BackendKind>(), Ok(kind));
        }
        assert_eq!(" CUDA ".parse::<BackendKind>(), Ok(BackendKind::Cuda));
        let err = "tpu".parse::<BackendKind>().unwrap_err();
        assert!(err.to_string().contains("tpu"), "{err}");
    }

    #[test]
    fn uncompiled_backend_names_its_feature() {
        for kind in BackendKind::ALL {
            match kind.device() {
                Ok(_) => assert!(kind.is_compiled()),
                Err(e) => {
                    assert!(!kind.is_compiled());
                    assert!(e.to_string().contains(kind.feature()), "{e}");
                }
            }
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_device_computes() {
        use burn::tensor::Tensor;
        let device = BackendKind::Cpu.device().unwrap();
        let t = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        let s: f32 = t.sum().into_scalar();
        assert_eq!(s, 6.0);
    }
}
