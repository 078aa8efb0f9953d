use std::path::PathBuf;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// libtorch failed (shape mismatch, I/O inside libtorch, …).
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A checkpoint could not be read or does not match the architecture.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A mask batch does not have one column per player.
    #[error("mask has {got} columns, the network has {expected} players")]
    MaskWidth { got: usize, expected: usize },
    /// An architecture built for an input width or class count it does not support.
    #[error("{arch} cannot be built for {inputs} inputs and {classes} classes: {reason}")]
    Shape {
        arch: String,
        inputs: usize,
        classes: usize,
        reason: String,
    },
    /// Data with the wrong example shape for the architecture.
    #[error("examples of {got} values do not fit {arch} (expects {expected})")]
    InputShape {
        arch: String,
        got: usize,
        expected: usize,
    },
    /// A pruned model directory could not be written or read, or does not match its layout.
    #[error("pruned model {path}: {message}")]
    PrunedModel { path: PathBuf, message: String },
    /// The process already computes under other floating-point settings.
    #[error("numerics {requested} requested, but this process already runs with {active}")]
    Numerics { requested: String, active: String },
    /// A mask removes a player that the evaluator's game keeps present (a layer before the
    /// layer it starts at).
    #[error(
        "masks must keep every player before layer `{layer}` present: the evaluator starts there"
    )]
    FixedPlayers { layer: String },
    /// Image augmentation asked of a network that does not take images.
    #[error("{arch} does not take images: augmentation needs lenet5 or alexnet")]
    Augment { arch: String },
    /// An unusable device setting.
    #[error("{0}")]
    Device(String),
    #[error("portable GEMM: {0}")]
    Gemm(String),
    /// A player layer name the network does not have.
    #[error("no player layer `{layer}` (the network's player layers: {known})")]
    UnknownLayer { layer: String, known: String },
    /// A layer of feature maps asked to play as one player.
    #[error("layer `{layer}` gates feature maps: its channels cannot play as one player")]
    WholeMaps { layer: String },
    /// Layer sizes (read from a file) that do not chain.
    #[error("the layers do not chain: {0}")]
    Chain(String),
    /// An operation that needs examples (gradients) was given none.
    #[error("{0} need examples to compute gradients on")]
    NeedsExamples(&'static str),
}
