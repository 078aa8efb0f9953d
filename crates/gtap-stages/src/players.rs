//! `players`: the same trained network with only some player layers as players, the others'
//! units always present (a transformer's attention heads as the game, its FFN neurons kept;
//! or the reverse). Every stage that reads a `model` then ranks, estimates, prunes and
//! evaluates on those players unchanged.

use gtap_engine::{ensure, Inputs, Invalid, Stage, StageContext};
use gtap_nn::Granularity;
use serde::{Deserialize, Serialize};

use crate::checks;
use crate::train::{load_model, ModelInfo, CHECKPOINT};

pub struct PlayersStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayersParams {
    /// The player layers that stay players, by name (`block1.attn`, `fc2`); at least one.
    pub layers: Vec<String>,
    /// `units` (default: each head, neuron or channel a player) or `layers` (each named layer
    /// one player: a whole attention or FFN sublayer). Not written when `units`, so earlier
    /// stages keep their keys.
    #[serde(default, skip_serializing_if = "Granularity::is_units")]
    pub granularity: Granularity,
}

impl Stage for PlayersStage {
    type Params = PlayersParams;
    const KIND: &'static str = "players";
    const FLOAT_MATH: bool = false;
    const VERSION: u32 = 1;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["model"];
    const ABOUT: &'static str =
        "the model with only the named player layers as players (the others always present)";

    fn validate(p: &PlayersParams) -> Result<(), Invalid> {
        ensure(!p.layers.is_empty(), "layers", || {
            "must name at least one player layer".into()
        })
    }

    fn validate_inputs(p: &PlayersParams, inputs: &Inputs) -> Result<(), Invalid> {
        checks::input_kinds(inputs, "model", &checks::MODEL_KINDS)?;
        checks::layer_names("layers", &p.layers, inputs)
    }

    fn run(p: &PlayersParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let upstream = ctx.input("model")?;
        let (net, info) = load_model(upstream)?;
        // Fails here, naming the layer, when a checkpoint's network lacks one.
        let kept = net.with_player_layers_as(&p.layers, p.granularity)?;
        std::fs::copy(upstream.path(CHECKPOINT), ctx.out_dir().join(CHECKPOINT))?;
        let info = ModelInfo {
            players: Some(p.layers.clone()),
            granularity: p.granularity,
            ..info
        };
        std::fs::write(
            ctx.out_dir().join("model.json"),
            serde_json::to_vec_pretty(&info)?,
        )?;
        tracing::info!(
            "{}: {} players ({}) in {}",
            ctx.instance,
            kept.num_players(),
            serde_json::to_value(p.granularity)?
                .as_str()
                .unwrap_or_default(),
            p.layers.join(", ")
        );
        Ok(())
    }
}
