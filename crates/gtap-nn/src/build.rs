//! Building a network's steps from its layer specs: a residual block becomes `Save`, its
//! inner steps, `Add`; a gate becomes the player layer of the weighted layer before it; and
//! every layer is asked whether it takes what the one before gives, so that sizes read from
//! a file fail here, naming the layer, rather than in libtorch. And back: steps to specs.

use crate::layers::{self, Gate, Layer, LayerSpec, Step};
use crate::model::PlayerLayer;

/// Steps, per-step input shapes and player layers of `specs` on inputs of shape `input`,
/// variables created under `root`. A residual block becomes `Save`, its inner steps, `Add`.
/// Specs read from a file may not chain: an error, naming the layer, where a layer
/// does not take what the one before gives, a residual block changes its input's shape, or
/// a gate follows no weighted layer.
pub(crate) fn try_build_steps(
    specs: &[LayerSpec],
    make: &mut dyn FnMut(&LayerSpec) -> Box<dyn Layer>,
    input: &[i64],
) -> Result<(Vec<Step>, Vec<Vec<i64>>, Vec<PlayerLayer>), String> {
    let mut b = Builder {
        steps: Vec::new(),
        shapes: vec![input.to_vec()],
        players: Vec::new(),
        open: Vec::new(),
    };
    b.push_all(specs, make)?;
    Ok((b.steps, b.shapes, b.players))
}

struct Builder {
    steps: Vec<Step>,
    shapes: Vec<Vec<i64>>,
    players: Vec<PlayerLayer>,
    /// Steps of the `Save`s of the residual blocks open here, outermost first.
    open: Vec<usize>,
}

impl Builder {
    fn push(&mut self, step: Step, out: Vec<i64>) {
        self.steps.push(step);
        self.shapes.push(out);
    }

    fn push_all(
        &mut self,
        specs: &[LayerSpec],
        make: &mut dyn FnMut(&LayerSpec) -> Box<dyn Layer>,
    ) -> Result<(), String> {
        for spec in specs {
            let here = self.shapes.last().expect("an input shape").clone();
            match spec {
                LayerSpec::Residual { inner } => {
                    self.open.push(self.steps.len());
                    self.push(Step::Save, here.clone());
                    self.push_all(inner, make)?;
                    let out = self.shapes.last().expect("a shape").clone();
                    if out != here {
                        return Err(format!(
                            "a residual block turns shape {here:?} into {out:?}"
                        ));
                    }
                    self.push(Step::Add, out);
                    self.open.pop();
                }
                LayerSpec::Gate(g) => {
                    let step = self.gate(g.spread, &here)?;
                    self.push(step, here);
                }
                spec => {
                    let layer = make(spec);
                    if !layer.takes(&here) {
                        return Err(format!(
                            "layer {} ({}) does not take inputs of shape {here:?}",
                            self.steps.len(),
                            layer.name().map_or_else(|| spec_kind(spec), str::to_owned),
                        ));
                    }
                    let out = layer.output_shape(&here);
                    self.push(Step::Layer(layer), out);
                }
            }
        }
        Ok(())
    }

    /// The gate at the next step and its player layer: the units of the weighted layer
    /// before it, one per feature map (`[C, H, W]` activations) or per `spread` features.
    fn gate(&mut self, spread: usize, here: &[i64]) -> Result<Step, String> {
        let producer = (0..self.steps.len())
            .rev()
            .find(|&i| self.steps[i].layer().is_some_and(|l| l.weights().is_some()))
            .ok_or("a gate follows no weighted layer")?;
        let layer = self.steps[producer].layer().expect("a layer");
        let maps = here.len() == 3;
        let features = *here.last().ok_or("a gate on no feature axis")?;
        if spread == 0 || (!maps && features as usize % spread != 0) {
            return Err(format!("a gate of spread {spread} on {features} features"));
        }
        let size = if maps {
            here[0] as usize
        } else {
            features as usize / spread
        };
        let gate = self.steps.len();
        let offset = self.players.last().map_or(0, |l| l.offset + l.size);
        self.players.push(PlayerLayer {
            name: layer
                .name()
                .expect("a weighted layer has a name")
                .to_owned(),
            size,
            offset,
            gate,
            producer,
            entry: self.open.first().copied().unwrap_or(gate),
        });
        let is_conv = layer.stride_padding().is_some();
        Ok(Step::Gate(Gate {
            players: self.players.len() - 1,
            spread: if maps { 1 } else { spread },
            maps: maps || (is_conv && size == layer.units()),
        }))
    }
}

/// `steps` as specs, residual blocks nested again; each gate (at step `i`) as `gate(i, g)`
/// says: its spec, or none to leave it out.
pub(crate) fn specs_of(
    steps: &[Step],
    gate: impl Fn(usize, &Gate) -> Option<layers::GateSpec>,
) -> Vec<LayerSpec> {
    let mut levels: Vec<Vec<LayerSpec>> = vec![Vec::new()];
    for (i, step) in steps.iter().enumerate() {
        let spec = match step {
            Step::Layer(l) => l.spec(),
            Step::Gate(g) => match gate(i, g) {
                Some(spec) => LayerSpec::Gate(spec),
                None => continue,
            },
            Step::Save => {
                levels.push(Vec::new());
                continue;
            }
            Step::Add => LayerSpec::Residual {
                inner: levels.pop().expect("an open block"),
            },
        };
        levels.last_mut().expect("a level").push(spec);
    }
    levels.pop().expect("the top level")
}

/// A layer kind's name in messages: its spec's `kind` tag, as `model.json` spells it.
fn spec_kind(spec: &LayerSpec) -> String {
    serde_json::to_value(spec)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
