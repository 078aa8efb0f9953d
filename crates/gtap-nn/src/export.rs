//! The physically pruned network: a [`Network`]'s layers sliced to the kept players, so that
//! inference costs what [`Network::cost`] counts.
//!
//! A dense layer keeps the weight rows of its kept outputs and the columns of its kept inputs
//! (and the kept outputs' biases). LeNet5 keeps conv1 whole, keeps the conv2 channels that have
//! at least one kept pooled feature, and after flattening gathers the kept features (an index
//! into the pruned conv2's `channel' · 25 + position` layout) in the order of fc1's kept columns.
//! AlexNet keeps, in every conv block, the filters of its kept channels over the kept channels
//! of the block before, and fc1 the columns of conv5's kept channels (16 positions each).
//! Removing a player this way computes exactly what the masked network computes with that
//! player's activation zeroed ([`crate::MaskedHead::masked_logits`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::{Arch, Network, NnError};

/// The weights of an exported model: safetensors, tensors in name order.
pub const PRUNED_WEIGHTS: &str = "model.safetensors";
/// The layout of an exported model: [`PrunedLayout`] as JSON.
pub const PRUNED_LAYOUT: &str = "model.json";

/// Padding of LeNet5's convolutions (as built in `model.rs`): conv1 pads 2, conv2 none.
const LENET5_PADDING: [usize; 2] = [2, 0];

/// The kept units of one player layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptUnits {
    pub layer: String,
    /// Units of the layer in the full network.
    pub size: usize,
    /// Unit ids within the layer (as in [`crate::UnitId`]), ascending.
    pub units: Vec<usize>,
}

/// One layer of the pruned network in forward order: a convolution (channels) or a dense layer
/// (features).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerShape {
    pub name: String,
    pub inputs: usize,
    pub outputs: usize,
    /// Convolutions only: square kernel size and zero padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<usize>,
    /// AlexNet's convolutions: stride and max-pooling after the ReLU (1 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<usize>,
}

/// What `model.json` records about a pruned network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedLayout {
    pub arch: Arch,
    pub layers: Vec<LayerShape>,
    /// Per player layer of the full network, the units that remain.
    pub kept: Vec<KeptUnits>,
    /// LeNet5: the conv2 channels (ids in the full network) that remain.
    pub channels: Option<Vec<usize>>,
    /// LeNet5: for each input of the pruned fc1, its position in the pruned conv2's flattened
    /// output (`channel' · 25 + position`, `channel'` counting kept channels only).
    pub gather: Option<Vec<usize>>,
    /// Weights and biases of the pruned network; equals `Network::cost(kept).params`.
    pub parameters: u64,
}

struct Layer {
    weight: Tensor,
    bias: Tensor,
}

/// A network with its non-kept players physically removed. Weights live on one device; `save`
/// writes them from the CPU.
pub struct PrunedNetwork {
    layout: PrunedLayout,
    convs: Vec<Layer>,
    dense: Vec<Layer>,
    gather: Option<Tensor>,
}

impl std::fmt::Debug for PrunedNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrunedNetwork")
            .field("layout", &self.layout)
            .finish()
    }
}

fn index(ids: &[usize], device: Device) -> Tensor {
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_slice(&ids).to_device(device)
}

fn dense_name(i: usize) -> String {
    format!("fc{}", i + 1)
}

fn conv_name(i: usize) -> String {
    format!("conv{}", i + 1)
}

impl PrunedNetwork {
    /// `net` with only the players `kept[p]` left (one flag per player, in global player order).
    pub fn from_network(net: &Network, kept: &[bool]) -> Result<PrunedNetwork, NnError> {
        if kept.len() != net.num_players() {
            return Err(NnError::MaskWidth {
                got: kept.len(),
                expected: net.num_players(),
            });
        }
        let _guard = tch::no_grad_guard();
        let device = net.device();
        let vars: BTreeMap<String, Tensor> = net.named_variables().into_iter().collect();
        let var = |name: String| vars[&name].detach();
        let kept_units: Vec<KeptUnits> = net
            .player_layers()
            .iter()
            .map(|l| KeptUnits {
                layer: l.name.clone(),
                size: l.size,
                units: (0..l.size).filter(|&u| kept[l.offset + u]).collect(),
            })
            .collect();

        let mut layers = Vec::new();
        let mut convs = Vec::new();
        let (mut channels, mut gather) = (None, None);
        if net.arch == Arch::Lenet5 {
            let conv1 = Layer {
                weight: var(conv_name(0) + ".weight").copy(),
                bias: var(conv_name(0) + ".bias").copy(),
            };
            let conv2_weight = var(conv_name(1) + ".weight");
            let features = kept_units
                .iter()
                .find(|k| k.layer == "conv2")
                .expect("LeNet5 has a conv2 player layer");
            let per_channel = features.size / conv2_weight.size()[0] as usize;
            let mut kept_channels: Vec<usize> =
                features.units.iter().map(|f| f / per_channel).collect();
            kept_channels.dedup();
            let ids = index(&kept_channels, device);
            let conv2 = Layer {
                weight: conv2_weight.index_select(0, &ids),
                bias: var(conv_name(1) + ".bias").index_select(0, &ids),
            };
            for (i, conv) in [&conv1, &conv2].into_iter().enumerate() {
                let size = conv.weight.size();
                layers.push(LayerShape {
                    name: conv_name(i),
                    inputs: size[1] as usize,
                    outputs: size[0] as usize,
                    kernel: Some(size[2] as usize),
                    padding: Some(LENET5_PADDING[i]),
                    stride: None,
                    pool: None,
                });
            }
            convs = vec![conv1, conv2];
            gather = Some(
                features
                    .units
                    .iter()
                    .map(|f| {
                        let c = kept_channels
                            .binary_search(&(f / per_channel))
                            .expect("kept channel");
                        c * per_channel + f % per_channel
                    })
                    .collect::<Vec<usize>>(),
            );
            channels = Some(kept_channels);
        }
        if net.arch == Arch::Alexnet {
            // Every conv block keeps its kept channels' filters over the kept input channels.
            let mut kept_inputs: Option<Vec<usize>> = None;
            for (i, block) in net.trunk().iter().enumerate() {
                let units = &kept_units[i].units;
                let rows = index(units, device);
                let mut weight = var(format!("{}.weight", block.name)).index_select(0, &rows);
                if let Some(inputs) = &kept_inputs {
                    weight = weight.index_select(1, &index(inputs, device));
                }
                let size = weight.size();
                layers.push(LayerShape {
                    name: block.name.clone(),
                    inputs: size[1] as usize,
                    outputs: size[0] as usize,
                    kernel: Some(block.plan.kernel as usize),
                    padding: Some(block.plan.padding as usize),
                    stride: Some(block.plan.stride as usize),
                    pool: Some(block.plan.pool as usize),
                });
                convs.push(Layer {
                    weight: weight.copy(),
                    bias: var(format!("{}.bias", block.name))
                        .index_select(0, &rows)
                        .copy(),
                });
                kept_inputs = Some(units.clone());
            }
        }

        let mut dense = Vec::new();
        for i in 0..net.head_dims().len() {
            let name = dense_name(i);
            let mut weight = var(format!("{name}.weight"));
            let mut bias = var(format!("{name}.bias"));
            if let Some(Some(g)) = net.mask_before().get(i + 1) {
                let rows = index(&kept_units[g.layer].units, device);
                weight = weight.index_select(0, &rows);
                bias = bias.index_select(0, &rows);
            }
            if let Some(g) = net.mask_before()[i] {
                // A conv channel feeding a dense layer covers `spread` flattened positions.
                let columns: Vec<usize> = kept_units[g.layer]
                    .units
                    .iter()
                    .flat_map(|&u| u * g.spread..(u + 1) * g.spread)
                    .collect();
                weight = weight.index_select(1, &index(&columns, device));
            }
            let size = weight.size();
            layers.push(LayerShape {
                name,
                inputs: size[1] as usize,
                outputs: size[0] as usize,
                kernel: None,
                padding: None,
                stride: None,
                pool: None,
            });
            dense.push(Layer {
                weight: weight.copy(),
                bias: bias.copy(),
            });
        }

        let parameters = convs
            .iter()
            .chain(&dense)
            .map(|l| (l.weight.numel() + l.bias.numel()) as u64)
            .sum();
        let gather_tensor = gather.as_deref().map(|g| index(g, device));
        Ok(PrunedNetwork {
            layout: PrunedLayout {
                arch: net.arch,
                layers,
                kept: kept_units,
                channels,
                gather,
                parameters,
            },
            convs,
            dense,
            gather: gather_tensor,
        })
    }

    pub fn layout(&self) -> &PrunedLayout {
        &self.layout
    }

    /// Weights and biases left (see [`PrunedLayout::parameters`]).
    pub fn num_parameters(&self) -> u64 {
        self.layout.parameters
    }

    pub fn device(&self) -> Device {
        self.dense[0].weight.device()
    }

    /// Logits `[E, C]` of examples `xs` (`[E, 784]` or `[E, 1, 28, 28]`).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let mut h = match self.layout.arch {
            Arch::Lenet300100 | Arch::Mlp3x256 | Arch::Mlp512x256 => {
                xs.view([-1, self.dense[0].weight.size()[1]])
            }
            Arch::Alexnet => self.alexnet_features(&xs.view([-1, 3, 64, 64])),
            Arch::Lenet5 => {
                let x = xs.view([-1, 1, 28, 28]);
                if self.convs[1].weight.size()[0] == 0 {
                    // No conv2 channel left: fc1 sees no features at all.
                    Tensor::zeros([x.size()[0], 0], (x.kind(), x.device()))
                } else {
                    let conv = |h: &Tensor, i: usize| {
                        let pad = LENET5_PADDING[i] as i64;
                        let l = &self.convs[i];
                        crate::numerics::conv2d(h, &l.weight, Some(&l.bias), pad)
                            .relu()
                            .max_pool2d_default(2)
                    };
                    let gather = self.gather.as_ref().expect("LeNet5 has a gather index");
                    conv(&conv(&x, 0), 1).flatten(1, -1).index_select(1, gather)
                }
            }
        };
        let last = self.dense.len() - 1;
        for (i, l) in self.dense.iter().enumerate() {
            h = h.linear(&l.weight, Some(&l.bias));
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// AlexNet's flattened conv5 output over the kept channels. A block left without input
    /// channels computes its bias alone at every position (what the masked network computes
    /// with all its inputs zeroed); one left without output channels passes on no channels.
    fn alexnet_features(&self, x: &Tensor) -> Tensor {
        let n = x.size()[0];
        let mut h = x.shallow_clone();
        for (conv, shape) in self.convs.iter().zip(&self.layout.layers) {
            let stride = shape.stride.unwrap_or(1) as i64;
            let padding = shape.padding.unwrap_or(0) as i64;
            let pool = shape.pool.unwrap_or(1) as i64;
            let (o, c, k, _) = conv.weight.size4().expect("a conv weight");
            let side = (h.size()[2] + 2 * padding - k) / stride + 1;
            if o == 0 {
                h = Tensor::zeros([n, 0, side / pool, side / pool], (x.kind(), x.device()));
                continue;
            }
            h = if c == 0 {
                conv.bias
                    .view([1, o, 1, 1])
                    .expand([n, o, side, side], false)
                    .contiguous()
            } else {
                crate::numerics::conv2d_strided(&h, &conv.weight, Some(&conv.bias), stride, padding)
            }
            .relu();
            if pool > 1 {
                h = h.max_pool2d_default(pool);
            }
        }
        h.flatten(1, -1)
    }

    /// Tensors by checkpoint name (`conv1.bias`, `conv1.weight`, …, `fc3.weight`), in name order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        let layers = self
            .convs
            .iter()
            .enumerate()
            .map(|(i, l)| (conv_name(i), l))
            .chain(
                self.dense
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (dense_name(i), l)),
            );
        for (name, l) in layers {
            named.push((format!("{name}.weight"), l.weight.shallow_clone()));
            named.push((format!("{name}.bias"), l.bias.shallow_clone()));
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Writes `model.safetensors` (tensors in name order, so equal weights give equal bytes) and
    /// `model.json` ([`PrunedLayout`]) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), NnError> {
        let failed = |path: &Path, message: String| NnError::PrunedModel {
            path: path.to_owned(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, e.to_string()))?;
        let named: Vec<(String, Tensor)> = self
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu)))
            .collect();
        let weights = dir.join(PRUNED_WEIGHTS);
        Tensor::write_safetensors(&named, &weights).map_err(|e| failed(&weights, e.to_string()))?;
        let layout = dir.join(PRUNED_LAYOUT);
        let json = serde_json::to_vec_pretty(&self.layout).expect("the layout serialises");
        std::fs::write(&layout, json).map_err(|e| failed(&layout, e.to_string()))
    }

    /// Reads a directory written by [`PrunedNetwork::save`] onto `device`, checking every
    /// tensor's shape against the layout.
    pub fn load(dir: &Path, device: Device) -> Result<PrunedNetwork, NnError> {
        let layout_path = dir.join(PRUNED_LAYOUT);
        let failed = |path: &Path, message: String| NnError::PrunedModel {
            path: path.to_owned(),
            message,
        };
        let bytes = std::fs::read(&layout_path).map_err(|e| failed(&layout_path, e.to_string()))?;
        let layout: PrunedLayout =
            serde_json::from_slice(&bytes).map_err(|e| failed(&layout_path, e.to_string()))?;
        let weights_path = dir.join(PRUNED_WEIGHTS);
        let mut tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&weights_path)
            .map_err(|e| failed(&weights_path, e.to_string()))?
            .into_iter()
            .collect();
        let mut take = |name: String, shape: Vec<i64>| {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| failed(&weights_path, format!("no tensor `{name}`")))?;
            if t.size() != shape {
                return Err(failed(
                    &weights_path,
                    format!(
                        "`{name}` has shape {:?}, the layout says {shape:?}",
                        t.size()
                    ),
                ));
            }
            Ok(t.to_device(device))
        };
        let (mut convs, mut dense) = (Vec::new(), Vec::new());
        for l in &layout.layers {
            let (i, o) = (l.inputs as i64, l.outputs as i64);
            let shape = match l.kernel {
                Some(k) => vec![o, i, k as i64, k as i64],
                None => vec![o, i],
            };
            let layer = Layer {
                weight: take(format!("{}.weight", l.name), shape)?,
                bias: take(format!("{}.bias", l.name), vec![o])?,
            };
            if l.kernel.is_some() {
                convs.push(layer);
            } else {
                dense.push(layer);
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(failed(
                &weights_path,
                format!("tensor `{extra}` is not in the layout"),
            ));
        }
        let (expected_convs, expected_dense) = match layout.arch {
            Arch::Lenet300100 => (0, 3),
            Arch::Lenet5 => (2, 3),
            Arch::Mlp3x256 => (0, 4),
            Arch::Mlp512x256 => (0, 3),
            Arch::Alexnet => (5, 3),
        };
        if convs.len() != expected_convs
            || dense.len() != expected_dense
            || layout.gather.is_none() != (layout.arch != Arch::Lenet5)
        {
            return Err(failed(
                &layout_path,
                format!("the layers do not form a pruned {}", layout.arch),
            ));
        }
        let parameters: u64 = convs
            .iter()
            .chain(&dense)
            .map(|l| (l.weight.numel() + l.bias.numel()) as u64)
            .sum();
        if parameters != layout.parameters {
            return Err(failed(
                &layout_path,
                format!(
                    "the layout counts {} parameters, the tensors hold {parameters}",
                    layout.parameters
                ),
            ));
        }
        let gather = layout.gather.as_deref().map(|g| index(g, device));
        Ok(PrunedNetwork {
            layout,
            convs,
            dense,
            gather,
        })
    }
}
