use std::path::Path;

use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::build::{specs_of, try_build_steps};
use crate::layers::{self, Gate, GateSpec, KeptOutputs, Layer, LayerSpec, Step};
use crate::masked::MaskedSuffix;
use crate::{AlexnetWidths, Arch, NnError, Shape};

/// A group of players: the units of one layer, with their position in the global player order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerLayer {
    pub name: String,
    pub size: usize,
    /// Global id of the layer's unit 0.
    pub offset: usize,
    /// The step of the network whose gate masks the units.
    pub(crate) gate: usize,
    /// The step (a weighted layer) whose outputs the units are: a unit is one of its rows,
    /// or one of `size / rows` pooled positions of a row (LeNet5's conv2 features, which
    /// share their channel's filter).
    pub(crate) producer: usize,
    /// Where a game on this layer starts: its gate, or the start of the outermost residual
    /// block holding it (the block's input is needed to add it back).
    pub(crate) entry: usize,
}

/// What a player is when a network's player layers are chosen
/// ([`Network::with_player_layers_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// Each unit: a neuron, a conv channel or feature, an attention head.
    #[default]
    Units,
    /// Each player layer as a whole (a transformer's whole attention or FFN sublayer).
    Layers,
}

impl Granularity {
    /// The default: what a file leaves out, so that keys written before it existed hold.
    pub fn is_units(&self) -> bool {
        *self == Granularity::Units
    }
}

/// A stable unit address: layer name and index within the layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitId {
    pub layer: String,
    pub unit: usize,
}

/// A network as a sequence of steps: layers ([`crate::layers`]: dense, conv, flatten) and the
/// gates between them where player layers' masks act. Built from the [`LayerSpec`]s of an
/// architecture's preset ([`Arch::specs`]); every whole-network operation below walks the
/// sequence through the layer interface, never matching on the architecture. Variables are
/// named hierarchically (`conv1.weight`, `fc2.bias`), which are the checkpoint keys.
pub struct Network {
    pub arch: Arch,
    pub vs: nn::VarStore,
    shape: Shape,
    steps: Vec<Step>,
    /// Per-example input shape of every step, and of the output at the end.
    shapes: Vec<Vec<i64>>,
    players: Vec<PlayerLayer>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("arch", &self.arch)
            .field("players", &self.players)
            .finish()
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
        Self::from_specs(arch, shape, &arch.specs(shape, widths), device, seed)
    }

    /// Loads a checkpoint written by [`Network::save`]: the architecture's preset with every
    /// layer's sizes read from the checkpoint (its weights' shapes), so an MLP's shape and
    /// AlexNet's widths and classes come back as they were trained.
    pub fn load(arch: Arch, path: &Path, device: Device) -> Result<Network, NnError> {
        let fail = |message: String| NnError::Checkpoint {
            path: path.to_owned(),
            message,
        };
        let tensors = Tensor::read_safetensors(path).map_err(|e| fail(e.to_string()))?;
        let size = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| *n == format!("{name}.weight"))
                .map(|(_, t)| t.size())
                .filter(|s| s.len() == 2 || s.len() == 4)
                .map(|s| (s[1] as usize, s[0] as usize))
                .ok_or_else(|| fail(format!("no weight `{name}.weight` for {arch}")))
        };
        let mut specs = arch.specs(arch.default_shape(), AlexnetWidths::FULL);
        // A text model's token ids and sequence length: its table's rows and its positions'.
        let (mut vocabulary, mut tokens) = (0, None);
        for spec in &mut specs {
            let (name, inputs, outputs) = match spec {
                LayerSpec::Dense(d) => (&d.name, &mut d.inputs, &mut d.outputs),
                LayerSpec::Conv(c) => (&c.name, &mut c.inputs, &mut c.outputs),
                LayerSpec::Tokens(t) => {
                    (_, t.vocabulary) = size(&t.name)?;
                    vocabulary = t.vocabulary;
                    continue;
                }
                LayerSpec::Position(p) if vocabulary > 0 => {
                    (_, p.tokens) = size(&p.name)?;
                    tokens = Some(p.tokens);
                    continue;
                }
                _ => continue,
            };
            (*inputs, *outputs) = size(name)?;
        }
        let dense = |first: bool| {
            let mut all = specs.iter().filter_map(|s| match s {
                LayerSpec::Dense(d) => Some(d),
                _ => None,
            });
            if first { all.next() } else { all.last() }.expect("every preset ends in dense layers")
        };
        let shape = Shape {
            inputs: match (arch.image(), tokens) {
                (Some(image), _) => image.iter().product::<i64>() as usize,
                (None, Some(tokens)) => 2 * tokens,
                (None, None) => dense(true).inputs,
            },
            classes: dense(false).outputs,
            vocabulary,
        };
        // Sizes read from a file must chain: from_specs refuses a layer that does not take
        // what the one before gives.
        let mut net =
            Network::from_specs(arch, shape, &specs, device, 0).map_err(|e| fail(e.to_string()))?;
        net.vs.load(path).map_err(|e| fail(e.to_string()))?;
        Ok(net)
    }

    /// A network of `arch`'s kind built from `specs` (a preset's, possibly resized), initial
    /// weights drawn with `seed`.
    pub fn from_specs(
        arch: Arch,
        shape: Shape,
        specs: &[LayerSpec],
        device: Device,
        seed: u64,
    ) -> Result<Network, NnError> {
        arch.check_shape(shape)?;
        crate::with_torch_rng(seed, || {
            let vs = nn::VarStore::new(device);
            let root = vs.root();
            let (steps, shapes, players) = try_build_steps(
                specs,
                &mut |s| layers::build(s, &root),
                &arch.input_shape(shape),
            )
            .map_err(NnError::Chain)?;
            Ok(Network {
                arch,
                vs,
                shape,
                steps,
                shapes,
                players,
            })
        })
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
        Network {
            arch: self.arch,
            vs: nn::VarStore::new(self.device()),
            shape: self.shape,
            steps: self.steps.iter().map(Step::shallow_clone).collect(),
            shapes: self.shapes.clone(),
            players: self.players.clone(),
        }
    }

    /// Input width and number of classes the network was built for.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The network's steps as specs, in forward order (what a `model.json` would store).
    pub fn specs(&self) -> Vec<LayerSpec> {
        specs_of(&self.steps, |_, g| Some(GateSpec { spread: g.spread }))
    }

    /// The same weights with only the player layers named in `layers` as players: every
    /// other layer's gate is gone, so its units are always present (a game on a transformer's
    /// heads with its FFN neurons kept, or the reverse). Global player ids are renumbered in
    /// forward order over the layers kept. Errors name a layer that is not a player layer.
    pub fn with_player_layers(&self, layers: &[String]) -> Result<Network, NnError> {
        self.with_player_layers_as(layers, Granularity::Units)
    }

    /// [`Self::with_player_layers`] at a granularity: each unit a player, or each named layer
    /// one player (a whole sublayer: every head of an attention layer, every neuron of an FFN,
    /// present or absent together; its gate spreads over the layer's whole width). Feature
    /// maps (conv channels gated as maps) cannot be one player: an error naming the layer.
    pub fn with_player_layers_as(
        &self,
        layers: &[String],
        granularity: Granularity,
    ) -> Result<Network, NnError> {
        let known: Vec<&str> = self.players.iter().map(|l| l.name.as_str()).collect();
        if let Some(unknown) = layers.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(NnError::UnknownLayer {
                layer: unknown.clone(),
                known: known.join(", "),
            });
        }
        let whole = granularity == Granularity::Layers;
        let named = |g: &Gate| layers.contains(&self.players[g.players].name);
        let maps = self.steps.iter().find_map(|s| match s {
            Step::Gate(g) if whole && g.maps && named(g) => Some(g),
            _ => None,
        });
        if let Some(g) = maps {
            return Err(NnError::WholeMaps {
                layer: self.players[g.players].name.clone(),
            });
        }
        let specs = specs_of(&self.steps, |i, g| {
            let spread = match whole {
                // Every feature at the gate: the width of its (token) rows.
                true => *self.shapes[i].last().expect("a feature axis") as usize,
                false => g.spread,
            };
            named(g).then_some(GateSpec { spread })
        });
        let mut net = Network::from_specs(self.arch, self.shape, &specs, self.device(), 0)?;
        net.vs.copy(&self.vs)?;
        Ok(net)
    }

    pub fn player_layers(&self) -> &[PlayerLayer] {
        &self.players
    }

    /// The layer widths the network was built with ([`AlexnetWidths::FULL`] for the other
    /// architectures, which ignore it): from its player layers, conv1…conv5 then fc1, fc2.
    pub fn widths(&self) -> AlexnetWidths {
        // From the layers' own rows, so that it holds with only some layers as players.
        self.arch.widths_from(|name| {
            self.weighted_steps()
                .find(|(_, l, _)| l.name() == Some(name))
                .map_or(0, |(_, l, _)| l.units())
        })
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
        let mut shape = vec![-1i64];
        shape.extend(&self.shapes[0]);
        xs.view(shape.as_slice())
    }

    /// Runs the network, calling `gate` where each player layer's mask acts and returning
    /// early with the activations at player layer `stop`'s entry (its gate, or its residual
    /// block's start), every earlier gate left open.
    pub(crate) fn walk(
        &self,
        xs: &Tensor,
        stop: Option<usize>,
        gate: &mut dyn FnMut(&Gate, Tensor) -> Tensor,
    ) -> Tensor {
        let mut h = self.input_view(xs);
        let stop = stop.map(|p| self.players[p].entry);
        let mut saved = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            if stop == Some(i) {
                return h;
            }
            h = match step {
                Step::Gate(g) => gate(g, h),
                Step::Layer(layer) => layer.forward(&h),
                Step::Save => {
                    saved.push(h.shallow_clone());
                    h
                }
                Step::Add => saved.pop().expect("a block's start") + h,
            };
        }
        h
    }

    /// The activations player layer `layer`'s mask acts on, unmasked (every earlier player
    /// present): what a game on that layer and the ones after it evaluates from, computed
    /// once per example set.
    /// Computed by each layer's reference path ([`crate::certify`]): every example's row is
    /// its own, whatever else is in `xs`.
    pub fn activations_at(&self, xs: &Tensor, layer: usize) -> Tensor {
        assert!(layer < self.players.len(), "player layer {layer} exists");
        let stop = self.players[layer].entry;
        let mut h = self.input_view(xs);
        let mut saved = Vec::new();
        for step in &self.steps[..stop] {
            h = match step {
                Step::Gate(_) => h,
                Step::Layer(l) => l.forward_paired(&h),
                Step::Save => {
                    saved.push(h.shallow_clone());
                    h
                }
                Step::Add => saved.pop().expect("a block's start") + h,
            };
        }
        h
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
            g.dropout(&h, dropout, &self.players[g.players])
        })
    }

    /// Logits with every player's activation multiplied by its gate (`gates`: `[players]`;
    /// all ones is [`Self::forward`], a 0/1 vector is that coalition's masked network).
    /// Differentiable in the weights and in the gates. Scaling a ReLU unit's activation by
    /// s ≥ 0 equals scaling its incoming weights and bias by s, so this is the network run on
    /// the scaled groups s_i·θ_i of the equilibrium game.
    pub fn forward_gated(&self, xs: &Tensor, gates: &Tensor) -> Tensor {
        self.walk(xs, None, &mut |g, h| {
            let values = g
                .columns(&self.players[g.players], &gates.unsqueeze(0))
                .squeeze_dim(0);
            g.gated(&h, &values)
        })
    }

    /// The weighted layer at step `i`.
    fn weighted(&self, i: usize) -> (&dyn Layer, &Tensor, Option<&Tensor>) {
        let layer = self.steps[i].layer().expect("a layer step");
        let (w, b) = layer.weights().expect("a weighted layer");
        (layer, w, b)
    }

    /// Units of player layer `pl` per row of its producer's weight (1, or LeNet5's 25
    /// positions per conv2 channel).
    pub(crate) fn units_per_row(&self, pl: &PlayerLayer) -> usize {
        (pl.size / self.weighted(pl.producer).0.units()).max(1)
    }

    /// Rows of player layer `pl`'s producer each unit covers: 1, or every row when the layer
    /// plays as one player ([`Granularity::Layers`]).
    pub(crate) fn rows_per_unit(&self, pl: &PlayerLayer) -> usize {
        (self.weighted(pl.producer).0.units() / pl.size).max(1)
    }

    /// Per row of `pl`'s producer, whether it stays: a row is kept while any unit on it is
    /// (LeNet5's conv2 positions), and a unit covering several rows keeps all of them.
    pub(crate) fn kept_rows(&self, pl: &PlayerLayer, units: &[bool]) -> Vec<bool> {
        let rows_per_unit = self.rows_per_unit(pl);
        units
            .chunks(self.units_per_row(pl))
            .map(|c| c.iter().any(|&k| k))
            .flat_map(|k| std::iter::repeat_n(k, rows_per_unit))
            .collect()
    }

    /// The weights that produce each unit's activation, one row per unit of player layer
    /// `layer` (weight row and bias): a dense neuron's incoming row; a conv channel's filter; a
    /// LeNet5 conv2 feature's whole filter, shared by the 25 positions of its channel. The
    /// "group" θ_i of the equilibrium game.
    pub fn incoming_groups(&self, layer: usize) -> Tensor {
        let pl = &self.players[layer];
        let (producer, w, b) = self.weighted(pl.producer);
        let rows = producer.group(w, b);
        match (self.units_per_row(pl), self.rows_per_unit(pl)) {
            (1, 1) if w.dim() == 2 => rows,
            // A whole layer: all its rows' parameters are one group.
            (1, rows_per_unit) if rows_per_unit > 1 => rows.reshape([pl.size as i64, -1]),
            (per_row, _) => rows.repeat_interleave_self_int(per_row as i64, Some(0), None),
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
            let (producer, w, _) = self.weighted(pl.producer);
            let units: Vec<bool> = keep.iter().map(|&k| k > 0.0).collect();
            let rows: Vec<f32> = self
                .kept_rows(pl, &units)
                .into_iter()
                .map(|k| f32::from(u8::from(k)))
                .collect();
            producer.scale_units(&Tensor::from_slice(&rows).to_device(w.device()));
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
        for (i, step) in self.steps.iter().enumerate() {
            if let Step::Gate(g) = step {
                let (_, w, _) = self.weighted(i + 1);
                let s = g
                    .columns(&self.players[g.players], &values)
                    .squeeze_dim(0)
                    .to_device(w.device());
                let _ = w.shallow_clone().g_mul_(&layers::over_inputs(w, &s));
            }
        }
    }

    /// The steps from player layer `start`'s gate on, detached from the `VarStore` (shallow
    /// tensor copies), so an evaluator can own them and move them between threads: evaluates
    /// coalitions from [`Network::activations_at`]`(xs, start)`.
    pub fn masked_suffix(&self, start: usize) -> MaskedSuffix {
        let entry = self.players[start].entry;
        MaskedSuffix::new(
            self.steps[entry..]
                .iter()
                .map(Step::shallow_clone)
                .collect(),
            self.shapes[entry..].to_vec(),
            self.players.clone(),
            start,
        )
    }

    /// See [`MaskedSuffix::masked_logits`].
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.masked_suffix(0).masked_logits(features, masks)
    }

    /// See [`MaskedSuffix::paired_logits`].
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.masked_suffix(0).paired_logits(features, masks)
    }

    /// Parameters (weights and biases) in the whole network.
    pub fn num_parameters(&self) -> usize {
        self.vs.variables().values().map(|t| t.numel()).sum()
    }

    /// Weighted steps in forward order: step index, layer, its input shape.
    pub(crate) fn weighted_steps(&self) -> impl Iterator<Item = (usize, &dyn Layer, &[i64])> {
        self.steps.iter().enumerate().filter_map(|(i, s)| {
            s.layer()
                .filter(|l| l.weights().is_some())
                .map(|l| (i, l, self.shapes[i].as_slice()))
        })
    }

    /// Layers without weight rows (flatten, select, layer norms, positions, embeddings) with
    /// their input shapes.
    pub(crate) fn unweighted_layers(&self) -> impl Iterator<Item = (&dyn Layer, &[i64])> {
        self.steps.iter().enumerate().filter_map(|(i, s)| {
            s.layer()
                .filter(|l| l.weights().is_none())
                .map(|l| (l, self.shapes[i].as_slice()))
        })
    }

    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// `[channels, height, width]` of an input image, for networks that convolve.
    pub fn image(&self) -> Option<[i64; 3]> {
        match self.shapes[0][..] {
            [c, h, w] => Some([c, h, w]),
            _ => None,
        }
    }

    /// Shape of one input example as the first layer takes it.
    pub(crate) fn input_shape(&self) -> &[i64] {
        &self.shapes[0]
    }

    /// The gate at step `i`, if it is one.
    pub(crate) fn gate_at(&self, i: usize) -> Option<&Gate> {
        match self.steps.get(i) {
            Some(Step::Gate(g)) => Some(g),
            _ => None,
        }
    }

    /// The weighted layer whose outputs are player layer `pl`'s units.
    pub(crate) fn producer(&self, pl: &PlayerLayer) -> &dyn Layer {
        self.weighted(pl.producer).0
    }

    /// The player layer whose units are the outputs of step `i`.
    pub(crate) fn players_of(&self, i: usize) -> Option<&PlayerLayer> {
        self.players.iter().find(|pl| pl.producer == i)
    }

    /// Output positions each weight of variable `name` is applied at (1 for dense layers).
    pub(crate) fn output_positions(&self, name: &str) -> u64 {
        self.weighted_steps()
            .find(|(_, l, _)| name == format!("{}.weight", l.name().unwrap_or_default()))
            .map_or(1, |(_, l, input)| l.positions(input))
    }

    /// Stride and padding of conv layer `name` (`None` for a dense layer or an unknown name).
    pub fn conv_stride_padding(&self, name: &str) -> Option<(i64, i64)> {
        self.weighted_steps()
            .find(|(_, l, _)| l.name() == Some(name))
            .and_then(|(_, l, _)| l.stride_padding())
    }

    /// Each weighted layer in forward order with its FLOPs per example in the whole network
    /// (multiply and add counted apart; ReLU and pooling not counted).
    pub fn layer_flops(&self) -> Vec<(String, u64)> {
        self.weighted_steps()
            .map(|(_, l, input)| {
                let w = l.weights().expect("weighted").0;
                let full = KeptOutputs {
                    rows: l.units() as u64,
                    positions: None,
                };
                let name = l.name().expect("weighted layers have names").to_owned();
                (name, l.cost(input, w.size()[1] as u64, full).flops)
            })
            .collect()
    }

    /// Converts a `[K, players]` boolean-like mask batch to the float layout the network uses.
    pub fn mask_tensor(rows: &[f32], players: usize, device: Device) -> Tensor {
        Tensor::from_slice(rows)
            .view([(rows.len() / players) as i64, players as i64])
            .to_kind(Kind::Float)
            .to_device(device)
    }
}
