use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::arch::{AlexnetWidths, ConvPlan, ALEXNET_CONVS, ALEXNET_POSITIONS};
use crate::masked::{MaskedHead, MaskedSuffix};
use crate::{Arch, NnError, Shape};

/// A group of players: the units of one layer, with their position in the global player order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerLayer {
    pub name: String,
    pub size: usize,
    /// Global id of the layer's unit 0.
    pub offset: usize,
    pub(crate) source: Source,
}

/// Where a player layer's units come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The output neurons of head layer `head`.
    Dense { head: usize },
    /// LeNet5: the flattened features (channel · positions + position) of the last conv block;
    /// a channel's filter is shared by its positions.
    ConvFeatures { block: usize },
    /// The output channels of conv block `block`, a whole feature map each.
    Channels { block: usize },
}

/// A stable unit address: layer name and index within the layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitId {
    pub layer: String,
    pub unit: usize,
}

/// Where a player layer's mask acts: on the input of the layer that consumes its units, each
/// unit's value repeated `spread` times (a conv channel feeding a dense layer covers its
/// flattened positions). A 0/1 channel mask commutes with ReLU and max-pooling, so masking the
/// consumer's input is masking the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gate {
    pub layer: usize,
    pub spread: usize,
}

/// A conv block of the trunk: convolution, ReLU, max-pooling; `gate_in` masks its input.
#[derive(Debug)]
pub(crate) struct ConvBlock {
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub plan: ConvPlan,
    pub gate_in: Option<Gate>,
}

impl ConvBlock {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = crate::numerics::conv2d_strided(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.plan.stride,
            self.plan.padding,
        )
        .relu();
        if self.plan.pool > 1 {
            h.max_pool2d_default(self.plan.pool)
        } else {
            h
        }
    }

    pub fn shallow_clone(&self) -> ConvBlock {
        ConvBlock {
            name: self.name.clone(),
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            plan: self.plan,
            gate_in: self.gate_in,
        }
    }
}

/// A network as a sequence of layers: a trunk of conv blocks, then dense layers (the head).
/// Players are the units of named layers (dense neurons, conv channels, LeNet5's flattened conv
/// features); each player layer's mask acts on the input of the layer that consumes it
/// ([`Gate`]). Variables are named hierarchically (`conv1.weight`, `fc2.bias`), which are the
/// checkpoint keys.
pub struct Network {
    pub arch: Arch,
    pub vs: nn::VarStore,
    shape: Shape,
    trunk: Vec<ConvBlock>,
    head: Vec<nn::Linear>,
    players: Vec<PlayerLayer>,
    /// `mask_before[i]`: the gate on the input of `head[i]`.
    mask_before: Vec<Option<Gate>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("arch", &self.arch)
            .field("players", &self.players)
            .finish()
    }
}

fn layers(specs: &[(&str, usize, Source)]) -> Vec<PlayerLayer> {
    let mut offset = 0;
    specs
        .iter()
        .map(|&(name, size, source)| {
            let layer = PlayerLayer {
                name: name.to_owned(),
                size,
                offset,
                source,
            };
            offset += size;
            layer
        })
        .collect()
}

fn gate(layer: usize) -> Option<Gate> {
    Some(Gate { layer, spread: 1 })
}

const fn plan(kernel: i64, padding: i64, pool: i64) -> ConvPlan {
    ConvPlan {
        kernel,
        stride: 1,
        padding,
        pool,
    }
}

impl Network {
    /// A freshly initialised network of the architecture's default shape
    /// ([`Arch::default_shape`]); `seed` fixes libtorch's RNG for the initial weights.
    pub fn new(arch: Arch, device: Device, seed: u64) -> Network {
        Self::with_shape(arch, arch.default_shape(), device, seed)
            .expect("every architecture supports its default shape")
    }

    /// A freshly initialised network for `shape` (input width and classes of a dataset);
    /// fails if the architecture does not support it ([`Arch::check_shape`]). For the default
    /// shape, the same weights as [`Network::new`]. AlexNet at full width.
    pub fn with_shape(
        arch: Arch,
        shape: Shape,
        device: Device,
        seed: u64,
    ) -> Result<Network, NnError> {
        Self::with_widths(arch, shape, AlexnetWidths::FULL, device, seed)
    }

    /// [`Network::with_shape`] with AlexNet's layer widths (ignored by other architectures).
    pub fn with_widths(
        arch: Arch,
        shape: Shape,
        widths: AlexnetWidths,
        device: Device,
        seed: u64,
    ) -> Result<Network, NnError> {
        arch.check_shape(shape)?;
        Ok(crate::with_torch_rng(seed, || {
            Self::init(arch, shape, widths, device)
        }))
    }

    fn init(arch: Arch, shape: Shape, widths: AlexnetWidths, device: Device) -> Network {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let linear = |name: &str, i: usize, o: usize| {
            nn::linear(&root / name, i as i64, o as i64, Default::default())
        };
        let dense = |head| Source::Dense { head };
        let (convs, head, players, mask_before): (
            Vec<(nn::Conv2D, ConvPlan, Option<Gate>)>,
            _,
            _,
            _,
        ) = match arch {
            Arch::Lenet300100 => (
                vec![],
                vec![
                    linear("fc1", 784, 300),
                    linear("fc2", 300, 100),
                    linear("fc3", 100, 10),
                ],
                layers(&[("fc1", 300, dense(0)), ("fc2", 100, dense(1))]),
                vec![None, gate(0), gate(1)],
            ),
            Arch::Lenet5 => {
                let pad2 = nn::ConvConfig {
                    padding: 2,
                    ..Default::default()
                };
                (
                    vec![
                        (
                            nn::conv2d(&root / "conv1", 1, 6, 5, pad2),
                            plan(5, 2, 2),
                            None,
                        ),
                        (
                            nn::conv2d(&root / "conv2", 6, 16, 5, Default::default()),
                            plan(5, 0, 2),
                            None,
                        ),
                    ],
                    vec![
                        linear("fc1", 400, 120),
                        linear("fc2", 120, 84),
                        linear("fc3", 84, 10),
                    ],
                    layers(&[
                        ("conv2", 400, Source::ConvFeatures { block: 1 }),
                        ("fc1", 120, dense(0)),
                        ("fc2", 84, dense(1)),
                    ]),
                    vec![gate(0), gate(1), gate(2)],
                )
            }
            Arch::Mlp3x256 => {
                let (n, h, c) = (shape.inputs, 256, shape.classes);
                (
                    vec![],
                    vec![
                        linear("fc1", n, h),
                        linear("fc2", h, h),
                        linear("fc3", h, h),
                        linear("fc4", h, c),
                    ],
                    layers(&[
                        ("fc1", 256, dense(0)),
                        ("fc2", 256, dense(1)),
                        ("fc3", 256, dense(2)),
                    ]),
                    vec![None, gate(0), gate(1), gate(2)],
                )
            }
            Arch::Mlp512x256 => {
                let (n, c) = (shape.inputs, shape.classes);
                (
                    vec![],
                    vec![
                        linear("fc1", n, 512),
                        linear("fc2", 512, 256),
                        linear("fc3", 256, c),
                    ],
                    layers(&[("fc1", 512, dense(0)), ("fc2", 256, dense(1))]),
                    vec![None, gate(0), gate(1)],
                )
            }
            Arch::Alexnet => {
                let names = ["conv1", "conv2", "conv3", "conv4", "conv5"];
                let mut inputs = 3;
                let mut convs = Vec::new();
                for (block, (&name, plan)) in names.iter().zip(ALEXNET_CONVS).enumerate() {
                    let outputs = widths.convs[block] as i64;
                    let config = nn::ConvConfig {
                        stride: plan.stride,
                        padding: plan.padding,
                        ..Default::default()
                    };
                    let conv = nn::conv2d(&root / name, inputs, outputs, plan.kernel, config);
                    convs.push((conv, plan, block.checked_sub(1).and_then(gate)));
                    inputs = outputs;
                }
                let [d1, d2] = widths.dense;
                let flat = widths.convs[4] * ALEXNET_POSITIONS;
                let mut specs: Vec<(&str, usize, Source)> = names
                    .iter()
                    .enumerate()
                    .map(|(block, &name)| (name, widths.convs[block], Source::Channels { block }))
                    .collect();
                specs.extend([("fc1", d1, dense(0)), ("fc2", d2, dense(1))]);
                (
                    convs,
                    vec![
                        linear("fc1", flat, d1),
                        linear("fc2", d1, d2),
                        linear("fc3", d2, shape.classes),
                    ],
                    layers(&specs),
                    vec![
                        Some(Gate {
                            layer: 4,
                            spread: ALEXNET_POSITIONS,
                        }),
                        gate(5),
                        gate(6),
                    ],
                )
            }
        };
        let trunk = convs
            .into_iter()
            .enumerate()
            .map(|(i, (c, plan, gate_in))| ConvBlock {
                name: format!("conv{}", i + 1),
                weight: c.ws,
                bias: c.bs,
                plan,
                gate_in,
            })
            .collect();
        Network {
            arch,
            vs,
            shape,
            trunk,
            head,
            players,
            mask_before,
        }
    }

    /// Loads a checkpoint written by [`Network::save`]. An MLP's shape and AlexNet's shape and
    /// widths are read from the checkpoint (its layers' weight sizes).
    pub fn load(arch: Arch, path: &Path, device: Device) -> Result<Network, NnError> {
        let fail = |message: String| NnError::Checkpoint {
            path: path.to_owned(),
            message,
        };
        let mut widths = AlexnetWidths::FULL;
        let shape = match arch {
            Arch::Lenet300100 | Arch::Lenet5 => arch.default_shape(),
            Arch::Mlp3x256 | Arch::Mlp512x256 | Arch::Alexnet => {
                let last = match arch {
                    Arch::Mlp3x256 => "fc4",
                    _ => "fc3",
                };
                let tensors = Tensor::read_safetensors(path).map_err(|e| fail(e.to_string()))?;
                let size = |name: &str| {
                    tensors
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.size())
                        .filter(|s| s.len() == 2 || s.len() == 4)
                        .ok_or_else(|| fail(format!("no weight `{name}` for {arch}")))
                };
                if arch == Arch::Alexnet {
                    for (i, w) in widths.convs.iter_mut().enumerate() {
                        *w = size(&format!("conv{}.weight", i + 1))?[0] as usize;
                    }
                    for (i, w) in widths.dense.iter_mut().enumerate() {
                        *w = size(&format!("fc{}.weight", i + 1))?[0] as usize;
                    }
                }
                Shape {
                    inputs: match arch {
                        Arch::Alexnet => Shape::TINY_IMAGENET.inputs,
                        _ => size("fc1.weight")?[1] as usize,
                    },
                    classes: size(&format!("{last}.weight"))?[0] as usize,
                }
            }
        };
        let mut net = Network::with_widths(arch, shape, widths, device, 0)?;
        net.vs.load(path).map_err(|e| fail(e.to_string()))?;
        Ok(net)
    }

    /// Writes the weights as safetensors, tensors in name order (so equal weights give equal bytes).
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let named: Vec<(String, Tensor)> = named
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu)))
            .collect();
        Tensor::write_safetensors(&named, path)?;
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Another handle on the same weights (no copy), to evaluate on another thread. Its
    /// `VarStore` is empty: it cannot be trained or saved.
    pub(crate) fn shallow_clone(&self) -> Network {
        let linear = |l: &nn::Linear| nn::Linear {
            ws: l.ws.shallow_clone(),
            bs: l.bs.as_ref().map(Tensor::shallow_clone),
        };
        Network {
            arch: self.arch,
            vs: nn::VarStore::new(self.device()),
            shape: self.shape,
            trunk: self.trunk.iter().map(ConvBlock::shallow_clone).collect(),
            head: self.head.iter().map(linear).collect(),
            players: self.players.clone(),
            mask_before: self.mask_before.clone(),
        }
    }

    /// Input width and number of classes the network was built for.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn player_layers(&self) -> &[PlayerLayer] {
        &self.players
    }

    /// The layer widths the network was built with ([`AlexnetWidths::FULL`] for the other
    /// architectures, which ignore it): from its player layers, conv1…conv5 then fc1, fc2.
    pub fn widths(&self) -> AlexnetWidths {
        if self.arch != Arch::Alexnet {
            return AlexnetWidths::FULL;
        }
        let mut widths = AlexnetWidths::FULL;
        for (i, layer) in self.players.iter().enumerate() {
            match i {
                0..5 => widths.convs[i] = layer.size,
                5..7 => widths.dense[i - 5] = layer.size,
                _ => {}
            }
        }
        widths
    }

    pub fn num_players(&self) -> usize {
        self.players.iter().map(|l| l.size).sum()
    }

    /// The stable id of global player `player`.
    pub fn unit(&self, player: usize) -> UnitId {
        let layer = self
            .players
            .iter()
            .find(|l| player >= l.offset && player < l.offset + l.size)
            .expect("player id within the network");
        UnitId {
            layer: layer.name.clone(),
            unit: player - layer.offset,
        }
    }

    /// The examples shaped for the first layer: images `[N, C, H, W]` for a conv trunk, rows
    /// `[N, inputs]` otherwise.
    fn input_view(&self, xs: &Tensor) -> Tensor {
        match self.arch.image() {
            Some([c, h, w]) => xs.view([-1, c, h, w]),
            None => xs.view([-1, self.shape.inputs as i64]),
        }
    }

    /// The gate of every player layer (on the input of the layer consuming it).
    fn gates(&self) -> impl Iterator<Item = Gate> + '_ {
        self.trunk
            .iter()
            .filter_map(|b| b.gate_in)
            .chain(self.mask_before.iter().flatten().copied())
    }

    /// Runs the network, calling `gate` where each player layer's mask acts (input of its
    /// consumer: `[N, C, H, W]` in the trunk, `[N, features]` in the head) and returning early
    /// with the ungated activations there when it is player layer `stop`'s gate.
    fn walk(
        &self,
        xs: &Tensor,
        stop: Option<usize>,
        gate: &mut dyn FnMut(Gate, Tensor) -> Tensor,
    ) -> Tensor {
        let mut h = self.input_view(xs);
        for block in &self.trunk {
            if let Some(g) = block.gate_in {
                if stop == Some(g.layer) {
                    return h;
                }
                h = gate(g, h);
            }
            h = block.forward(&h);
        }
        if !self.trunk.is_empty() {
            h = h.flatten(1, -1);
        }
        let last = self.head.len() - 1;
        for (i, layer) in self.head.iter().enumerate() {
            if let Some(g) = self.mask_before[i] {
                if stop == Some(g.layer) {
                    return h;
                }
                h = gate(g, h);
            }
            h = layer.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// The activations player layer `layer`'s mask acts on, unmasked (every earlier player
    /// present): what a game on that layer and the ones after it evaluates from, computed
    /// once per example set.
    pub fn activations_at(&self, xs: &Tensor, layer: usize) -> Tensor {
        assert!(layer < self.players.len(), "player layer {layer} exists");
        self.walk(xs, Some(layer), &mut |_, h| h)
    }

    /// The part of the network up to the first player layer's activations (LeNet5's
    /// convolutions; the MLPs' first dense layer; AlexNet's conv1 block): no coalition changes
    /// it, so it runs once per example set.
    pub fn prefix(&self, xs: &Tensor) -> Tensor {
        self.activations_at(xs, 0)
    }

    /// Logits of the whole (unmasked) network.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.walk(xs, None, &mut |_, h| h)
    }

    /// Training-mode logits: dropout with rate `dropout` on every player layer's activations
    /// (whole channels for conv channels, single values for neurons and LeNet5's flattened
    /// features), so the trained network tolerates the random coalitions the power indices
    /// evaluate; `dropout = 0` is [`Self::forward`]. Draws come from libtorch's global RNG (see
    /// `with_torch_rng`).
    pub fn forward_train(&self, xs: &Tensor, dropout: f64) -> Tensor {
        if dropout == 0.0 {
            return self.forward(xs);
        }
        self.walk(xs, None, &mut |g, h| {
            let channels = matches!(self.players[g.layer].source, Source::Channels { .. });
            match (channels, h.dim()) {
                (true, 4) => h.feature_dropout(dropout, true),
                (true, _) => {
                    let n = h.size()[0];
                    let (units, spread) = (self.players[g.layer].size as i64, g.spread as i64);
                    h.view([n, units, spread, 1])
                        .feature_dropout(dropout, true)
                        .view([n, units * spread])
                }
                (false, _) => h.dropout(dropout, true),
            }
        })
    }

    /// Logits with every player's activation multiplied by its gate (`gates`: `[players]`;
    /// all ones is [`Self::forward`], a 0/1 vector is that coalition's masked network).
    /// Differentiable in the weights and in the gates. Scaling a ReLU unit's activation by
    /// s ≥ 0 equals scaling its incoming weights and bias by s, so this is the network run on
    /// the scaled groups s_i·θ_i of the equilibrium game.
    pub fn forward_gated(&self, xs: &Tensor, gates: &Tensor) -> Tensor {
        self.walk(xs, None, &mut |g, h| {
            let values = self.gate_values(g, &gates.unsqueeze(0)).squeeze_dim(0);
            if h.dim() == 4 {
                h * values.view([1, -1, 1, 1])
            } else {
                h * values
            }
        })
    }

    /// The columns of `values` (`[K, players]`) of gate `g`'s player layer, each repeated
    /// `spread` times: `[K, size · spread]`, one value per masked input.
    pub(crate) fn gate_values(&self, g: Gate, values: &Tensor) -> Tensor {
        gate_columns(&self.players[g.layer], g.spread, values)
    }

    /// The weights that produce each unit's activation, one row per unit of player layer
    /// `layer` (weight row and bias): a dense neuron's incoming row; a conv channel's filter; a
    /// LeNet5 conv2 feature's whole filter, shared by the 25 positions of its channel. The
    /// "group" θ_i of the equilibrium game.
    pub fn incoming_groups(&self, layer: usize) -> Tensor {
        let pl = &self.players[layer];
        let with_bias = |w: &Tensor, b: &Option<Tensor>| {
            let w = w.flatten(1, -1);
            match b {
                Some(b) => Tensor::cat(&[w, b.unsqueeze(1)], 1),
                None => w,
            }
        };
        match pl.source {
            Source::ConvFeatures { block } | Source::Channels { block } => {
                let b = &self.trunk[block];
                let positions = pl.size as i64 / b.weight.size()[0];
                with_bias(&b.weight, &b.bias).repeat_interleave_self_int(positions, Some(0), None)
            }
            Source::Dense { head } => with_bias(&self.head[head].ws, &self.head[head].bs),
        }
    }

    /// Zeroes every weight that belongs to a removed player (`kept[p]` false) alone: its
    /// outgoing weights and, for a dense neuron or a conv channel, its incoming weights and
    /// bias; a LeNet5 conv2 channel's filter once none of its positions is kept. The plain
    /// forward pass is then the masked network of `kept`.
    pub fn remove_units(&mut self, kept: &[bool]) {
        let scale: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
        self.scale_outgoing(&scale);
        let _guard = tch::no_grad_guard();
        for pl in &self.players {
            let keep = &scale[pl.offset..pl.offset + pl.size];
            let (w, b) = match pl.source {
                Source::ConvFeatures { block } | Source::Channels { block } => {
                    let b = &mut self.trunk[block];
                    (&mut b.weight, &mut b.bias)
                }
                Source::Dense { head } => {
                    let l = &mut self.head[head];
                    (&mut l.ws, &mut l.bs)
                }
            };
            let positions = pl.size / w.size()[0] as usize;
            let rows: Vec<f32> = keep
                .chunks(positions)
                .map(|c| if c.iter().any(|&k| k > 0.0) { 1.0 } else { 0.0 })
                .collect();
            let rows = Tensor::from_slice(&rows).to_device(w.device());
            let mut shape = vec![-1i64];
            shape.resize(w.dim(), 1);
            let _ = w.g_mul_(&rows.view(shape.as_slice()));
            if let Some(b) = b {
                let _ = b.g_mul_(&rows);
            }
        }
    }

    /// Multiplies each player's outgoing weights (its input columns or channels in the layer
    /// consuming it) by `scale[player]`: with a 0/1 scale, the network whose plain forward pass
    /// is that coalition's masked network; with gates, the gated network folded into its
    /// weights.
    pub fn scale_outgoing(&mut self, scale: &[f32]) {
        assert_eq!(scale.len(), self.num_players(), "one scale per player");
        let _guard = tch::no_grad_guard();
        let values = Tensor::from_slice(scale).unsqueeze(0);
        let columns = |g: Gate, device: Device| {
            gate_columns(&self.players[g.layer], g.spread, &values)
                .squeeze_dim(0)
                .to_device(device)
        };
        for block in &self.trunk {
            if let Some(g) = block.gate_in {
                let s = columns(g, block.weight.device());
                let _ = block.weight.shallow_clone().g_mul_(&s.view([1, -1, 1, 1]));
            }
        }
        for (i, layer) in self.head.iter().enumerate() {
            if let Some(g) = self.mask_before[i] {
                let s = columns(g, layer.ws.device());
                let _ = layer.ws.shallow_clone().g_mul_(&s.unsqueeze(0));
            }
        }
    }

    /// The layers after player layer `start`'s gate with their masks, detached from the
    /// `VarStore` (shallow tensor copies), so an evaluator can own it and move it between
    /// threads: evaluates coalitions from [`Network::activations_at`]`(xs, start)`.
    pub fn masked_suffix(&self, start: usize) -> MaskedSuffix {
        let first_block = self
            .trunk
            .iter()
            .position(|b| b.gate_in.is_some_and(|g| g.layer == start));
        let trunk = match first_block {
            Some(i) => self.trunk[i..]
                .iter()
                .map(ConvBlock::shallow_clone)
                .collect(),
            None => Vec::new(),
        };
        let first_dense = if trunk.is_empty() {
            self.mask_before
                .iter()
                .position(|g| g.is_some_and(|g| g.layer == start))
                .expect("every player layer has a gate")
        } else {
            0
        };
        MaskedSuffix::new(trunk, self.masked_head_from(first_dense), start)
    }

    /// The dense layers after the prefix with their player layout (see [`Self::masked_suffix`]).
    pub fn masked_head(&self) -> MaskedHead {
        let first = self.mask_before.iter().take_while(|m| m.is_none()).count();
        self.masked_head_from(first)
    }

    fn masked_head_from(&self, first: usize) -> MaskedHead {
        MaskedHead::new(
            self.head[first..]
                .iter()
                .map(|l| {
                    (
                        l.ws.shallow_clone(),
                        l.bs.as_ref().map(Tensor::shallow_clone),
                    )
                })
                .collect(),
            self.players.clone(),
            self.mask_before[first..].to_vec(),
        )
    }

    /// See [`MaskedHead::masked_logits`].
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.masked_suffix(0).masked_logits(features, masks)
    }

    /// See [`MaskedHead::paired_logits`].
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.masked_suffix(0).paired_logits(features, masks)
    }

    /// Parameters (weights and biases) in the whole network.
    pub fn num_parameters(&self) -> usize {
        self.vs.variables().values().map(|t| t.numel()).sum()
    }

    pub(crate) fn trunk(&self) -> &[ConvBlock] {
        &self.trunk
    }

    /// Names of the dense head's layers in order (`fc1`, `fc2`, …), the checkpoint prefixes.
    pub(crate) fn head_names(&self) -> Vec<String> {
        (1..=self.head.len()).map(|i| format!("fc{i}")).collect()
    }

    /// `(out, in)` of each dense head layer.
    pub(crate) fn head_dims(&self) -> Vec<(usize, usize)> {
        self.head
            .iter()
            .map(|l| (l.ws.size()[0] as usize, l.ws.size()[1] as usize))
            .collect()
    }

    /// The gate on the input of each head layer.
    pub(crate) fn mask_before(&self) -> &[Option<Gate>] {
        &self.mask_before
    }

    /// The gate that masks conv block `block`'s output channels, when they are players.
    pub(crate) fn channel_gate(&self, block: usize) -> Option<Gate> {
        self.gates().find(
            |g| matches!(self.players[g.layer].source, Source::Channels { block: b } if b == block),
        )
    }

    /// Side of the square input of each conv block.
    pub(crate) fn trunk_sides(&self) -> Vec<i64> {
        let mut side = self.arch.image().map_or(0, |[_, h, _]| h);
        self.trunk
            .iter()
            .map(|b| {
                let input = side;
                side = b.plan.output_side(side);
                input
            })
            .collect()
    }

    /// Output positions each weight of variable `name` is applied at (1 for dense layers).
    pub(crate) fn output_positions(&self, name: &str) -> u64 {
        let sides = self.trunk_sides();
        self.trunk
            .iter()
            .zip(sides)
            .find(|(b, _)| name == format!("{}.weight", b.name))
            .map_or(1, |(b, side)| (b.plan.conv_side(side) as u64).pow(2))
    }

    /// Stride and padding of conv layer `name` (`None` for a dense layer or an unknown name).
    pub fn conv_stride_padding(&self, name: &str) -> Option<(i64, i64)> {
        self.trunk
            .iter()
            .find(|b| b.name == name)
            .map(|b| (b.plan.stride, b.plan.padding))
    }

    /// Each weighted layer (conv blocks, then dense layers) with its FLOPs per example in the
    /// whole network (multiply and add counted apart; ReLU and pooling not counted).
    pub fn layer_flops(&self) -> Vec<(String, u64)> {
        let convs = self.trunk.iter().zip(self.trunk_sides()).map(|(b, side)| {
            let (o, c, k, _) = b.weight.size4().expect("a conv weight");
            let positions = (b.plan.conv_side(side) as u64).pow(2);
            (b.name.clone(), 2 * (o * c * k * k) as u64 * positions)
        });
        let dense = self
            .head_names()
            .into_iter()
            .zip(self.head_dims())
            .map(|(name, (o, i))| (name, 2 * (o * i) as u64));
        convs.chain(dense).collect()
    }

    /// Converts a `[K, players]` boolean-like mask batch to the float layout the network uses.
    pub fn mask_tensor(rows: &[f32], players: usize, device: Device) -> Tensor {
        Tensor::from_slice(rows)
            .view([(rows.len() / players) as i64, players as i64])
            .to_kind(Kind::Float)
            .to_device(device)
    }
}

/// The columns of `values` (`[K, players]`) of player layer `pl`, each repeated `spread` times.
pub(crate) fn gate_columns(pl: &PlayerLayer, spread: usize, values: &Tensor) -> Tensor {
    let columns = values.narrow(1, pl.offset as i64, pl.size as i64);
    if spread > 1 {
        columns.repeat_interleave_self_int(spread as i64, Some(1), None)
    } else {
        columns
    }
}
