//! Colours: the viridis map for heatmaps and a qualitative palette for lines.

use plotters::style::RGBColor;

/// Viridis (matplotlib) sampled at nine evenly spaced points; [`viridis`] interpolates linearly.
/// Perceptually uniform, readable in grey scale and by colour-blind readers.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (72, 40, 120),
    (62, 73, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (110, 206, 88),
    (253, 231, 37),
];

/// Viridis at `t` in [0, 1] (clamped; NaN gives the low end).
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Okabe–Ito colours (colour-blind safe), in the order series receive them; yellow, the hardest
/// to see on white, comes last.
const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(240, 228, 66),  // yellow
];

/// The colour of the `i`-th distinct series label in a figure: the eight Okabe–Ito colours,
/// then the same eight darkened (black becomes grey), alternating, so that a ninth series is
/// not drawn in the first one's colour.
pub fn palette(i: usize) -> RGBColor {
    let RGBColor(r, g, b) = OKABE_ITO[i % OKABE_ITO.len()];
    if (i / OKABE_ITO.len()) % 2 == 0 {
        return RGBColor(r, g, b);
    }
    if (r, g, b) == (0, 0, 0) {
        return RGBColor(128, 128, 128);
    }
    let dark = |c: u8| (c as f64 * 0.55).round() as u8;
    RGBColor(dark(r), dark(g), dark(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_hits_control_points_and_clamps() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(0.5), RGBColor(38, 130, 142));
        assert_eq!(viridis(-1.0), viridis(0.0));
        assert_eq!(viridis(2.0), viridis(1.0));
        // Halfway between the first two control points.
        assert_eq!(viridis(0.0625), RGBColor(70, 21, 102));
    }

    #[test]
    fn sixteen_series_get_sixteen_colours() {
        let colours: Vec<RGBColor> = (0..16).map(palette).collect();
        for (i, a) in colours.iter().enumerate() {
            assert!(!colours[..i].contains(a), "series {i} repeats a colour");
        }
        assert_eq!(palette(0), RGBColor(0, 114, 178));
        assert_eq!(palette(8), RGBColor(0, 63, 98));
        assert_eq!(palette(14), RGBColor(128, 128, 128));
        assert_eq!(palette(16), palette(0));
    }
}
