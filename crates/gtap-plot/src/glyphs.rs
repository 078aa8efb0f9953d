//! Text for bitmap output, laid out and rasterised here rather than by plotters.
//!
//! plotters 0.3.7's `ab_glyph` renderer places each glyph at its pen position without the
//! glyph's left side bearing and truncates the vertical offset towards zero, so PNG labels come
//! out with uneven letter spacing and letters a pixel off the baseline ("ma x on di agon al").
//! [`GlyphText`] wraps a backend and replaces only `draw_text` and `estimate_text_size`: glyphs
//! are positioned with sub-pixel accuracy from the embedded font's metrics (advance, kerning,
//! bearing) and blended into the image by coverage. SVG output keeps plotters' `<text>`
//! elements, which the viewer renders.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(crate::DEJAVU_SANS).expect("the embedded font parses")
    })
}

/// One line of text laid out at `size` px (plotters' meaning: ascent − descent = `size`).
struct Layout {
    /// Pen x of each glyph, from the left edge of the box.
    pens: Vec<(ab_glyph::GlyphId, f32)>,
    width: f32,
    ascent: f32,
    height: f32,
}

fn layout(text: &str, size: f64) -> Layout {
    let font = font().as_scaled(size as f32);
    let mut pens = Vec::with_capacity(text.len());
    let mut x = 0.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            x += font.kern(p, id);
        }
        pens.push((id, x));
        x += font.h_advance(id);
        prev = Some(id);
    }
    Layout {
        pens,
        width: x,
        ascent: font.ascent(),
        height: font.ascent() - font.descent(),
    }
}

/// A backend whose text is drawn by [`layout`] and ab_glyph's rasteriser; everything else is
/// passed through to the wrapped backend.
pub(crate) struct GlyphText<B>(pub B);

impl<B: DrawingBackend> DrawingBackend for GlyphText<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let l = layout(text, style.size());
        Ok((l.width.ceil() as u32, l.height.ceil() as u32))
    }

    /// The text's box (pen advance wide, ascent − descent high) is placed by the style's anchor
    /// at `pos`, then rotated about `pos` by the style's transform, as plotters does.
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let colour = style.color();
        if colour.alpha == 0.0 {
            return Ok(());
        }
        let l = layout(text, style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -l.width / 2.0,
            HPos::Right => -l.width,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -l.height / 2.0,
            VPos::Bottom => -l.height,
        };
        let transform = style.transform();
        let scale = ab_glyph::PxScale::from(style.size() as f32);
        for &(id, pen) in &l.pens {
            let glyph = id.with_scale_and_position(scale, point(pen + dx, l.ascent + dy));
            let Some(outline) = font().outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let (x0, y0) = (bounds.min.x as i32, bounds.min.y as i32);
            let mut pixels = Vec::new();
            outline.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    pixels.push((x0 + x as i32, y0 + y as i32, coverage.min(1.0)));
                }
            });
            for (x, y, coverage) in pixels {
                let (x, y) = transform.transform(x, y);
                let c = BackendColor {
                    alpha: colour.alpha * coverage as f64,
                    rgb: colour.rgb,
                };
                self.0.draw_pixel((pos.0 + x, pos.1 + y), c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;
    use plotters::style::text_anchor::Pos;

    use super::*;

    /// Draws `text` into a white bitmap at `pos` and returns the box of non-white pixels.
    fn ink_box(text: &str, size: f64, pos: Pos) -> ((i32, i32), (i32, i32), (u32, u32)) {
        let (w, h) = (200u32, 100u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        let est;
        {
            let mut backend = GlyphText(BitMapBackend::with_buffer(&mut buf, (w, h)));
            let style = TextStyle::from((crate::FONT, size).into_font()).pos(pos);
            est = backend.estimate_text_size(text, &style).unwrap();
            backend.draw_text(text, &style, (100, 50)).unwrap();
            backend.present().unwrap();
        }
        let (mut lo, mut hi) = ((i32::MAX, i32::MAX), (i32::MIN, i32::MIN));
        for (i, px) in buf.chunks(3).enumerate() {
            if px != [255, 255, 255] {
                let (x, y) = ((i as u32 % w) as i32, (i as u32 / w) as i32);
                lo = (lo.0.min(x), lo.1.min(y));
                hi = (hi.0.max(x), hi.1.max(y));
            }
        }
        (lo, hi, est)
    }

    #[test]
    fn text_ink_stays_inside_its_anchored_box() {
        crate::ensure_font().unwrap();
        for (h, v) in [
            (HPos::Left, VPos::Top),
            (HPos::Center, VPos::Center),
            (HPos::Right, VPos::Bottom),
        ] {
            let (lo, hi, (w, ht)) = ink_box("Hg max", 20.0, Pos::new(h, v));
            let x0 = match h {
                HPos::Left => 100,
                HPos::Center => 100 - w as i32 / 2,
                HPos::Right => 100 - w as i32,
            };
            let y0 = match v {
                VPos::Top => 50,
                VPos::Center => 50 - ht as i32 / 2,
                VPos::Bottom => 50 - ht as i32,
            };
            assert!(
                lo.0 >= x0 - 1 && hi.0 <= x0 + w as i32 + 1,
                "x ink {lo:?}..{hi:?}, box from {x0} wide {w}"
            );
            assert!(
                lo.1 >= y0 - 1 && hi.1 <= y0 + ht as i32 + 1,
                "y ink {lo:?}..{hi:?}, box from {y0} high {ht}"
            );
            // The ink fills most of the box: 'H' starts near its left edge, 'g' descends.
            assert!(
                lo.0 - x0 <= 3 && hi.1 - y0 >= ht as i32 - 3,
                "{lo:?} {hi:?} in box ({x0}, {y0}) {w}x{ht}"
            );
        }
    }
}
