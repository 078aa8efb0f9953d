//! The physically pruned network: a [`Network`]'s layers sliced to the kept players, so that
//! inference costs what [`Network::cost`] counts. It is a sequence of the same layer kinds
//! ([`crate::layers`]), each sliced by its own file's `slice`, run by their one forward path.
//!
//! Every weighted layer keeps the weight rows of its kept outputs (neurons, filters) and the
//! columns of its kept inputs (and the kept outputs' biases); a conv channel feeding a dense
//! layer keeps its flattened positions. Where the players are single pooled positions of a
//! conv layer's maps (LeNet5's conv2 features), the layer keeps the channels that have at
//! least one kept position, and after flattening a select step gathers the kept features (an
//! index into the pruned layer's `channel' · positions + position` layout) in the order of the
//! consumer's kept columns. Removing a player this way computes exactly what the masked
//! network computes with that player's activation zeroed ([`crate::MaskedSuffix`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::layers::{
    self, Activation, Conv, ConvSpec, Dense, Flatten, KeptOutputs, Layer, LayerSpec, Select, Step,
};
use crate::{Arch, Network, NnError};

/// The weights of an exported model: safetensors, tensors in name order.
pub const PRUNED_WEIGHTS: &str = "model.safetensors";
/// The layout of an exported model: [`PrunedLayout`] as JSON.
pub const PRUNED_LAYOUT: &str = "model.json";

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
    /// Convolutions: stride and max-pooling after the ReLU (1 = none). Absent in files written
    /// before they were recorded for every convolution: then the preset's values.
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
    /// Where single pooled positions are the players (LeNet5's conv2): the channels (ids in
    /// the full network) that remain.
    pub channels: Option<Vec<usize>>,
    /// There: for each input of the pruned consumer (LeNet5's fc1), its position in the pruned
    /// layer's flattened output (`channel' · 25 + position`, `channel'` counting kept channels
    /// only).
    pub gather: Option<Vec<usize>>,
    /// Weights and biases of the pruned network; equals `Network::cost(kept).params`.
    pub parameters: u64,
    /// Shape of one input example. With `steps`, absent in files written before the layer
    /// sequence was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<i64>>,
    /// The pruned network as its sequence of layer specs (residual blocks, layer norms,
    /// attention, … as well as conv and dense layers): what loading builds. Files without it
    /// are read as conv blocks then dense layers from `layers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<LayerSpec>>,
}

/// A network with its non-kept players physically removed. Weights live on one device; `save`
/// writes them from the CPU.
pub struct PrunedNetwork {
    layout: PrunedLayout,
    /// Shape of one input example.
    input: Vec<i64>,
    steps: Vec<Step>,
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

/// What `model.json` records of a weighted layer.
fn shape_of(layer: &dyn Layer) -> LayerShape {
    let (w, _) = layer.weights().expect("a weighted layer");
    let conv = match layer.spec() {
        LayerSpec::Conv(c) => Some(c),
        _ => None,
    };
    LayerShape {
        name: layer.name().expect("weighted layers have names").to_owned(),
        inputs: w.size()[1] as usize,
        outputs: w.size()[0] as usize,
        kernel: conv.as_ref().map(|c| c.kernel),
        padding: conv.as_ref().map(|c| c.padding),
        stride: conv.as_ref().map(|c| c.stride),
        pool: conv.as_ref().map(|c| c.pool),
    }
}

fn parameters(steps: &[Step]) -> u64 {
    steps
        .iter()
        .filter_map(Step::layer)
        .flat_map(|l| l.variables())
        .map(|(_, t)| t.numel() as u64)
        .sum()
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
        let kept_units: Vec<KeptUnits> = net
            .player_layers()
            .iter()
            .map(|l| KeptUnits {
                layer: l.name.clone(),
                size: l.size,
                units: (0..l.size).filter(|&u| kept[l.offset + u]).collect(),
            })
            .collect();

        let (mut layers, mut shapes) = (Vec::new(), Vec::new());
        let (mut channels, mut gather): (Option<Vec<usize>>, Option<Vec<usize>>) = (None, None);
        // Input columns the next weighted layer keeps (`None`: all).
        let mut columns: Option<Vec<usize>> = None;
        for (i, step) in net.steps().iter().enumerate() {
            match step {
                Step::Gate(g) => {
                    let pl = &net.player_layers()[g.players];
                    let units = &kept_units[g.players].units;
                    let per_row = net.units_per_row(pl);
                    if per_row > 1 {
                        // Kept positions of the kept channels, in the pruned layout.
                        let rows = channels.as_ref().expect("the producer's kept channels");
                        let select: Vec<usize> = units
                            .iter()
                            .map(|f| {
                                let c: usize = rows_position(rows, f / per_row);
                                c * per_row + f % per_row
                            })
                            .collect();
                        layers.push(Step::Layer(Box::new(Select::new(&select, device))));
                        gather = Some(select);
                        columns = Some(units.clone());
                    } else {
                        columns = Some(
                            units
                                .iter()
                                .flat_map(|&u| u * g.spread..(u + 1) * g.spread)
                                .collect(),
                        );
                    }
                }
                Step::Layer(layer) if layer.weights().is_some() => {
                    let rows = net.players_of(i).map(|pl| {
                        let units = &kept[pl.offset..pl.offset + pl.size];
                        let rows: Vec<usize> = net
                            .kept_rows(pl, units)
                            .iter()
                            .enumerate()
                            .filter_map(|(r, &k)| k.then_some(r))
                            .collect();
                        if net.units_per_row(pl) > 1 {
                            channels = Some(rows.clone());
                        }
                        rows
                    });
                    let sliced = layer.slice(
                        columns.take().as_deref().map(|c| index(c, device)).as_ref(),
                        rows.as_deref().map(|r| index(r, device)).as_ref(),
                    );
                    shapes.push(shape_of(sliced.as_ref()));
                    layers.push(Step::Layer(sliced));
                }
                step => layers.push(step.shallow_clone()),
            }
        }
        let parameters = parameters(&layers);
        Ok(PrunedNetwork {
            layout: PrunedLayout {
                arch: net.arch,
                layers: shapes,
                kept: kept_units,
                channels,
                gather,
                parameters,
                input: Some(net.input_shape().to_vec()),
                steps: Some(crate::build::specs_of(&layers, |_, _| None)),
            },
            input: net.input_shape().to_vec(),
            steps: layers,
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
        self.steps
            .iter()
            .filter_map(Step::layer)
            .find_map(|l| l.weights())
            .map_or(Device::Cpu, |(w, _)| w.device())
    }

    /// A handle on the same weights for another thread.
    pub fn shallow_clone(&self) -> PrunedNetwork {
        PrunedNetwork {
            layout: self.layout.clone(),
            input: self.input.clone(),
            steps: self.steps.iter().map(Step::shallow_clone).collect(),
        }
    }

    /// Logits `[E, C]` of examples `xs` (`[E, inputs]`, or images `[E, C, H, W]`).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let mut shape = vec![-1i64];
        shape.extend(&self.input);
        self.run(xs.view(shape.as_slice()), |_, _| {})
    }

    /// The steps on `h`, `visit` seeing each layer with its input first.
    fn run(&self, mut h: Tensor, mut visit: impl FnMut(&dyn Layer, &Tensor)) -> Tensor {
        let mut saved = Vec::new();
        for step in &self.steps {
            h = match step {
                Step::Layer(layer) => {
                    visit(layer.as_ref(), &h);
                    layer.forward(&h)
                }
                Step::Save => {
                    saved.push(h.shallow_clone());
                    h
                }
                // Steps come from nested `Residual` specs: every Add has its Save.
                Step::Add => saved.pop().expect("a block's start") + h,
                Step::Gate(_) => unreachable!("an exported model has no gates"),
            };
        }
        h
    }

    /// FLOPs per example that this network computes: every layer at its own (pruned) width
    /// and at every output position. [`Network::cost`]'s FLOPs are fewer where a player layer's
    /// units are positions of a convolution (LeNet5's conv2 features): it counts only the kept
    /// positions, which a kernel that skips the others would need, where this network
    /// computes its kept channels everywhere and gathers the kept features afterwards.
    pub fn flops_per_example(&self) -> u64 {
        let _guard = tch::no_grad_guard();
        let mut shape = vec![1i64];
        shape.extend(&self.input);
        let one = Tensor::zeros(shape.as_slice(), (tch::Kind::Float, self.device()));
        let mut flops = 0;
        let _logits = self.run(one, |layer, h| {
            let (inputs, rows) = match layer.weights() {
                Some((w, _)) => (w.size()[1] as u64, layer.units() as u64),
                None => (0, 0),
            };
            let outputs = KeptOutputs {
                rows,
                positions: None,
            };
            flops += layer.cost(&h.size()[1..], inputs, outputs).flops;
        });
        flops
    }

    /// Tensors by checkpoint name (`conv1.bias`, `conv1.weight`, …, `fc3.weight`), in name order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self
            .steps
            .iter()
            .filter_map(Step::layer)
            .flat_map(|l| l.variables())
            .collect();
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
        let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&weights_path)
            .map_err(|e| failed(&weights_path, e.to_string()))?
            .into_iter()
            .collect();
        match (&layout.steps, &layout.input) {
            (Some(_), Some(_)) => {
                Self::from_steps(layout, tensors, device).map_err(|(in_weights, message)| {
                    failed(
                        if in_weights {
                            &weights_path
                        } else {
                            &layout_path
                        },
                        message,
                    )
                })
            }
            (None, None) => Self::from_layers(layout, tensors, device, &layout_path, &weights_path),
            _ => Err(failed(
                &layout_path,
                "`steps` and `input` come together".into(),
            )),
        }
    }

    /// A layout with its layer sequence: every tensor checked against the specs' variables
    /// before anything is allocated, the layers built (an error where their sizes do not
    /// chain), then the tensors copied in. Errors: whether the weights file is at fault, and
    /// what is wrong.
    fn from_steps(
        layout: PrunedLayout,
        mut tensors: BTreeMap<String, Tensor>,
        device: Device,
    ) -> Result<PrunedNetwork, (bool, String)> {
        let specs = layout.steps.clone().expect("steps");
        let input = layout.input.clone().expect("an input shape");
        // Sides of images or token rows: a hand-edited shape must not allocate unbounded.
        let plausible = (1..=3).contains(&input.len())
            && input.iter().all(|&d| (1..=1 << 20).contains(&d))
            && input.iter().product::<i64>() <= 1 << 24;
        if !plausible {
            return Err((false, format!("input shape {input:?} is not one example's")));
        }
        fn gated(specs: &[LayerSpec]) -> bool {
            specs.iter().any(|s| match s {
                LayerSpec::Gate(_) => true,
                LayerSpec::Residual { inner } => gated(inner),
                _ => false,
            })
        }
        if gated(&specs) {
            return Err((false, "an exported model has no gates".into()));
        }
        let expected: Vec<(String, Vec<i64>)> =
            specs.iter().flat_map(LayerSpec::variables).collect();
        for (i, (name, shape)) in expected.iter().enumerate() {
            if expected[..i].iter().any(|(n, _)| n == name) {
                return Err((false, format!("two layers hold `{name}`")));
            }
            match tensors.get(name) {
                None => return Err((true, format!("no tensor `{name}`"))),
                Some(t) if t.size() != *shape => {
                    return Err((
                        true,
                        format!(
                            "`{name}` has shape {:?}, the layout says {shape:?}",
                            t.size()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !expected.iter().any(|(n, _)| n == *k))
        {
            return Err((true, format!("tensor `{extra}` is not in the layout")));
        }
        let mut restore = |spec: &LayerSpec| {
            let vars = spec
                .variables()
                .into_iter()
                .map(|(name, _)| {
                    let t = tensors.remove(&name).expect("checked above");
                    t.to_device(device)
                })
                .collect();
            layers::restore(spec, vars, device)
        };
        let (steps, _, _) = crate::build::try_build_steps(&specs, &mut restore, &input)
            .map_err(|e| (false, format!("the layers do not chain: {e}")))?;
        Self::assemble(layout, input, steps).map_err(|m| (false, m))
    }

    /// The network of `steps`, once its parameters are the layout's count.
    fn assemble(
        layout: PrunedLayout,
        input: Vec<i64>,
        steps: Vec<Step>,
    ) -> Result<PrunedNetwork, String> {
        let parameters = parameters(&steps);
        if parameters != layout.parameters {
            return Err(format!(
                "the layout counts {} parameters, the tensors hold {parameters}",
                layout.parameters
            ));
        }
        Ok(PrunedNetwork {
            layout,
            input,
            steps,
        })
    }

    /// A layout written before the layer sequence was recorded: conv blocks, flattening and
    /// the gather when there are convolutions, then dense layers.
    fn from_layers(
        layout: PrunedLayout,
        mut tensors: BTreeMap<String, Tensor>,
        device: Device,
        layout_path: &Path,
        weights_path: &Path,
    ) -> Result<PrunedNetwork, NnError> {
        let (layout_path, weights_path) = (layout_path.to_owned(), weights_path.to_owned());
        let failed = |path: &Path, message: String| NnError::PrunedModel {
            path: path.to_owned(),
            message,
        };
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
        // The layer sequence the format implies: conv blocks, flattening and the gather
        // when there are convolutions, then dense layers (ReLU after all but the last).
        let preset = layout
            .arch
            .specs(crate::Shape::MNIST, crate::AlexnetWidths::FULL);
        let preset_conv = |name: &str| {
            preset.iter().find_map(|s| match s {
                LayerSpec::Conv(c) if c.name == name => Some(c.clone()),
                _ => None,
            })
        };
        let dense_count = layout.layers.iter().filter(|l| l.kernel.is_none()).count();
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let mut convs = 0;
        let mismatch = |what: String| failed(&layout_path, what);
        for (i, l) in layout.layers.iter().enumerate() {
            let (inputs, outputs) = (l.inputs as i64, l.outputs as i64);
            match l.kernel {
                Some(k) => {
                    if i != convs {
                        return Err(mismatch(format!(
                            "conv layer `{}` after a dense one",
                            l.name
                        )));
                    }
                    convs += 1;
                    let known = preset_conv(&l.name);
                    let spec = ConvSpec {
                        name: l.name.clone(),
                        inputs: l.inputs,
                        outputs: l.outputs,
                        kernel: k,
                        stride: l.stride.or(known.as_ref().map(|c| c.stride)).unwrap_or(1),
                        padding: l.padding.unwrap_or(0),
                        pool: l.pool.or(known.as_ref().map(|c| c.pool)).unwrap_or(1),
                    };
                    // A hand-edited layout must not divide by zero in the shape arithmetic.
                    if spec.kernel == 0 || spec.stride == 0 || spec.pool == 0 {
                        return Err(mismatch(format!(
                            "conv layer `{}` needs kernel, stride and pool of at least 1",
                            l.name
                        )));
                    }
                    let weight = take(
                        format!("{}.weight", l.name),
                        vec![outputs, inputs, k as i64, k as i64],
                    )?;
                    let bias = take(format!("{}.bias", l.name), vec![outputs])?;
                    layers.push(Box::new(Conv::from_tensors(&spec, weight, Some(bias))));
                }
                None => {
                    if i == convs && convs > 0 {
                        layers.push(Box::new(Flatten));
                        if let Some(g) = &layout.gather {
                            layers.push(Box::new(Select::new(g, device)));
                        }
                    }
                    let weight = take(format!("{}.weight", l.name), vec![outputs, inputs])?;
                    let bias = take(format!("{}.bias", l.name), vec![outputs])?;
                    let activation = if i + 1 < convs + dense_count {
                        Activation::Relu
                    } else {
                        Activation::None
                    };
                    layers.push(Box::new(Dense::from_tensors(
                        &l.name,
                        weight,
                        Some(bias),
                        activation,
                    )));
                }
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(failed(
                &weights_path,
                format!("tensor `{extra}` is not in the layout"),
            ));
        }
        let input = layout.arch.input_shape(crate::Shape {
            inputs: layout.layers.first().map_or(0, |l| l.inputs),
            classes: 0,
            vocabulary: 0,
        });
        // The layers must chain: every layer takes what the one before gives.
        let mut ok = dense_count > 0 && (layout.gather.is_some() == layout.channels.is_some());
        if ok {
            let mut shape = input.clone();
            for layer in &layers {
                let takes = match layer.weights() {
                    Some((w, _)) => w.size()[1],
                    None => shape[0],
                };
                let gives = match layer.spec() {
                    LayerSpec::Select { index } => index.iter().all(|&j| (j as i64) < shape[0]),
                    _ => true,
                };
                if takes != shape[0] || !gives {
                    ok = false;
                    break;
                }
                shape = layer.output_shape(&shape);
            }
        }
        if !ok || (layout.gather.is_some() && convs == 0) {
            return Err(failed(
                &layout_path,
                format!("the layers do not form a pruned {}", layout.arch),
            ));
        }
        let steps: Vec<Step> = layers.into_iter().map(Step::Layer).collect();
        Self::assemble(layout, input, steps).map_err(|m| failed(&layout_path, m))
    }
}

/// Position of channel `channel` among the kept `rows` (ascending).
fn rows_position(rows: &[usize], channel: usize) -> usize {
    rows.binary_search(&channel).expect("a kept channel")
}

impl crate::eval::Inference for PrunedNetwork {
    fn logits(&self, xs: &Tensor) -> Tensor {
        self.forward(xs)
    }
    fn handle(&self) -> Self {
        self.shallow_clone()
    }
}
