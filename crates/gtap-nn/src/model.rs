use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::NnError;

/// The architectures of the paper (more arrive with later datasets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Arch {
    /// 784-300-100-10 MLP; players: the 400 hidden neurons.
    #[serde(rename = "lenet-300-100")]
    Lenet300100,
    /// conv 6@5x5 (pad 2), pool, conv 16@5x5, pool, FC 400-120-84-10; players: the 400 flattened
    /// features of the last conv block and the 120 + 84 hidden FC neurons (604).
    #[serde(rename = "lenet5")]
    Lenet5,
    /// |V|-256-256-256-C MLP with ReLU, for binary bag-of-words text (any input width and class
    /// count, see [`Shape`]); players: the 768 hidden neurons, three layers of 256.
    #[serde(rename = "mlp-3x256")]
    Mlp3x256,
    /// Inputs-512-256-C MLP with ReLU ("Pruning as a Game"'s network: 784-512-256-10 on MNIST;
    /// any shape, like `mlp-3x256`); players: the 768 hidden neurons, 512 + 256.
    #[serde(rename = "mlp-512-256")]
    Mlp512x256,
}

/// What a network is built for: values per input example and number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub inputs: usize,
    pub classes: usize,
}

impl Shape {
    /// 28×28 images, 10 classes: the LeNets' only shape and every architecture's default.
    pub const MNIST: Shape = Shape {
        inputs: 784,
        classes: 10,
    };
}

impl Arch {
    /// Players of a network of this architecture, whatever its input shape (hidden units and
    /// LeNet5's conv features do not depend on it): known before any network is built.
    pub fn num_players(self) -> usize {
        match self {
            Arch::Lenet300100 => 300 + 100,
            Arch::Lenet5 => 400 + 120 + 84,
            Arch::Mlp3x256 => 3 * 256,
            Arch::Mlp512x256 => 512 + 256,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Lenet300100 => "lenet-300-100",
            Arch::Lenet5 => "lenet5",
            Arch::Mlp3x256 => "mlp-3x256",
            Arch::Mlp512x256 => "mlp-512-256",
        }
    }

    /// Values per input example of the default shape (28×28 for all).
    pub fn input_size(self) -> usize {
        self.default_shape().inputs
    }

    /// The shape [`Network::new`] builds: [`Shape::MNIST`] for every architecture (the MLP
    /// takes any other through [`Network::with_shape`]).
    pub fn default_shape(self) -> Shape {
        Shape::MNIST
    }

    /// Whether the architecture can be built for `shape`: the LeNets only for MNIST's, the MLP
    /// for any input width and at least two classes.
    pub fn check_shape(self, shape: Shape) -> Result<(), NnError> {
        let fail = |reason: &str| {
            Err(NnError::Shape {
                arch: self.name().to_owned(),
                inputs: shape.inputs,
                classes: shape.classes,
                reason: reason.to_owned(),
            })
        };
        match self {
            Arch::Lenet300100 | Arch::Lenet5 if shape != Shape::MNIST => {
                fail("it takes 28x28 images (784 inputs) and 10 classes")
            }
            Arch::Mlp3x256 | Arch::Mlp512x256 if shape.inputs == 0 || shape.classes < 2 => {
                fail("it needs at least 1 input and 2 classes")
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A group of players: the units of one layer, with their position in the global player order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerLayer {
    pub name: String,
    pub size: usize,
    /// Global id of the layer's unit 0.
    pub offset: usize,
}

/// A stable unit address: layer name and index within the layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitId {
    pub layer: String,
    pub unit: usize,
}

/// A network split into a prefix that is never pruned and a dense head whose hidden units are
/// the players. Variables are named hierarchically (`conv1.weight`, `fc2.bias`), which are the
/// checkpoint keys.
pub struct Network {
    pub arch: Arch,
    pub vs: nn::VarStore,
    shape: Shape,
    /// Convolution weights and biases (`[O, C, kh, kw]`, `[O]`), applied by
    /// [`crate::numerics::conv2d`].
    convs: Vec<(Tensor, Option<Tensor>)>,
    head: Vec<nn::Linear>,
    players: Vec<PlayerLayer>,
    /// `mask_before[i]`: index of the player layer whose mask multiplies the input of `head[i]`.
    mask_before: Vec<Option<usize>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("arch", &self.arch)
            .field("players", &self.players)
            .finish()
    }
}

fn layers(specs: &[(&str, usize)]) -> Vec<PlayerLayer> {
    let mut offset = 0;
    specs
        .iter()
        .map(|&(name, size)| {
            let layer = PlayerLayer {
                name: name.to_owned(),
                size,
                offset,
            };
            offset += size;
            layer
        })
        .collect()
}

impl Network {
    /// A freshly initialised network of the architecture's default shape (MNIST's: 784
    /// inputs, 10 classes); `seed` fixes libtorch's RNG for the initial weights.
    pub fn new(arch: Arch, device: Device, seed: u64) -> Network {
        Self::with_shape(arch, arch.default_shape(), device, seed)
            .expect("every architecture supports its default shape")
    }

    /// A freshly initialised network for `shape` (input width and classes of a dataset);
    /// fails if the architecture does not support it ([`Arch::check_shape`]). For the default
    /// shape, the same weights as [`Network::new`].
    pub fn with_shape(
        arch: Arch,
        shape: Shape,
        device: Device,
        seed: u64,
    ) -> Result<Network, NnError> {
        arch.check_shape(shape)?;
        Ok(crate::with_torch_rng(seed, || {
            Self::init(arch, shape, device)
        }))
    }

    fn init(arch: Arch, shape: Shape, device: Device) -> Network {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (convs, head, players, mask_before) = match arch {
            Arch::Lenet300100 => (
                vec![],
                vec![
                    nn::linear(&root / "fc1", 784, 300, Default::default()),
                    nn::linear(&root / "fc2", 300, 100, Default::default()),
                    nn::linear(&root / "fc3", 100, 10, Default::default()),
                ],
                layers(&[("fc1", 300), ("fc2", 100)]),
                vec![None, Some(0), Some(1)],
            ),
            Arch::Lenet5 => {
                let pad2 = nn::ConvConfig {
                    padding: 2,
                    ..Default::default()
                };
                (
                    vec![
                        nn::conv2d(&root / "conv1", 1, 6, 5, pad2),
                        nn::conv2d(&root / "conv2", 6, 16, 5, Default::default()),
                    ],
                    vec![
                        nn::linear(&root / "fc1", 400, 120, Default::default()),
                        nn::linear(&root / "fc2", 120, 84, Default::default()),
                        nn::linear(&root / "fc3", 84, 10, Default::default()),
                    ],
                    layers(&[("conv2", 400), ("fc1", 120), ("fc2", 84)]),
                    vec![Some(0), Some(1), Some(2)],
                )
            }
            Arch::Mlp3x256 => {
                let (n, h, c) = (shape.inputs as i64, 256, shape.classes as i64);
                (
                    vec![],
                    vec![
                        nn::linear(&root / "fc1", n, h, Default::default()),
                        nn::linear(&root / "fc2", h, h, Default::default()),
                        nn::linear(&root / "fc3", h, h, Default::default()),
                        nn::linear(&root / "fc4", h, c, Default::default()),
                    ],
                    layers(&[("fc1", 256), ("fc2", 256), ("fc3", 256)]),
                    vec![None, Some(0), Some(1), Some(2)],
                )
            }
            Arch::Mlp512x256 => {
                let (n, c) = (shape.inputs as i64, shape.classes as i64);
                (
                    vec![],
                    vec![
                        nn::linear(&root / "fc1", n, 512, Default::default()),
                        nn::linear(&root / "fc2", 512, 256, Default::default()),
                        nn::linear(&root / "fc3", 256, c, Default::default()),
                    ],
                    layers(&[("fc1", 512), ("fc2", 256)]),
                    vec![None, Some(0), Some(1)],
                )
            }
        };
        Network {
            arch,
            vs,
            shape,
            convs: convs
                .into_iter()
                .map(|c: nn::Conv2D| (c.ws, c.bs))
                .collect(),
            head,
            players,
            mask_before,
        }
    }

    /// Loads a checkpoint written by [`Network::save`]. An MLP's shape is read from the
    /// checkpoint (its first and last weight matrices).
    pub fn load(arch: Arch, path: &Path, device: Device) -> Result<Network, NnError> {
        let fail = |message: String| NnError::Checkpoint {
            path: path.to_owned(),
            message,
        };
        let shape = match arch {
            Arch::Lenet300100 | Arch::Lenet5 => arch.default_shape(),
            Arch::Mlp3x256 | Arch::Mlp512x256 => {
                let last = if arch == Arch::Mlp3x256 { "fc4" } else { "fc3" };
                let tensors = Tensor::read_safetensors(path).map_err(|e| fail(e.to_string()))?;
                let size = |name: &str| {
                    tensors
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.size())
                        .filter(|s| s.len() == 2)
                        .ok_or_else(|| fail(format!("no 2-d tensor `{name}` for {arch}")))
                };
                Shape {
                    inputs: size("fc1.weight")?[1] as usize,
                    classes: size(&format!("{last}.weight"))?[0] as usize,
                }
            }
        };
        let mut net = Network::with_shape(arch, shape, device, 0)?;
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
            convs: self
                .convs
                .iter()
                .map(|(w, b)| (w.shallow_clone(), b.as_ref().map(Tensor::shallow_clone)))
                .collect(),
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

    /// The part of the network up to the first player layer's activations (LeNet5's
    /// convolutions; the MLPs' first dense layer): no coalition changes it, so it runs once per
    /// example set.
    pub fn prefix(&self, xs: &Tensor) -> Tensor {
        let inputs = match self.arch {
            Arch::Lenet300100 => xs.view([-1, 784]),
            Arch::Mlp3x256 | Arch::Mlp512x256 => xs.view([-1, self.shape.inputs as i64]),
            Arch::Lenet5 => {
                let conv = |x: &Tensor, (w, b): &(Tensor, Option<Tensor>), padding: i64| {
                    crate::numerics::conv2d(x, w, b.as_ref(), padding)
                };
                let h = conv(&xs.view([-1, 1, 28, 28]), &self.convs[0], 2)
                    .relu()
                    .max_pool2d_default(2);
                conv(&h, &self.convs[1], 0)
                    .relu()
                    .max_pool2d_default(2)
                    .flatten(1, -1)
            }
        };
        self.head[..self.prefix_layers()]
            .iter()
            .fold(inputs, |h, layer| h.apply(layer).relu())
    }

    /// Leading dense layers that are part of the prefix: those before the first mask.
    fn prefix_layers(&self) -> usize {
        self.mask_before.iter().take_while(|m| m.is_none()).count()
    }

    /// Logits of the whole (unmasked) network.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.forward_train(xs, 0.0)
    }

    /// Training-mode logits: dropout with rate `dropout` on every player layer's activations
    /// (LeNet5's flattened conv features and each hidden layer), so the trained network
    /// tolerates the random coalitions the power indices evaluate; `dropout = 0` is
    /// [`Self::forward`]. Draws come from libtorch's global RNG (see `with_torch_rng`).
    pub fn forward_train(&self, xs: &Tensor, dropout: f64) -> Tensor {
        let drop = |h: Tensor| {
            if dropout > 0.0 {
                h.dropout(dropout, true)
            } else {
                h
            }
        };
        let mut h = drop(self.prefix(xs));
        let head = &self.head[self.prefix_layers()..];
        let last = head.len() - 1;
        for (i, layer) in head.iter().enumerate() {
            h = layer.forward(&h);
            if i < last {
                h = drop(h.relu());
            }
        }
        h
    }

    /// Logits with every player's activation multiplied by its gate (`gates`: `[players]`;
    /// all ones is [`Self::forward`], a 0/1 vector is that coalition's masked network).
    /// Differentiable in the weights and in the gates. Scaling a ReLU unit's activation by
    /// s ≥ 0 equals scaling its incoming weights and bias by s, so this is the network run on
    /// the scaled groups s_i·θ_i of the equilibrium game.
    pub fn forward_gated(&self, xs: &Tensor, gates: &Tensor) -> Tensor {
        let first = self.prefix_layers();
        let mut h = self.prefix(xs);
        let last = self.head.len() - 1;
        for (i, layer) in self.head.iter().enumerate().skip(first) {
            if let Some(pl) = self.mask_before[i] {
                let pl = &self.players[pl];
                h = h * gates.narrow(0, pl.offset as i64, pl.size as i64);
            }
            h = layer.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// The weights that produce each unit's activation, one row per unit of player layer
    /// `layer` (weight row and bias): a dense neuron's incoming row; a LeNet5 conv2 feature's
    /// whole filter, shared by the 25 positions of its channel. The "group" θ_i of the
    /// equilibrium game.
    pub fn incoming_groups(&self, layer: usize) -> Tensor {
        let pl = &self.players[layer];
        let with_bias = |w: &Tensor, b: &Option<Tensor>| {
            let w = w.flatten(1, -1);
            match b {
                Some(b) => Tensor::cat(&[w, b.unsqueeze(1)], 1),
                None => w,
            }
        };
        if let Some(conv) = pl.name.strip_prefix("conv") {
            let (w, b) = &self.convs[conv.parse::<usize>().expect("conv layer number") - 1];
            let channels = w.size()[0];
            let positions = pl.size as i64 / channels;
            with_bias(w, b).repeat_interleave_self_int(positions, Some(0), None)
        } else {
            let fc = pl
                .name
                .strip_prefix("fc")
                .expect("a conv or fc player layer");
            let l = &self.head[fc.parse::<usize>().expect("fc layer number") - 1];
            with_bias(&l.ws, &l.bs)
        }
    }

    /// Zeroes every weight that belongs to a removed player (`kept[p]` false) alone: its
    /// outgoing column and, for a dense neuron, its incoming row and bias; a LeNet5 conv2
    /// channel's filter once none of its positions is kept. The plain forward pass is then the
    /// masked network of `kept`.
    pub fn remove_units(&mut self, kept: &[bool]) {
        let scale: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
        self.scale_outgoing(&scale);
        let _guard = tch::no_grad_guard();
        for pl in &self.players {
            let keep = &scale[pl.offset..pl.offset + pl.size];
            if let Some(conv) = pl.name.strip_prefix("conv") {
                let (w, b) = &mut self.convs[conv.parse::<usize>().expect("conv number") - 1];
                let positions = pl.size / w.size()[0] as usize;
                let channels: Vec<f32> = keep
                    .chunks(positions)
                    .map(|c| if c.iter().any(|&k| k > 0.0) { 1.0 } else { 0.0 })
                    .collect();
                let c = Tensor::from_slice(&channels).to_device(w.device());
                let _ = w.g_mul_(&c.view([-1, 1, 1, 1]));
                if let Some(b) = b {
                    let _ = b.g_mul_(&c);
                }
            } else {
                let fc = pl
                    .name
                    .strip_prefix("fc")
                    .expect("a conv or fc player layer");
                let l = &mut self.head[fc.parse::<usize>().expect("fc number") - 1];
                let k = Tensor::from_slice(keep).to_device(l.ws.device());
                let _ = l.ws.g_mul_(&k.unsqueeze(1));
                if let Some(b) = &mut l.bs {
                    let _ = b.g_mul_(&k);
                }
            }
        }
    }

    /// Multiplies each player's outgoing weights (its column in the layer it feeds) by
    /// `scale[player]`: with a 0/1 scale, the network whose plain forward pass is that
    /// coalition's masked network; with gates, the gated network folded into its weights.
    pub fn scale_outgoing(&mut self, scale: &[f32]) {
        assert_eq!(scale.len(), self.num_players(), "one scale per player");
        let _guard = tch::no_grad_guard();
        for (i, layer) in self.head.iter_mut().enumerate() {
            if let Some(pl) = self.mask_before[i] {
                let pl = &self.players[pl];
                let s = Tensor::from_slice(&scale[pl.offset..pl.offset + pl.size])
                    .to_device(layer.ws.device());
                let _ = layer.ws.g_mul_(&s.unsqueeze(0));
            }
        }
    }

    /// The dense layers after the prefix with their player layout, detached from the `VarStore`
    /// (shallow tensor copies), so an evaluator can own it and move it between threads.
    pub fn masked_head(&self) -> MaskedHead {
        let first = self.prefix_layers();
        MaskedHead {
            layers: self.head[first..]
                .iter()
                .map(|l| {
                    (
                        l.ws.shallow_clone(),
                        l.bs.as_ref().map(Tensor::shallow_clone),
                    )
                })
                .collect(),
            players: self.players.clone(),
            mask_before: self.mask_before[first..].to_vec(),
        }
    }

    /// See [`MaskedHead::masked_logits`].
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.masked_head().masked_logits(features, masks)
    }

    /// See [`MaskedHead::paired_logits`].
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.masked_head().paired_logits(features, masks)
    }

    /// Parameters (weights and biases) in the whole network.
    pub fn num_parameters(&self) -> usize {
        self.vs.variables().values().map(|t| t.numel()).sum()
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

    /// Index of the player layer whose mask multiplies the input of each head layer.
    pub(crate) fn mask_before(&self) -> &[Option<usize>] {
        &self.mask_before
    }

    /// Parameters and FLOPs of the prefix when the players `kept` remain (see [`Network::cost`]).
    pub(crate) fn prefix_cost(&self, kept: &[bool]) -> crate::Cost {
        match self.arch {
            Arch::Lenet300100 | Arch::Mlp3x256 | Arch::Mlp512x256 => crate::Cost::default(),
            Arch::Lenet5 => {
                // conv1: 6 filters 1×5×5 over 28×28 positions (padding 2).
                let conv1 = crate::Cost {
                    params: 6 * 25 + 6,
                    flops: 2 * 6 * 25 * 28 * 28,
                };
                // conv2: 16 channels × 5×5 pooled features; player p = channel·25 + position.
                let features = &kept[..400];
                let channels = features.chunks(25).filter(|c| c.iter().any(|&k| k)).count() as u64;
                let kept_features = features.iter().filter(|&&k| k).count() as u64;
                crate::Cost {
                    params: conv1.params + channels * (6 * 25 + 1),
                    flops: conv1.flops + kept_features * 4 * 2 * 6 * 25,
                }
            }
        }
    }

    /// Output positions each weight of variable `name` is applied at (1 for dense layers).
    pub(crate) fn output_positions(&self, name: &str) -> u64 {
        match (self.arch, name) {
            (Arch::Lenet5, "conv1.weight") => 28 * 28,
            (Arch::Lenet5, "conv2.weight") => 10 * 10,
            _ => 1,
        }
    }

    /// Converts a `[K, players]` boolean-like mask batch to the float layout the network uses.
    pub fn mask_tensor(rows: &[f32], players: usize, device: Device) -> Tensor {
        Tensor::from_slice(rows)
            .view([(rows.len() / players) as i64, players as i64])
            .to_kind(Kind::Float)
            .to_device(device)
    }
}

/// The dense layers of a [`Network`] with their masks: what coalition evaluation needs.
#[derive(Debug)]
pub struct MaskedHead {
    layers: Vec<(Tensor, Option<Tensor>)>,
    players: Vec<PlayerLayer>,
    mask_before: Vec<Option<usize>>,
}

impl MaskedHead {
    /// Another handle on the same weights (no copy), for another thread.
    pub fn shallow_clone(&self) -> MaskedHead {
        MaskedHead {
            layers: self
                .layers
                .iter()
                .map(|(w, b)| (w.shallow_clone(), b.as_ref().map(Tensor::shallow_clone)))
                .collect(),
            players: self.players.clone(),
            mask_before: self.mask_before.clone(),
        }
    }

    fn check_masks(&self, masks: &Tensor) -> Result<(), NnError> {
        let width = masks.size()[1] as usize;
        if width != self.players.iter().map(|l| l.size).sum::<usize>() {
            return Err(NnError::MaskWidth {
                got: width,
                expected: self.players.iter().map(|l| l.size).sum::<usize>(),
            });
        }
        Ok(())
    }

    /// Logits `[E, K, C]` of `K` coalitions (`masks`: `[K, players]`, 1.0 = present) on the prefix
    /// outputs `features` (`[E, n0]`) of `E` examples. The first mask is folded into the next
    /// weight matrix, so the first layer is one GEMM `[E, n0] × [n0, K·m]`; later layers keep
    /// the `[E, K, ·]` layout, which folds into plain GEMMs too.
    pub fn masked_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.check_masks(masks)?;
        let k = masks.size()[0];
        let e = features.size()[0];
        let (h, first) = self.unmasked_start(features);
        let Some(first) = first else {
            // No player layer at all: every coalition sees the same network.
            return Ok(h.unsqueeze(1).expand([e, k, -1], false));
        };
        let z = self.first_masked_preactivation(&h, first, masks);
        Ok(self.logits_from(first, z, masks))
    }

    /// The head up to the input of its first masked layer (the same for every coalition), and
    /// that layer's index (`None`: no layer is masked, the result is the logits).
    pub(crate) fn unmasked_start(&self, features: &Tensor) -> (Tensor, Option<usize>) {
        let last = self.layers.len() - 1;
        let mut h = features.shallow_clone();
        for (i, (w, bias)) in self.layers.iter().enumerate() {
            if self.mask_before[i].is_some() {
                return (h, Some(i));
            }
            h = h.matmul(&w.tr());
            if let Some(b) = bias {
                h = h + b;
            }
            if i < last {
                h = h.relu();
            }
        }
        (h, None)
    }

    /// Pre-activation (before the bias) `[E, K, out]` of masked layer `i` for `K` coalitions,
    /// from its unmasked input `h` (`[E, in]`): `(h ⊙ m) Wᵀ = h (W ⊙ m)ᵀ`, the `K` masked matrices
    /// stacked as `[in, K·out]`, one GEMM.
    pub(crate) fn first_masked_preactivation(
        &self,
        h: &Tensor,
        i: usize,
        masks: &Tensor,
    ) -> Tensor {
        let (w, _) = &self.layers[i];
        let (k, e) = (masks.size()[0], h.size()[0]);
        let (out_dim, in_dim) = (w.size()[0], w.size()[1]);
        let m = self.layer_mask(i, masks); // [K, in]
        let wm = (w.unsqueeze(0) * m.unsqueeze(1))
            .permute([2, 0, 1])
            .reshape([in_dim, k * out_dim]);
        h.matmul(&wm).view([e, k, out_dim])
    }

    /// Logits `[E, K, C]` from the pre-activation `z` (`[E, K, out]`, before the bias) of masked
    /// layer `i`: its bias and activation, then every later layer under `masks`.
    pub(crate) fn logits_from(&self, i: usize, z: Tensor, masks: &Tensor) -> Tensor {
        let last = self.layers.len() - 1;
        let mut h = z;
        for (j, (w, bias)) in self.layers.iter().enumerate().skip(i) {
            if j > i {
                h = match self.mask_before[j] {
                    Some(_) => (h * self.layer_mask(j, masks).unsqueeze(0)).matmul(&w.tr()),
                    None => h.matmul(&w.tr()),
                };
            }
            if let Some(b) = bias {
                h = h + b;
            }
            if j < last {
                h = h.relu();
            }
        }
        h
    }

    /// The player layer whose units mask head layer `i`'s input.
    fn masking_players(&self, i: usize) -> &PlayerLayer {
        &self.players[self.mask_before[i].expect("a masked layer")]
    }

    /// The columns of `masks` (`[K, players]`) of the player layer masking layer `i`'s input.
    fn layer_mask(&self, i: usize, masks: &Tensor) -> Tensor {
        let pl = self.masking_players(i);
        masks.narrow(1, pl.offset as i64, pl.size as i64)
    }

    /// Weight `[out, in]` of head layer `i` and the player offset of the units masking its input.
    pub(crate) fn masked_weight(&self, i: usize) -> (&Tensor, usize) {
        (&self.layers[i].0, self.masking_players(i).offset)
    }

    /// Logits `[K, C]` for `K` (example, coalition) pairs: row `j` of `features` under mask row
    /// `j` (MCUE's trials, each on its own example).
    pub fn paired_logits(&self, features: &Tensor, masks: &Tensor) -> Result<Tensor, NnError> {
        self.check_masks(masks)?;
        let mut h = features.shallow_clone();
        let last = self.layers.len() - 1;
        for (i, (w, bias)) in self.layers.iter().enumerate() {
            if let Some(pl) = self.mask_before[i] {
                let pl = &self.players[pl];
                h = h * masks.narrow(1, pl.offset as i64, pl.size as i64);
            }
            h = h.matmul(&w.tr());
            if let Some(b) = bias {
                h = h + b;
            }
            if i < last {
                h = h.relu();
            }
        }
        Ok(h)
    }
}
