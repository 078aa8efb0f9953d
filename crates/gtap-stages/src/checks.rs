//! Checks that let a pipeline be refused before any work (`gtap status` refuses what `gtap
//! run` would): output names, layer names against the architecture a `model` input declares,
//! models against the data they are given, input kinds. Shared by the stages' `validate` and
//! `validate_inputs`.

use gtap_engine::{ensure, Declared, Inputs, Invalid};
use gtap_nn::{AlexnetWidths, Arch};

/// A figure or table name: a plain file stem, so that it stays inside the figures directory.
pub(crate) fn file_stem(key: &str, name: &str) -> Result<(), Invalid> {
    ensure(
        !name.is_empty()
            && name.len() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
        key,
        || {
            format!(
                "must be a plain file stem of at most 100 letters, digits, - and _ (got {:?})",
                crate::short(name)
            )
        },
    )
}

/// The architecture and player layers of the network a declared `train`, `equilibrium` or
/// `players` stage makes (`None` for stages that do not say).
pub(crate) fn declared_layers(model: &Declared) -> Option<(Arch, Vec<(&'static str, usize)>)> {
    if model.kind == "players" {
        let (arch, layers) = declared_layers(model.input("model")?)?;
        return Some((arch, chosen_layers(layers, &model.params)));
    }
    model_stage_layers(&model.params)
}

/// The architecture and player layers that a `train` or `equilibrium` stage with these
/// parameters makes: `model`, AlexNet's `width`, and the `layers` chosen to play.
pub(crate) fn model_stage_layers(
    params: &serde_json::Value,
) -> Option<(Arch, Vec<(&'static str, usize)>)> {
    let arch: Arch = serde_json::from_value(params.get("model")?.clone()).ok()?;
    let widths = params
        .get("width")
        .and_then(|w| w.as_f64())
        .map_or(AlexnetWidths::FULL, AlexnetWidths::scaled);
    Some((arch, chosen_layers(arch.player_layers(widths), params)))
}

/// The player layers a `players` or `equilibrium` stage's `layers` keep (all when it names
/// none); each one player at `granularity = "layers"`.
fn chosen_layers(
    layers: Vec<(&'static str, usize)>,
    params: &serde_json::Value,
) -> Vec<(&'static str, usize)> {
    let Some(kept) = params
        .get("layers")
        .and_then(|l| serde_json::from_value::<Vec<String>>(l.clone()).ok())
    else {
        return layers;
    };
    let whole = params
        .get("granularity")
        .and_then(|g| serde_json::from_value::<gtap_nn::Granularity>(g.clone()).ok())
        == Some(gtap_nn::Granularity::Layers);
    layers
        .into_iter()
        .filter(|(name, _)| kept.iter().any(|k| k == name))
        .map(|(name, units)| (name, if whole { 1 } else { units }))
        .collect()
}

/// The player layers of the `model` input, when the pipeline declares its architecture.
pub(crate) fn model_layers(inputs: &Inputs) -> Option<(Arch, Vec<(&'static str, usize)>)> {
    declared_layers(inputs.get("model")?.first()?)
}

/// Layer names at `key`: at least one, none twice, each a player layer of the `model` input's
/// architecture (where the pipeline declares it).
pub(crate) fn layer_names(key: &str, names: &[String], inputs: &Inputs) -> Result<(), Invalid> {
    layer_names_of(key, names, model_layers(inputs))
}

/// [`layer_names`] against a model's architecture and player layers, where known.
pub(crate) fn layer_names_of(
    key: &str,
    names: &[String],
    model: Option<(Arch, Vec<(&'static str, usize)>)>,
) -> Result<(), Invalid> {
    ensure(!names.is_empty(), key, || {
        "must name at least one player layer".into()
    })?;
    for (i, name) in names.iter().enumerate() {
        ensure(!names[..i].contains(name), &format!("{key}[{i}]"), || {
            format!("layer `{}` is named twice", crate::short(name))
        })?;
    }
    let Some((arch, layers)) = model else {
        return Ok(());
    };
    let known: Vec<&str> = layers.iter().map(|(name, _)| *name).collect();
    for (i, name) in names.iter().enumerate() {
        ensure(
            known.contains(&name.as_str()),
            &format!("{key}[{i}]"),
            || {
                format!(
                    "{arch} has no player layer `{}` (its player layers: {})",
                    crate::short(name),
                    known.join(", ")
                )
            },
        )?;
    }
    Ok(())
}

/// What a declared dataset stage gives a model: values per example (when the declaration
/// fixes it: a text vocabulary may come out smaller than asked) and classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DataShape {
    pub features: Option<usize>,
    pub classes: usize,
    /// Side of the square images, for image datasets.
    pub side: Option<usize>,
    /// For token sequences: at most how many token ids (the vocabulary may come out smaller).
    pub token_ids: Option<usize>,
}

pub(crate) fn data_shape(data: &Declared) -> Option<DataShape> {
    let params = || data.params.clone();
    match data.kind.as_str() {
        "mnist" => Some(DataShape {
            features: Some(784),
            classes: 10,
            side: Some(28),
            token_ids: None,
        }),
        "tiny-imagenet" => {
            let p: crate::tiny_imagenet::TinyImagenetParams =
                serde_json::from_value(params()).ok()?;
            Some(DataShape {
                features: Some(3 * 64 * 64),
                classes: p.classes.unwrap_or(200),
                side: Some(64),
                token_ids: None,
            })
        }
        "text-dataset" => {
            let p: crate::text::TextDatasetParams = serde_json::from_value(params()).ok()?;
            Some(DataShape {
                features: p.sequence_length().map(|length| 2 * length),
                classes: p.dataset().num_classes(),
                side: None,
                token_ids: p
                    .sequence_length()
                    .map(|_| p.vocab_size() + gtap_data::FIRST_WORD_TOKEN),
            })
        }
        _ => None,
    }
}

/// A model of `arch` can be built for the declared dataset `data` (the LeNets take MNIST's
/// images, AlexNet Tiny ImageNet's, the MLPs any features).
pub(crate) fn arch_takes(arch: Arch, data: &Declared) -> Result<(), Invalid> {
    let Some(shape) = data_shape(data) else {
        return Ok(());
    };
    let check = |features: usize| {
        arch.check_shape(gtap_nn::Shape {
            inputs: features,
            classes: shape.classes,
            vocabulary: shape.token_ids.unwrap_or(0),
        })
    };
    // Unknown text features: any count of at least one fits an MLP, none an image model.
    let result = check(shape.features.unwrap_or(1));
    result.map_err(|err| {
        Invalid::new(
            "inputs.data",
            format!("`{}` ({}): {err}", data.id, data.kind),
        )
    })
}

/// The stage's `data` is a dataset of the shape the `model` input was trained on (a model
/// run on other features or labels fails inside libtorch).
pub(crate) fn model_fits_data(inputs: &Inputs) -> Result<(), Invalid> {
    let (Some(model), Some(data)) = (
        inputs.get("model").and_then(|m| m.first()),
        inputs.get("data").and_then(|d| d.first()),
    ) else {
        return Ok(());
    };
    let Some(trained_on) = trained(model).input("data") else {
        return Ok(());
    };
    if trained_on.same_as(data) {
        return Ok(());
    }
    match (data_shape(trained_on), data_shape(data)) {
        (Some(a), Some(b)) if a.classes != b.classes || a.features != b.features => {
            Err(Invalid::new(
                "inputs.data",
                format!(
                    "`{}` has {} classes{}, but `{}` was trained on `{}` with {}{}",
                    data.id,
                    b.classes,
                    b.features
                        .map_or(String::new(), |f| format!(" and {f} features")),
                    model.id,
                    trained_on.id,
                    a.classes,
                    a.features
                        .map_or(String::new(), |f| format!(" and {f} features")),
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The stage that trained `model`: itself, or the one a `players` stage re-labels.
fn trained(model: &Declared) -> &Declared {
    match (model.kind.as_str(), model.input("model")) {
        ("players", Some(inner)) => trained(inner),
        _ => model,
    }
}

/// Every stage bound to input `name` is of one of `kinds`.
pub(crate) fn input_kinds(inputs: &Inputs, name: &str, kinds: &[&str]) -> Result<(), Invalid> {
    for upstream in inputs.get(name).into_iter().flatten() {
        ensure(
            kinds.contains(&upstream.kind.as_str()),
            &format!("inputs.{name}"),
            || {
                format!(
                    "`{}` is a `{}` stage; input `{name}` takes {}",
                    upstream.id,
                    upstream.kind,
                    kinds.join(", ")
                )
            },
        )?;
    }
    Ok(())
}

/// Every `rankings` input is a ranking method's stage: it reads a `model` (methods registered
/// by a plug-in are rankers too, so the kind alone cannot say).
pub(crate) fn rankings(inputs: &Inputs) -> Result<(), Invalid> {
    for upstream in inputs.get("rankings").into_iter().flatten() {
        ensure(
            upstream.inputs.contains_key("model"),
            "inputs.rankings",
            || {
                format!(
                    "`{}` is a `{}` stage, not a ranking method (e.g. {})",
                    upstream.id,
                    upstream.kind,
                    crate::RANKING_KINDS.join(", ")
                )
            },
        )?;
    }
    Ok(())
}

/// Kinds whose output holds a trained network (`model.json` + checkpoint).
pub(crate) const MODEL_KINDS: [&str; 3] = ["train", "equilibrium", "players"];
/// Kinds whose output is a dataset's splits.
pub(crate) const DATASET_KINDS: [&str; 3] = ["mnist", "tiny-imagenet", "text-dataset"];

/// A stage reading a trained `model` and a dataset `data`: each of its kind, and the data of
/// the shape the model was trained on.
pub(crate) fn model_and_data(inputs: &Inputs) -> Result<(), Invalid> {
    input_kinds(inputs, "model", &MODEL_KINDS)?;
    input_kinds(inputs, "data", &DATASET_KINDS)?;
    model_fits_data(inputs)
}
