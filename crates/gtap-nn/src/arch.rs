//! Which network: the architectures of the paper, the shapes they are built for, and the
//! presets: the layer specs each one is built from (the only place that knows an
//! architecture's layers).

use crate::layers::{
    Activation, AttentionSpec, ConvSpec, DenseSpec, GateSpec, LayerSpec, NormSpec, PatchesSpec,
    PositionSpec, TokensSpec,
};
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
    /// AlexNet for 3×64×64 images (Tiny ImageNet), any class count, with a width multiplier
    /// ([`AlexnetWidths`]): five conv blocks and three dense layers; players: every conv
    /// layer's output channels (a whole feature map each) and the two hidden dense layers'
    /// neurons. Layers `conv1`…`conv5`, `fc1`…`fc3` (AlexNet's fc6, fc7, fc8).
    #[serde(rename = "alexnet")]
    Alexnet,
    /// A small vision transformer for 28×28 images ([`VIT`]: 7×7 patches, 16 tokens of 64,
    /// two pre-LN blocks of 4-head attention and a 128-neuron GELU FFN, mean pooling);
    /// players: every block's heads and FFN neurons (`block1.attn` 4, `block1.ffn` 128,
    /// `block2.attn` 4, `block2.ffn` 128).
    #[serde(rename = "vit")]
    Vit,
    /// A transformer encoder for text: token embeddings (one per token id of the dataset's
    /// vocabulary, [`Shape::vocabulary`]) and learned positions, then the encoder of `vit`
    /// ([`VIT`]'s width, heads, FFN and blocks; mean pooling over the sequence, padding
    /// included) and a classifier; for token-sequence text datasets of any length and class
    /// count. Players as `vit`'s.
    #[serde(rename = "text-transformer")]
    TextTransformer,
}

/// The geometry of [`Arch::Vit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitPlan {
    pub patch: usize,
    pub dim: usize,
    pub heads: usize,
    pub ffn: usize,
    pub blocks: usize,
}

pub const VIT: VitPlan = VitPlan {
    patch: 7,
    dim: 64,
    heads: 4,
    ffn: 128,
    blocks: 2,
};

const VIT_PLAYER_LAYERS: [(&str, usize); 4] = [
    ("block1.attn", VIT.heads),
    ("block1.ffn", VIT.ffn),
    ("block2.attn", VIT.heads),
    ("block2.ffn", VIT.ffn),
];

/// A pre-LN transformer encoder over `image` (`[C, H, W]`), classes `classes`.
fn vit(plan: VitPlan, image: [usize; 3], classes: usize) -> Vec<LayerSpec> {
    let [c, h, w] = image;
    let tokens = (h / plan.patch) * (w / plan.patch);
    let embed = LayerSpec::Patches(PatchesSpec {
        name: "embed".into(),
        channels: c,
        patch: plan.patch,
        dim: plan.dim,
    });
    encoder(plan, embed, tokens, classes)
}

/// `vit`'s encoder over a text of `shape.inputs / 2` token ids out of `shape.vocabulary`.
fn text_transformer(plan: VitPlan, shape: Shape) -> Vec<LayerSpec> {
    let embed = LayerSpec::Tokens(TokensSpec {
        name: "embed".into(),
        vocabulary: shape.vocabulary,
        dim: plan.dim,
    });
    encoder(plan, embed, shape.inputs / 2, shape.classes)
}

/// `embed` (to `tokens` vectors of `plan.dim`), learned positions, `plan.blocks` pre-LN
/// blocks of multi-head self-attention and a GELU FFN, a final norm, mean pooling and the
/// classifier.
fn encoder(plan: VitPlan, embed: LayerSpec, tokens: usize, classes: usize) -> Vec<LayerSpec> {
    let d = plan.dim;
    let mut specs = vec![
        embed,
        LayerSpec::Position(PositionSpec {
            name: "position".into(),
            tokens,
            dim: d,
        }),
    ];
    let norm = |name: String| LayerSpec::LayerNorm(NormSpec { name, dim: d });
    let layer = |name: String, inputs, outputs, activation| {
        LayerSpec::Dense(DenseSpec {
            name,
            inputs,
            outputs,
            activation,
        })
    };
    let head_dim = d / plan.heads;
    for b in 1..=plan.blocks {
        specs.push(LayerSpec::Residual {
            inner: vec![
                norm(format!("block{b}.norm1")),
                LayerSpec::Attention(AttentionSpec {
                    name: format!("block{b}.attn"),
                    dim: d,
                    heads: plan.heads,
                    head_dim,
                }),
                gate(head_dim),
                layer(
                    format!("block{b}.proj"),
                    plan.heads * head_dim,
                    d,
                    Activation::None,
                ),
            ],
        });
        specs.push(LayerSpec::Residual {
            inner: vec![
                norm(format!("block{b}.norm2")),
                layer(format!("block{b}.ffn"), d, plan.ffn, Activation::Gelu),
                gate(1),
                layer(format!("block{b}.ffn_out"), plan.ffn, d, Activation::None),
            ],
        });
    }
    specs.extend([
        norm("norm".into()),
        LayerSpec::MeanPool,
        layer("head".into(), d, classes, Activation::None),
    ]);
    specs
}

/// What a network is built for: values per input example, number of classes and, for
/// token sequences (two values per token), how many token ids there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub inputs: usize,
    pub classes: usize,
    /// Token ids of a token-sequence dataset (padding, unknown, words); 0 for features.
    pub vocabulary: usize,
}

impl Shape {
    /// 28×28 images, 10 classes: the LeNets' only shape and every architecture's default.
    pub const MNIST: Shape = Shape {
        inputs: 784,
        classes: 10,
        vocabulary: 0,
    };
    /// 3×64×64 images, 200 classes: AlexNet's default.
    pub const TINY_IMAGENET: Shape = Shape {
        inputs: 3 * 64 * 64,
        classes: 200,
        vocabulary: 0,
    };
    /// CARER emotions as 48 tokens of a 5,000-word vocabulary: the text transformer's default.
    pub const EMOTION_TOKENS: Shape = Shape {
        inputs: 2 * 48,
        classes: 6,
        vocabulary: 5002,
    };

    /// Real-valued features (no token ids): `inputs` values, `classes` classes.
    pub const fn features(inputs: usize, classes: usize) -> Shape {
        Shape {
            inputs,
            classes,
            vocabulary: 0,
        }
    }
}

/// Layer widths of an AlexNet: output channels of conv1…conv5 and neurons of fc1, fc2.
///
/// The full network (width 1) has AlexNet's 64-192-384-256-256 channels and 4096-4096 dense
/// neurons; a width multiplier `w` scales every one of them (rounded, at least 1). The shapes
/// for 64×64 inputs, chosen so that the spatial path mirrors AlexNet's 224×224 one at a quarter
/// of the resolution (conv1's stride 4 becomes 2, every pooling halves):
///
/// | layer | kernel, stride, padding | output (w = 1) | then |
/// |---|---|---|---|
/// | conv1 | 5×5, 2, 2 | 64 × 32×32 | ReLU, max-pool 2 → 16×16 |
/// | conv2 | 5×5, 1, 2 | 192 × 16×16 | ReLU, max-pool 2 → 8×8 |
/// | conv3 | 3×3, 1, 1 | 384 × 8×8 | ReLU |
/// | conv4 | 3×3, 1, 1 | 256 × 8×8 | ReLU |
/// | conv5 | 3×3, 1, 1 | 256 × 8×8 | ReLU, max-pool 2 → 4×4, flatten (4096) |
/// | fc1 | dense | 4096 | ReLU |
/// | fc2 | dense | 4096 | ReLU |
/// | fc3 | dense | classes | |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlexnetWidths {
    pub convs: [usize; 5],
    pub dense: [usize; 2],
}

impl AlexnetWidths {
    pub const FULL: AlexnetWidths = AlexnetWidths {
        convs: [64, 192, 384, 256, 256],
        dense: [4096, 4096],
    };

    /// Every layer of [`Self::FULL`] times `width` (rounded, at least one unit).
    pub fn scaled(width: f64) -> AlexnetWidths {
        let scale = |n: usize| ((n as f64 * width).round() as usize).max(1);
        AlexnetWidths {
            convs: Self::FULL.convs.map(scale),
            dense: Self::FULL.dense.map(scale),
        }
    }

    pub fn num_players(&self) -> usize {
        self.convs.iter().sum::<usize>() + self.dense.iter().sum::<usize>()
    }
}

/// Kernel, stride, padding and pooling of AlexNet's five conv blocks (see [`AlexnetWidths`]).
const ALEXNET_CONVS: [(usize, usize, usize, usize); 5] = [
    (5, 2, 2, 2),
    (5, 1, 2, 2),
    (3, 1, 1, 1),
    (3, 1, 1, 1),
    (3, 1, 1, 2),
];

/// Positions of conv5's pooled output per channel (4×4).
const ALEXNET_POSITIONS: usize = 16;

fn dense(name: &str, inputs: usize, outputs: usize, relu: bool) -> LayerSpec {
    let activation = if relu {
        Activation::Relu
    } else {
        Activation::None
    };
    LayerSpec::Dense(DenseSpec {
        name: name.to_owned(),
        inputs,
        outputs,
        activation,
    })
}

fn conv(
    name: &str,
    inputs: usize,
    outputs: usize,
    plan: (usize, usize, usize, usize),
) -> LayerSpec {
    let (kernel, stride, padding, pool) = plan;
    LayerSpec::Conv(ConvSpec {
        name: name.to_owned(),
        inputs,
        outputs,
        kernel,
        stride,
        padding,
        pool,
    })
}

fn gate(spread: usize) -> LayerSpec {
    LayerSpec::Gate(GateSpec { spread })
}

/// A ReLU MLP `inputs → hidden… → classes` whose hidden neurons are players.
fn mlp(inputs: usize, hidden: &[usize], classes: usize) -> Vec<LayerSpec> {
    let mut specs = Vec::new();
    let mut from = inputs;
    for (i, &h) in hidden.iter().enumerate() {
        specs.push(dense(&format!("fc{}", i + 1), from, h, true));
        specs.push(gate(1));
        from = h;
    }
    specs.push(dense(
        &format!("fc{}", hidden.len() + 1),
        from,
        classes,
        false,
    ));
    specs
}

impl Arch {
    /// Whether the preset's layer widths scale with a multiplier (AlexNet's); the others have
    /// fixed layers.
    pub fn has_width(self) -> bool {
        self == Arch::Alexnet
    }

    /// The widths a network of this preset was built with, from the units of its layers by
    /// name (`rows`): AlexNet's conv1…conv5 then fc1, fc2; [`AlexnetWidths::FULL`] for the
    /// others, which have fixed layers.
    pub(crate) fn widths_from(self, rows: impl Fn(&str) -> usize) -> AlexnetWidths {
        if !self.has_width() {
            return AlexnetWidths::FULL;
        }
        AlexnetWidths {
            convs: std::array::from_fn(|i| rows(&format!("conv{}", i + 1))),
            dense: [rows("fc1"), rows("fc2")],
        }
    }

    /// The preset: the network's steps for `shape` (AlexNet at `widths`; the others ignore
    /// it), in forward order. Variables are created, and initial weights drawn, in this order.
    pub fn specs(self, shape: Shape, widths: AlexnetWidths) -> Vec<LayerSpec> {
        match self {
            Arch::Lenet300100 => mlp(784, &[300, 100], 10),
            Arch::Mlp3x256 => mlp(shape.inputs, &[256, 256, 256], shape.classes),
            Arch::Mlp512x256 => mlp(shape.inputs, &[512, 256], shape.classes),
            Arch::Lenet5 => {
                let mut specs = vec![
                    conv("conv1", 1, 6, (5, 1, 2, 2)),
                    conv("conv2", 6, 16, (5, 1, 0, 2)),
                    LayerSpec::Flatten,
                    gate(1),
                ];
                specs.extend(mlp(400, &[120, 84], 10));
                specs
            }
            Arch::Vit => vit(VIT, [1, 28, 28], 10),
            Arch::TextTransformer => text_transformer(VIT, shape),
            Arch::Alexnet => {
                let mut specs = Vec::new();
                let mut inputs = 3;
                for (i, plan) in ALEXNET_CONVS.into_iter().enumerate() {
                    if i > 0 {
                        specs.push(gate(1));
                    }
                    let outputs = widths.convs[i];
                    specs.push(conv(&format!("conv{}", i + 1), inputs, outputs, plan));
                    inputs = outputs;
                }
                specs.extend([LayerSpec::Flatten, gate(ALEXNET_POSITIONS)]);
                let [d1, d2] = widths.dense;
                specs.extend(mlp(inputs * ALEXNET_POSITIONS, &[d1, d2], shape.classes));
                specs
            }
        }
    }

    /// Shape of one input example as the first layer takes it: `[C, H, W]` for
    /// architectures that convolve, `[inputs]` otherwise.
    pub fn input_shape(self, shape: Shape) -> Vec<i64> {
        match self.image() {
            Some(image) => image.to_vec(),
            None => vec![shape.inputs as i64],
        }
    }

    /// Players of a network of this architecture at full width, whatever its input shape
    /// (hidden units and conv features do not depend on it): known before any network is built.
    pub fn num_players(self) -> usize {
        match self {
            Arch::Lenet300100 => 300 + 100,
            Arch::Lenet5 => 400 + 120 + 84,
            Arch::Mlp3x256 => 3 * 256,
            Arch::Mlp512x256 => 512 + 256,
            Arch::Alexnet => AlexnetWidths::FULL.num_players(),
            Arch::Vit | Arch::TextTransformer => VIT_PLAYER_LAYERS.iter().map(|(_, n)| n).sum(),
        }
    }

    /// Names and unit counts of the player layers of a network of this architecture (AlexNet
    /// at `widths`; the others ignore it), in global player order, without building it: what
    /// pipeline validation checks layer names against. Kept equal to the built network's
    /// [`crate::Network::player_layers`] by a test.
    pub fn player_layers(self, widths: AlexnetWidths) -> Vec<(&'static str, usize)> {
        match self {
            Arch::Lenet300100 => vec![("fc1", 300), ("fc2", 100)],
            Arch::Lenet5 => vec![("conv2", 400), ("fc1", 120), ("fc2", 84)],
            Arch::Mlp3x256 => vec![("fc1", 256), ("fc2", 256), ("fc3", 256)],
            Arch::Mlp512x256 => vec![("fc1", 512), ("fc2", 256)],
            Arch::Vit | Arch::TextTransformer => VIT_PLAYER_LAYERS.to_vec(),
            Arch::Alexnet => {
                let convs = ["conv1", "conv2", "conv3", "conv4", "conv5"];
                let mut out: Vec<(&'static str, usize)> =
                    convs.into_iter().zip(widths.convs).collect();
                out.extend([("fc1", widths.dense[0]), ("fc2", widths.dense[1])]);
                out
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Lenet300100 => "lenet-300-100",
            Arch::Lenet5 => "lenet5",
            Arch::Mlp3x256 => "mlp-3x256",
            Arch::Mlp512x256 => "mlp-512-256",
            Arch::Alexnet => "alexnet",
            Arch::Vit => "vit",
            Arch::TextTransformer => "text-transformer",
        }
    }

    /// Values per input example of the default shape.
    pub fn input_size(self) -> usize {
        self.default_shape().inputs
    }

    /// The shape [`crate::Network::new`] builds: [`Shape::MNIST`] for every architecture but
    /// AlexNet ([`Shape::TINY_IMAGENET`]); the MLPs and AlexNet take others through
    /// [`crate::Network::with_shape`].
    pub fn default_shape(self) -> Shape {
        match self {
            Arch::Alexnet => Shape::TINY_IMAGENET,
            Arch::TextTransformer => Shape::EMOTION_TOKENS,
            _ => Shape::MNIST,
        }
    }

    /// `[channels, height, width]` of an input image, for architectures that convolve.
    pub fn image(self) -> Option<[i64; 3]> {
        match self {
            Arch::Lenet5 | Arch::Vit => Some([1, 28, 28]),
            Arch::Alexnet => Some([3, 64, 64]),
            _ => None,
        }
    }

    /// Whether the architecture can be built for `shape`: the LeNets only for MNIST's, AlexNet
    /// for 3×64×64 images and at least two classes, the MLPs for any input width and at least
    /// two classes, the text transformer for token sequences only (and the others never).
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
            Arch::Lenet300100 | Arch::Lenet5 | Arch::Vit if shape != Shape::MNIST => {
                fail("it takes 28x28 images (784 inputs) and 10 classes")
            }
            Arch::Alexnet if shape.inputs != 3 * 64 * 64 || shape.classes < 2 => {
                fail("it takes 3x64x64 images (12288 inputs) and at least 2 classes")
            }
            Arch::Mlp3x256 | Arch::Mlp512x256 if shape.inputs == 0 || shape.classes < 2 => {
                fail("it needs at least 1 input and 2 classes")
            }
            Arch::Mlp3x256 | Arch::Mlp512x256 | Arch::Alexnet if shape.vocabulary > 0 => {
                fail("it takes features, not token sequences (leave out `sequence_length`)")
            }
            Arch::TextTransformer if shape.vocabulary == 0 => fail(
                "it takes token sequences (a text dataset with `sequence_length`), not features",
            ),
            Arch::TextTransformer
                if shape.inputs < 2
                    || shape.inputs % 2 == 1
                    || shape.classes < 2
                    || shape.vocabulary < 3 =>
            {
                fail(
                    "it needs at least one token (two values each), 2 classes and 3 token ids \
                     (padding, unknown, a word)",
                )
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
